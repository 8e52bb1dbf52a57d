//! One decoder layer's self-attention on the GPU: projections (with biases where the checkpoint
//! has them), Qwen3 per-head or OLMoE whole-projection q/k norms, RoPE into the KV cache, causal
//! attention (GQA, sliding window, gpt-oss sinks) and o_proj. DeepSeek MLA lives in `mla.rs`.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::attention::{Attention, AttentionBuffers};
use crate::kernels::norm::{NormShape, RmsNorm};
use crate::kernels::rope::{Rope, RopeBuffers, RopeLayout};
use crate::kernels::rows::RowPlace;
use crate::model::attention_init::AttentionInit;
use crate::model::config::QkNorm;
use crate::model::mla::MlaAttention;
use crate::model::projection::Linear;

/// Multi-head attention with GQA: Mixtral, Qwen2/3-MoE, OLMoE, gpt-oss.
pub struct StandardAttention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    qk_norms: Option<[RmsNorm; 2]>,
    q_rope: Rope,
    k_rope: Rope,
    v_store: Rope,
    attention: Attention,
    o_proj: Linear,
}

impl StandardAttention {
    pub fn new(init: &AttentionInit<'_>) -> Result<Self> {
        let (cfg, s) = (init.cfg, init.scratch);
        let a = &cfg.attention;
        let (heads, kvh, hd, hidden) = (a.heads, a.kv_heads, a.head_dim, cfg.hidden);
        if cfg.rope.dim != hd {
            return Err(Error::config(
                "head_dim",
                format!("rotary dim {} differs from head_dim {hd}", cfg.rope.dim),
            ));
        }
        let q_proj = init.linear("q_proj", heads * hd, hidden, &s.x, &s.q_raw)?;
        let k_proj = init.linear("k_proj", kvh * hd, hidden, &s.x, &s.k_raw)?;
        let v_proj = init.linear("v_proj", kvh * hd, hidden, &s.x, &s.v_raw)?;
        let qk_norms = match a.qk_norm {
            QkNorm::None => None,
            QkNorm::PerHead => Some([
                init.norm("q_norm.weight", per_head(hd, heads), &s.q_raw, &s.q_norm)?,
                init.norm("k_norm.weight", per_head(hd, kvh), &s.k_raw, &s.k_norm)?,
            ]),
            QkNorm::Full => Some([
                init.norm(
                    "q_norm.weight",
                    NormShape::rows(heads * hd),
                    &s.q_raw,
                    &s.q_norm,
                )?,
                init.norm(
                    "k_norm.weight",
                    NormShape::rows(kvh * hd),
                    &s.k_raw,
                    &s.k_norm,
                )?,
            ]),
        };
        let (q_src, k_src) = if qk_norms.is_some() {
            (&s.q_norm, &s.k_norm)
        } else {
            (&s.q_raw, &s.k_raw)
        };
        let k_cache = init.cache("k", kvh * hd)?;
        let v_cache = init.cache("v", kvh * hd)?;
        let heads_layout = |n: usize, rotate: bool, cache: bool| RopeLayout {
            heads: n,
            dim: hd,
            rot_start: 0,
            rot_dim: if rotate { hd } else { 0 },
            src_stride: n * hd,
            src_head_stride: hd,
            src_offset: 0,
            dst_stride: n * hd,
            dst_head_stride: hd,
            dst_offset: 0,
            dst_at_position: cache,
            interleave: cfg.rope.interleave,
        };
        let rope = |layout, src, dst| {
            Rope::new(
                init.ctx,
                layout,
                RopeBuffers {
                    src,
                    table: &s.rope_table,
                    dst,
                    rows: &s.rows,
                },
            )
        };
        let q_rope = rope(heads_layout(heads, true, false), q_src, &s.q)?;
        let k_rope = rope(heads_layout(kvh, true, true), k_src, &k_cache)?;
        let v_store = rope(heads_layout(kvh, false, true), &s.v_raw, &v_cache)?;
        let sinks = if a.sinks {
            let w = init
                .ckpt
                .f32(&format!("{}sinks", init.prefix()), &[heads])?;
            init.ctx.storage_with("attention sinks", &w)?
        } else {
            s.zeros.clone()
        };
        let spec = init.spec(kvh, hd, hd)?;
        let attention = Attention::new(
            init.ctx,
            spec,
            init.split_kv(&spec),
            AttentionBuffers {
                q: &s.q,
                k: &k_cache,
                v: &v_cache,
                sinks: &sinks,
                partials: &s.partials,
                out: &s.attn,
                rows: &s.rows,
            },
        )?;
        let o_proj = init.linear("o_proj", hidden, heads * hd, &s.attn, &s.attn_out)?;
        Ok(Self {
            q_proj,
            k_proj,
            v_proj,
            qk_norms,
            q_rope,
            k_rope,
            v_store,
            attention,
            o_proj,
        })
    }

    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        rows: &[RowPlace],
    ) -> Result<()> {
        let tokens = rows.len();
        self.q_proj.encode(ctx, pass, tokens);
        self.k_proj.encode(ctx, pass, tokens);
        self.v_proj.encode(ctx, pass, tokens);
        if let Some([q, k]) = &self.qk_norms {
            q.encode(ctx, pass, tokens);
            k.encode(ctx, pass, tokens);
        }
        self.q_rope.encode_rows(ctx, pass, tokens);
        self.k_rope.encode_rows(ctx, pass, tokens);
        self.v_store.encode_rows(ctx, pass, tokens);
        self.attention.encode_rows(ctx, pass, rows)?;
        self.o_proj.encode(ctx, pass, tokens);
        Ok(())
    }
}

/// A norm over each of `heads` heads of `head_dim` columns.
fn per_head(head_dim: usize, heads: usize) -> NormShape {
    NormShape {
        rows_per_token: heads,
        ..NormShape::rows(head_dim)
    }
}

/// A layer's attention, standard or latent.
pub enum AttentionBlock {
    Standard(Box<StandardAttention>),
    Mla(Box<MlaAttention>),
}

impl AttentionBlock {
    /// Reads `scratch.x` [tokens, hidden] and writes `scratch.attn_out` [tokens, hidden].
    pub fn new(init: &AttentionInit<'_>) -> Result<Self> {
        Ok(match init.cfg.attention.mla {
            Some(_) => AttentionBlock::Mla(Box::new(MlaAttention::new(init)?)),
            None => AttentionBlock::Standard(Box::new(StandardAttention::new(init)?)),
        })
    }

    /// Records the attention of the step's tokens, placed by `rows` (already in the scratch
    /// row table): each token's k and v go to its sequence's cache first.
    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        rows: &[RowPlace],
    ) -> Result<()> {
        match self {
            AttentionBlock::Standard(a) => a.encode(ctx, pass, rows),
            AttentionBlock::Mla(a) => a.encode(ctx, pass, rows),
        }
    }
}
