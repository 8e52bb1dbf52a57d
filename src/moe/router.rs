//! The router on the GPU: logits = x·W_gᵀ (+ bias), then the select kernel. Every MoE layer has
//! one over its input; a prefetch predictor builds a second one over another hidden state,
//! sharing the same weight buffers.

use crate::error::Result;
use crate::gpu::Context;
use crate::kernels::dense::DenseMatmul;
use crate::kernels::matmul::{MatmulBuffers, MatmulSpec, Tiling, WeightFormat};
use crate::kernels::permute::{PermuteBuffers, PermuteShape};
use crate::kernels::row_split::{SplitShape, SplitWeights};
use crate::kernels::select::{Select, SelectBuffers};
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::routing::DynamicActivation;
use crate::spec::weights::MoeWeights;

/// Router weights on the GPU.
pub struct RouterWeights {
    /// [experts (+1 shared-gate row), hidden]
    w: SplitWeights,
    /// [experts (+1)]
    b: wgpu::Buffer,
    /// [experts] selection-only correction bias (one zero without one).
    correction: wgpu::Buffer,
    /// [1] slot 0: the dense matmul's unused slot, tile and row bindings.
    slot0: wgpu::Buffer,
}

/// Router logit columns: the experts, plus the shared-expert gate logit where there is one.
pub fn logit_cols(spec: &MoeLayerSpec) -> usize {
    spec.routing.experts + usize::from(spec.routing.shared_gate)
}

impl RouterWeights {
    /// Uploads the router weights, bias and correction bias of `weights`.
    pub fn new(ctx: &Context, spec: &MoeLayerSpec, weights: &MoeWeights) -> Result<Self> {
        let e = spec.routing.experts;
        let mut w = weights.router.clone();
        let mut b = weights.router_bias.clone().unwrap_or_else(|| vec![0.0; e]);
        if let Some(gate) = weights.shared.as_ref().and_then(|s| s.gate.as_ref()) {
            w.extend_from_slice(gate);
            b.push(0.0);
        }
        let shape = SplitShape {
            n: logit_cols(spec),
            rows_per_output: 1,
            k: spec.hidden,
            format: WeightFormat::F32,
            slots: 1,
        };
        Ok(Self {
            w: SplitWeights::from_f32(ctx, "router weight", shape, &[&w])?,
            b: ctx.storage_with("router bias", &b)?,
            correction: ctx.storage_with(
                "correction bias",
                weights.correction.as_deref().unwrap_or(&[0.0]),
            )?,
            slot0: ctx.storage_with("slot 0", &[0u32])?,
        })
    }
}

/// What routing writes, sized for `max_tokens` tokens.
pub struct RouterOutputs {
    /// [max_tokens, logit_cols]
    pub logits: wgpu::Buffer,
    /// [max_tokens, k] expert ids, `INVALID` for dropped picks.
    pub ids: wgpu::Buffer,
    /// [max_tokens, k]
    pub weights: wgpu::Buffer,
    /// `[max_tokens]` sigmoid of the shared-expert gate logit.
    pub shared_gate: wgpu::Buffer,
}

impl RouterOutputs {
    /// Allocates the outputs for steps of up to `max_tokens` tokens.
    pub fn new(ctx: &Context, spec: &MoeLayerSpec, max_tokens: usize) -> Result<Self> {
        let pairs = (max_tokens * spec.routing.top_k * 4) as u64;
        Ok(Self {
            logits: ctx.storage("router logits", (max_tokens * logit_cols(spec) * 4) as u64)?,
            ids: ctx.storage("expert ids", pairs)?,
            weights: ctx.storage("expert weights", pairs)?,
            shared_gate: ctx.storage("shared gate", (max_tokens * 4) as u64)?,
        })
    }
}

/// The router's matvec at decode: E columns are too few to fill many threads with more than
/// two each, and 16-thread workgroups still give a CPU adapter's cores several to share.
const ROUTER_MATVEC: Tiling = Tiling::vector(16, 2);

/// Router matmul and selection bound to an input and outputs.
pub struct Router {
    top_k: usize,
    matmul: DenseMatmul,
    select: Select,
}

impl Router {
    /// Routes `x` ([max_tokens, hidden] f32) into `out`. With `permute`, each pick adds one to
    /// its counts (`[experts]`, the permutation's histogram) and the selection of a step of at
    /// most 64 tokens also builds the permutation. With `status` (a `[1]` u32 word and a
    /// nonzero tag), a token with a NaN or infinite logit writes the tag there unless another
    /// is already there.
    pub fn new(
        ctx: &Context,
        spec: &MoeLayerSpec,
        weights: &RouterWeights,
        x: &wgpu::Buffer,
        out: &RouterOutputs,
        permute: Option<&PermuteBuffers<'_>>,
        status: Option<(&wgpu::Buffer, u32)>,
    ) -> Result<Self> {
        let (h, cols) = (spec.hidden, logit_cols(spec));
        let matmul = DenseMatmul::new(
            ctx,
            MatmulSpec {
                bias: spec.routing.router_bias,
                ..MatmulSpec::dense(cols, h)
            },
            ROUTER_MATVEC,
            h,
            cols,
            MatmulBuffers {
                x,
                w: &weights.w,
                bias: &weights.b,
                slots: &weights.slot0,
                tiles: &weights.slot0,
                rows: &weights.slot0,
                out: &out.logits,
            },
        )?;
        let select = Select::new(
            ctx,
            &spec.routing,
            SelectBuffers {
                logits: &out.logits,
                correction: &weights.correction,
                ids: &out.ids,
                weights: &out.weights,
                shared_gate: &out.shared_gate,
                counts: permute.map(|p| p.counts),
                permute,
                status,
            },
        )?;
        Ok(Self {
            top_k: spec.routing.top_k,
            matmul,
            select,
        })
    }

    /// Records logits and selection for `tokens` tokens; with `permute`, returns whether the
    /// selection also permuted the step (see [`Select::encode`]).
    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        activation: &DynamicActivation,
        permute: Option<PermuteShape>,
    ) -> Result<bool> {
        let k = activation.effective_k(self.top_k)?;
        self.matmul.encode(ctx, pass, tokens);
        Ok(self
            .select
            .encode(ctx, pass, tokens, k, activation, permute))
    }
}
