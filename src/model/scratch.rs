//! Activation buffers shared by every layer of a decoder (layers run one after another, so one
//! set suffices), sized once for the largest step, plus the rotary table.

use crate::error::Result;
use crate::gpu::Context;
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

impl Scratch {
    pub fn new(ctx: &Context, cfg: &ModelConfig, batch: usize, positions: usize) -> Result<Self> {
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
            rope_table: ctx.storage_with(
                "rope cos/sin",
                bytemuck::cast_slice::<[f32; 2], f32>(&table),
            )?,
            zeros: ctx.storage_with("zeros", &[0u32; 4])?,
        })
    }
}
