//! DeepSeek multi-head latent attention (MLA), as transformers 5.23 computes it: q from a
//! low-rank path (q_a_proj → q_a_layernorm → q_b_proj) or one q_proj; a latent
//! kv_a_proj_with_mqa split into kv_lora_rank columns (normed by kv_a_layernorm, expanded by
//! kv_b_proj into per-head k_nope and v) and one shared rope key. The cache holds the expanded
//! per-head keys and values, which is exact (kv_b_proj acts row by row) and keeps the
//! attention kernel the same as for other models.

use crate::error::Result;
use crate::gpu::Context;
use crate::kernels::attention::{Attention, AttentionBuffers};
use crate::kernels::norm::{NormShape, RmsNorm};
use crate::kernels::rope::{Rope, RopeBuffers, RopeLayout};
use crate::kernels::rows::RowPlace;
use crate::model::attention_init::AttentionInit;
use crate::model::projection::Linear;

pub struct MlaAttention {
    /// q_a_proj and q_a_layernorm when q is low-rank (q_lora_rank set).
    q_down: Option<(Linear, RmsNorm)>,
    /// q_proj, or q_b_proj after `q_down`.
    q_up: Linear,
    kv_a: Linear,
    kv_norm: RmsNorm,
    kv_b: Linear,
    q_rope: Rope,
    k_nope_store: Rope,
    k_rope_store: Rope,
    v_store: Rope,
    attention: Attention,
    o_proj: Linear,
}

impl MlaAttention {
    pub fn new(init: &AttentionInit<'_>) -> Result<Self> {
        let (cfg, s) = (init.cfg, init.scratch);
        let a = &cfg.attention;
        let m = a.mla.ok_or_else(|| {
            crate::Error::config("kv_lora_rank", "MLA attention needs the MLA fields")
        })?;
        let (heads, hidden) = (a.heads, cfg.hidden);
        let (nope, rope, vd, kvr) = (
            m.qk_nope_head_dim,
            m.qk_rope_head_dim,
            m.v_head_dim,
            m.kv_lora_rank,
        );
        let qk = nope + rope;
        let (q_down, q_up) = match m.q_lora_rank {
            None => (
                None,
                init.linear("q_proj", heads * qk, hidden, &s.x, &s.q_raw)?,
            ),
            Some(r) => (
                Some((
                    init.linear("q_a_proj", r, hidden, &s.x, &s.q_a)?,
                    init.norm(
                        "q_a_layernorm.weight",
                        NormShape::rows(r),
                        &s.q_a,
                        &s.q_a_norm,
                    )?,
                )),
                init.linear("q_b_proj", heads * qk, r, &s.q_a_norm, &s.q_raw)?,
            ),
        };
        let kv_a = init.linear("kv_a_proj_with_mqa", kvr + rope, hidden, &s.x, &s.k_raw)?;
        let kv_norm = init.norm(
            "kv_a_layernorm.weight",
            NormShape {
                width: kvr,
                rows_per_token: 1,
                in_stride: kvr + rope,
                out_stride: kvr,
            },
            &s.k_raw,
            &s.k_norm,
        )?;
        let kv_b = init.linear("kv_b_proj", heads * (nope + vd), kvr, &s.k_norm, &s.v_raw)?;

        let k_cache = init.cache("k", heads * qk)?;
        let v_cache = init.cache("v", heads * vd)?;
        let interleave = cfg.rope.interleave;
        let rope_kernel = |layout, src, dst| {
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
        // q: rotate the last `rope` columns of every head.
        let q_rope = rope_kernel(
            RopeLayout {
                heads,
                dim: qk,
                rot_start: nope,
                rot_dim: rope,
                src_stride: heads * qk,
                src_head_stride: qk,
                dst_stride: heads * qk,
                dst_head_stride: qk,
                interleave,
                ..Default::default()
            },
            &s.q_raw,
            &s.q,
        )?;
        // k = [k_nope from kv_b_proj | the one rotated latent rope key, broadcast to all heads].
        let k_nope_store = rope_kernel(
            RopeLayout {
                heads,
                dim: nope,
                src_stride: heads * (nope + vd),
                src_head_stride: nope + vd,
                dst_stride: heads * qk,
                dst_head_stride: qk,
                dst_at_position: true,
                ..Default::default()
            },
            &s.v_raw,
            &k_cache,
        )?;
        let k_rope_store = rope_kernel(
            RopeLayout {
                heads,
                dim: rope,
                rot_dim: rope,
                src_stride: kvr + rope,
                src_head_stride: 0,
                src_offset: kvr,
                dst_stride: heads * qk,
                dst_head_stride: qk,
                dst_offset: nope,
                dst_at_position: true,
                interleave,
                ..Default::default()
            },
            &s.k_raw,
            &k_cache,
        )?;
        let v_store = rope_kernel(
            RopeLayout {
                heads,
                dim: vd,
                src_stride: heads * (nope + vd),
                src_head_stride: nope + vd,
                src_offset: nope,
                dst_stride: heads * vd,
                dst_head_stride: vd,
                dst_at_position: true,
                ..Default::default()
            },
            &s.v_raw,
            &v_cache,
        )?;
        let spec = init.spec(heads, qk, vd)?;
        let attention = Attention::new(
            init.ctx,
            spec,
            init.split_kv(&spec),
            AttentionBuffers {
                q: &s.q,
                k: &k_cache,
                v: &v_cache,
                sinks: &s.zeros,
                partials: &s.partials,
                out: &s.attn,
                rows: &s.rows,
            },
        )?;
        let o_proj = init.linear("o_proj", hidden, heads * vd, &s.attn, &s.attn_out)?;
        Ok(Self {
            q_down,
            q_up,
            kv_a,
            kv_norm,
            kv_b,
            q_rope,
            k_nope_store,
            k_rope_store,
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
        if let Some((down, norm)) = &self.q_down {
            down.encode(ctx, pass, tokens);
            norm.encode(ctx, pass, tokens);
        }
        self.q_up.encode(ctx, pass, tokens);
        self.kv_a.encode(ctx, pass, tokens);
        self.kv_norm.encode(ctx, pass, tokens);
        self.kv_b.encode(ctx, pass, tokens);
        self.q_rope.encode_rows(ctx, pass, tokens);
        self.k_nope_store.encode_rows(ctx, pass, tokens);
        self.k_rope_store.encode_rows(ctx, pass, tokens);
        self.v_store.encode_rows(ctx, pass, tokens);
        self.attention.encode_rows(ctx, pass, rows)?;
        self.o_proj.encode(ctx, pass, tokens);
        Ok(())
    }
}
