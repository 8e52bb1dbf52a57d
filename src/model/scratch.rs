//! Activation buffers shared by every layer of a decoder (layers run one after another, so one
//! set suffices), sized once for the largest step, plus the rotary table.

use crate::error::Result;
use crate::gpu::Context;
use crate::kernels::attention::{AttentionSpec, MAX_SPLITS, SplitKv, partials_bytes};
use crate::model::config::ModelConfig;

pub struct Scratch {
    /// Tokens per forward step the buffers hold.
    pub batch: usize,
    /// [batch, hidden] the residual stream.
    pub h: wgpu::Buffer,
    /// [batch, hidden] the current norm's output (attention and MLP input).
    pub x: wgpu::Buffer,
    /// [batch, hidden] attention output after o_proj.
    pub attn_out: wgpu::Buffer,
    /// [batch, hidden] MLP / MoE output.
    pub mlp_out: wgpu::Buffer,
    /// [batch, heads · qk_dim] q as projected; q after its norm; q rotated.
    pub q_raw: wgpu::Buffer,
    pub q_norm: wgpu::Buffer,
    pub q: wgpu::Buffer,
    /// [batch, kv_heads · head_dim] k as projected (MLA: [batch, kv_lora_rank + rope] latent).
    pub k_raw: wgpu::Buffer,
    /// [batch, kv_heads · head_dim] k after its norm (MLA: [batch, kv_lora_rank] normed latent).
    pub k_norm: wgpu::Buffer,
    /// [batch, kv_heads · head_dim] v as projected (MLA: [batch, heads · (nope + v)] expanded).
    pub v_raw: wgpu::Buffer,
    /// [batch, q_lora_rank] MLA q latent, before and after its norm.
    pub q_a: wgpu::Buffer,
    pub q_a_norm: wgpu::Buffer,
    /// [batch, heads · v_dim] attention output before o_proj.
    pub attn: wgpu::Buffer,
    /// [slots, heads, 2 + v_dim] attention states between passes and splits
    /// (`AttentionSpec::partials_bytes`).
    pub partials: wgpu::Buffer,
    /// [positions, rope_dim / 2] (cos, sin).
    pub rope_table: wgpu::Buffer,
    /// A small zero buffer for bindings a kernel variant never reads.
    pub zeros: wgpu::Buffer,
}

/// Columns of each attention scratch buffer: (q, k_raw, k_norm, v_raw, q_a, attn).
fn widths(cfg: &ModelConfig) -> [usize; 6] {
    let a = &cfg.attention;
    match a.mla {
        Some(m) => {
            let qk = m.qk_nope_head_dim + m.qk_rope_head_dim;
            [
                a.heads * qk,
                m.kv_lora_rank + m.qk_rope_head_dim,
                m.kv_lora_rank,
                a.heads * (m.qk_nope_head_dim + m.v_head_dim),
                m.q_lora_rank.unwrap_or(0),
                a.heads * m.v_head_dim,
            ]
        }
        None => {
            let kv = a.kv_heads * a.head_dim;
            [a.heads * a.head_dim, kv, kv, kv, 0, a.heads * a.head_dim]
        }
    }
}

/// Heads, query/key and value columns of the attention kernel.
fn attention_dims(cfg: &ModelConfig) -> (usize, usize, usize) {
    let a = &cfg.attention;
    match a.mla {
        Some(m) => (
            a.heads,
            m.qk_nope_head_dim + m.qk_rope_head_dim,
            m.v_head_dim,
        ),
        None => (a.heads, a.head_dim, a.head_dim),
    }
}

/// The attention state buffer: a (token, split) state for every query of a step whose keys
/// take several passes, and [`MAX_SPLITS`] for split decode steps (as many as the binding
/// limit allows).
fn partials(
    ctx: &Context,
    cfg: &ModelConfig,
    batch: usize,
    positions: usize,
    split_kv: SplitKv,
) -> Result<wgpu::Buffer> {
    let (heads, qk_dim, v_dim) = attention_dims(cfg);
    let spec = AttentionSpec {
        heads,
        kv_heads: heads,
        qk_dim,
        v_dim,
        window: None,
        sinks: false,
        scale: 1.0,
        max_tokens: batch,
        positions,
        pass_keys: None,
    };
    let per_slot = partials_bytes(1, heads, v_dim);
    let fit = (ctx.max_binding() / per_slot) as usize;
    let wanted = if split_kv == SplitKv::OFF {
        0
    } else {
        MAX_SPLITS.min(fit)
    };
    let slots = spec.min_partial_slots().max(wanted).max(1);
    ctx.storage("attention partials", partials_bytes(slots, heads, v_dim))
}

impl Scratch {
    pub fn new(
        ctx: &Context,
        cfg: &ModelConfig,
        batch: usize,
        positions: usize,
        split_kv: SplitKv,
    ) -> Result<Self> {
        let rows = |label: &str, cols: usize| ctx.storage(label, (batch * cols.max(1) * 4) as u64);
        let h = cfg.hidden;
        let [q, k_raw, k_norm, v_raw, q_a, attn] = widths(cfg);
        let table = cfg.rope.table(positions);
        Ok(Self {
            batch,
            h: rows("residual", h)?,
            x: rows("normed", h)?,
            attn_out: rows("attention output", h)?,
            mlp_out: rows("mlp output", h)?,
            q_raw: rows("q projected", q)?,
            q_norm: rows("q normed", q)?,
            q: rows("q rotated", q)?,
            k_raw: rows("k projected", k_raw)?,
            k_norm: rows("k normed", k_norm)?,
            v_raw: rows("v projected", v_raw)?,
            q_a: rows("q latent", q_a)?,
            q_a_norm: rows("q latent normed", q_a)?,
            attn: rows("attention heads", attn)?,
            partials: partials(ctx, cfg, batch, positions, split_kv)?,
            rope_table: ctx.storage_with(
                "rope cos/sin",
                bytemuck::cast_slice::<[f32; 2], f32>(&table),
            )?,
            zeros: ctx.storage_with("zeros", &[0u32; 4])?,
        })
    }
}
