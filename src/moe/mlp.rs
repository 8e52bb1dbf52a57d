//! A dense gated MLP on the GPU (shared experts, DeepSeek's dense layers): the matmul kernel in
//! dense mode, gate/up fused with the activation, then down.

use crate::error::Result;
use crate::gpu::Context;
use crate::kernels::matmul::{Glu, Matmul, MatmulBuffers, MatmulSpec, WeightFormat};
use crate::moe::experts::ExpertWeights;

pub struct DenseMlp {
    gate_up: Matmul,
    down: Matmul,
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
        let spec = |n, k, glu| MatmulSpec {
            glu,
            bias,
            format,
            ..MatmulSpec::dense(n, k)
        };
        let gate_up = Matmul::new(
            ctx,
            spec(inter, hidden, glu),
            hidden,
            inter,
            1,
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
        let down = Matmul::new(
            ctx,
            spec(hidden, inter, Glu::None),
            inter,
            hidden,
            1,
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

    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        self.gate_up.encode(ctx, pass, tokens);
        self.down.encode(ctx, pass, tokens);
    }
}
