//! Activation buffers shared by every layer of a decoder (layers run one after another, so one
//! set suffices), sized once for the largest step, plus the rotary table.

use crate::error::Result;
use crate::gpu::Context;
use std::sync::Arc;

use crate::kernels::attention::{AttentionSpec, SplitKv, partials_bytes};
use crate::kernels::rows::{RowPlace, RowTable};
use crate::model::config::ModelConfig;

pub struct Scratch {
    /// [batch, hidden] the residual stream.
    pub h: wgpu::Buffer,
    /// [batch, hidden] the current norm's output (attention and MLP input).
    pub x: wgpu::Buffer,
    /// [batch, hidden] attention output after o_proj.
    pub attn_out: wgpu::Buffer,
    /// [batch, hidden] MLP / MoE output.
    pub mlp_out: wgpu::Buffer,
    /// `[batch, dense_inter]` the dense MLP layers' activations between gate/up and down.
    pub mlp_hidden: wgpu::Buffer,
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
    /// [batch] each token's sequence and position, read by RoPE and attention.
    pub rows: Arc<RowTable>,
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

/// Bytes of the attention state buffer: a (token, split) state for every query of a step whose
/// keys take several passes, and [`MAX_SPLITS`] per query of a split decode step (as many as a
/// binding of `max_binding` bytes holds).
fn partials_size(
    cfg: &ModelConfig,
    batch: usize,
    positions: usize,
    split_kv: SplitKv,
    max_binding: u64,
) -> u64 {
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
    let fit = (max_binding / per_slot) as usize;
    let wanted = split_kv.states().min(fit);
    let slots = spec.min_partial_slots().max(wanted).max(1);
    partials_bytes(slots, heads, v_dim)
}

/// Bytes of every scratch buffer, by name, in allocation order: the residual stream and the
/// layer activations for `batch` tokens, the attention states, the rotary table of `positions`
/// rows, a small zero buffer and the tokens' row places.
pub fn scratch_bytes(
    cfg: &ModelConfig,
    batch: usize,
    positions: usize,
    split_kv: SplitKv,
    max_binding: u64,
) -> [(&'static str, u64); 18] {
    let rows = |cols: usize| (batch * cols.max(1) * 4) as u64;
    let h = cfg.hidden;
    let [q, k_raw, k_norm, v_raw, q_a, attn] = widths(cfg);
    let rope_pairs = cfg.rope.table(1).len() * positions;
    let dense_hidden = if cfg.dense_layers().is_empty() {
        16
    } else {
        rows(cfg.dense_inter)
    };
    [
        ("residual", rows(h)),
        ("normed", rows(h)),
        ("attention output", rows(h)),
        ("mlp output", rows(h)),
        ("mlp hidden", dense_hidden),
        ("q projected", rows(q)),
        ("q normed", rows(q)),
        ("q rotated", rows(q)),
        ("k projected", rows(k_raw)),
        ("k normed", rows(k_norm)),
        ("v projected", rows(v_raw)),
        ("q latent", rows(q_a)),
        ("q latent normed", rows(q_a)),
        ("attention heads", rows(attn)),
        (
            "attention partials",
            partials_size(cfg, batch, positions, split_kv, max_binding),
        ),
        ("rope cos/sin", (rope_pairs * 8) as u64),
        ("zeros", 16),
        ("row places", (batch * size_of::<RowPlace>()) as u64),
    ]
}

impl Scratch {
    pub fn new(
        ctx: &Context,
        cfg: &ModelConfig,
        batch: usize,
        positions: usize,
        split_kv: SplitKv,
    ) -> Result<Self> {
        let sizes = scratch_bytes(cfg, batch, positions, split_kv, ctx.max_binding());
        let [
            h,
            x,
            attn_out,
            mlp_out,
            mlp_hidden,
            q_raw,
            q_norm,
            q,
            k_raw,
            k_norm,
            v_raw,
            q_a,
            q_a_norm,
            attn,
            partials,
            ..,
        ] = sizes;
        let buf = |(label, bytes): (&str, u64)| ctx.storage(label, bytes);
        let table = cfg.rope.table(positions);
        Ok(Self {
            h: buf(h)?,
            x: buf(x)?,
            attn_out: buf(attn_out)?,
            mlp_out: buf(mlp_out)?,
            mlp_hidden: buf(mlp_hidden)?,
            q_raw: buf(q_raw)?,
            q_norm: buf(q_norm)?,
            q: buf(q)?,
            k_raw: buf(k_raw)?,
            k_norm: buf(k_norm)?,
            v_raw: buf(v_raw)?,
            q_a: buf(q_a)?,
            q_a_norm: buf(q_a_norm)?,
            attn: buf(attn)?,
            partials: buf(partials)?,
            rope_table: ctx.storage_with(
                "rope cos/sin",
                bytemuck::cast_slice::<[f32; 2], f32>(&table),
            )?,
            zeros: ctx.storage_with("zeros", &[0u32; 4])?,
            rows: Arc::new(RowTable::new(ctx, batch)?),
        })
    }
}
