//! A dense gated MLP on the GPU (shared experts, DeepSeek's dense layers): the matmul kernel in
//! dense mode, gate/up fused with the activation, then down.

use crate::error::Result;
use crate::gpu::Context;
use crate::kernels::dense::DenseMatmul;
use crate::kernels::matmul::{Glu, MatmulBuffers, WeightFormat};
use crate::kernels::tiling::TileKind;
use crate::kernels::tune::{self, ExpertGemms};
use crate::spec::weights::ExpertWeights;

/// Gate/up then down, each in the tuned prefill tiling for many tokens and the tuned decode
/// matvec for a few (the same bits either way).
pub struct DenseMlp {
    gate_up: DenseMatmul,
    down: DenseMatmul,
}

impl DenseMlp {
    /// Uploads `w` ([inter, hidden] gate/up, [hidden, inter] down) and binds it to read `x`
    /// ([tokens, hidden]) and write `out` ([tokens, hidden]).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &Context,
        w: &ExpertWeights,
        hidden: usize,
        inter: usize,
        glu: Glu,
        format: WeightFormat,
        max_tokens: usize,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<Self> {
        let bias = w.gate_bias.is_some();
        w.check("mlp", hidden, inter, bias)?;
        let gate_up_w = ctx.storage_with("mlp gate_up", &w.pack_gate_up(format, hidden, inter))?;
        let down_w = ctx.storage_with("mlp down", &w.pack_down(format, hidden, inter))?;
        let gate_up_b = ctx.storage_with("mlp gate_up bias", &w.gate_up_bias(inter))?;
        let down_b = ctx.storage_with("mlp down bias", &w.down_bias_or_zero(hidden))?;
        let h = ctx.storage("mlp hidden", (max_tokens * inter * 4) as u64)?;
        let slot0 = ctx.storage_with("slot 0", &[0u32])?;
        let gemms = ExpertGemms {
            hidden,
            inter,
            glu,
            bias,
            format,
        };
        let prefill = tune::tiling(ctx, TileKind::Prefill, &gemms);
        let decode = tune::tiling(ctx, TileKind::Decode, &gemms);
        let gate_up = DenseMatmul::new(
            ctx,
            gemms.spec(true, prefill, false),
            decode,
            hidden,
            inter,
            MatmulBuffers {
                x,
                w: &gate_up_w,
                bias: &gate_up_b,
                slots: &slot0,
                tiles: &slot0,
                rows: &slot0,
                out: &h,
            },
        )?;
        let down = DenseMatmul::new(
            ctx,
            gemms.spec(false, prefill, false),
            decode,
            inter,
            hidden,
            MatmulBuffers {
                x: &h,
                w: &down_w,
                bias: &down_b,
                slots: &slot0,
                tiles: &slot0,
                rows: &slot0,
                out,
            },
        )?;
        Ok(Self { gate_up, down })
    }

    /// Records the MLP over the first `tokens` rows.
    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        self.gate_up.encode(ctx, pass, tokens);
        self.down.encode(ctx, pass, tokens);
    }
}
