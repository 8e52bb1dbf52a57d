//! A dense gated MLP on the GPU (shared experts, DeepSeek's dense layers): the matmul kernel in
//! dense mode, gate/up fused with the activation, then down.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::dense::DenseMatmul;
use crate::kernels::expert_arena::{ExpertArena, write_packed};
use crate::kernels::matmul::{ExpertFormat, Glu, MatmulBuffers};
use crate::kernels::row_split::SplitWeights;
use crate::kernels::tiling::TileKind;
use crate::kernels::tune::{self, ExpertGemms};
use crate::spec::weights::{ExpertWeights, PackedExpert};

/// Gate/up then down, each in the tuned prefill tiling for many tokens and the tuned decode
/// matvec for a few (the same bits either way).
pub struct DenseMlp {
    gate_up: DenseMatmul,
    down: DenseMatmul,
}

/// The buffers a [`DenseMlp`] reads and writes, owned by the caller so that the MLPs of a
/// model share them.
#[derive(Clone, Copy)]
pub struct MlpIo<'a> {
    /// `[max_tokens, hidden]` input.
    pub x: &'a wgpu::Buffer,
    /// `[max_tokens, inter]` (or wider) activations between gate/up and down.
    pub hidden: &'a wgpu::Buffer,
    /// `[max_tokens, hidden]` output.
    pub out: &'a wgpu::Buffer,
}

impl DenseMlp {
    /// Uploads `w` (`[inter, hidden]` gate/up, `[hidden, inter]` down, each in its half of
    /// `format`) and binds it to `io` for steps of up to `max_tokens` tokens.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &Context,
        w: &ExpertWeights,
        hidden: usize,
        inter: usize,
        glu: Glu,
        format: ExpertFormat,
        packed: Option<&PackedExpert>,
        max_tokens: usize,
        io: MlpIo<'_>,
    ) -> Result<Self> {
        let need = (max_tokens * inter * 4) as u64;
        if io.hidden.size() < need {
            return Err(Error::input(format!(
                "MLP hidden buffer of {} bytes; [{max_tokens}, {inter}] f32 needs {need}",
                io.hidden.size()
            )));
        }
        let (x, out, h) = (io.x, io.out, io.hidden);
        let bias = w.gate_bias.is_some();
        w.check("mlp", hidden, inter, bias)?;
        let [gate_up_shape, down_shape] = ExpertArena::weight_shapes(hidden, inter, 1, format);
        let (gate_up_w, down_w) = match packed.filter(|p| p.format == format) {
            Some(p) => {
                let gate_up_w = SplitWeights::new(ctx, "mlp gate_up", gate_up_shape)?;
                let down_w = SplitWeights::new(ctx, "mlp down", down_shape)?;
                write_packed(ctx, [&gate_up_w, &down_w], 0, p, hidden, inter)?;
                (gate_up_w, down_w)
            }
            None => (
                SplitWeights::from_f32(ctx, "mlp gate_up", gate_up_shape, &[&w.gate, &w.up])?,
                SplitWeights::from_f32(ctx, "mlp down", down_shape, &[&w.down])?,
            ),
        };
        let gate_up_b = ctx.storage_with("mlp gate_up bias", &w.gate_up_bias(inter))?;
        let down_b = ctx.storage_with("mlp down bias", &w.down_bias_or_zero(hidden))?;
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
                out: h,
            },
        )?;
        let down = DenseMatmul::new(
            ctx,
            gemms.spec(false, prefill, false),
            decode,
            inter,
            hidden,
            MatmulBuffers {
                x: h,
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
