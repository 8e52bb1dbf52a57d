//! `shaders/select.wgsl`: routing family → expert ids and weights per token, on the GPU.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Binding, Context, KernelDef, Override, PipelineKey};
use crate::kernels::permute::{PERMUTE_COMMON, PermuteBuffers, PermuteShape};
use crate::kernels::{Dispatch, WORKGROUP, groups};
use crate::spec::routing::{DynamicActivation, GroupScore, RoutingSpec, Scoring};

/// Scoring: 0 softmax, 1 sigmoid, 2 top-k then softmax.
pub const SCORE: Override = Override("SCORE");
/// Add the correction bias for the choice (not the weights).
pub const CORRECTION: Override = Override("CORRECTION");
/// Group score: 0 no groups, 1 max, 2 sum of the top two.
pub const GROUP: Override = Override("GROUP");
/// Renormalise the chosen weights.
pub const RENORM: Override = Override("RENORM");
/// The last logit column is a shared-expert gate.
pub const SHARED_GATE: Override = Override("SHARED_GATE");
/// Count the picks per expert (and permute small steps).
pub const COUNT: Override = Override("COUNT");

/// Every routing family's selection (`shaders/select.wgsl`), which permutes small steps
/// itself.
pub static SELECT: KernelDef = KernelDef {
    name: "select",
    parts: &[PERMUTE_COMMON, include_str!("../../shaders/select.wgsl")],
    bindings: &[
        Binding::uniform("p"),              // SelectParams
        Binding::read("logits"),            // [tokens, logit_stride]
        Binding::read("correction"),        // [experts]
        Binding::read_write("ids"),         // [tokens, k_max]
        Binding::read_write("weights"),     // [tokens, k_max]
        Binding::read_write("shared_gate"), // [tokens]
        Binding::read_write("counts"),      // [experts] COUNT: += picks
        Binding::read_write("offsets"),     // [experts + 1] permute
        Binding::read_write("cursor"),      // [experts] permute
        Binding::read_write("tiles"),       // [max tiles] permute
        Binding::read_write("args"),        // [12] permute
        Binding::read_write("rows"),        // [tokens · k_max] permute
        Binding::read_write("pos"),         // [tokens · k_max] permute
        Binding::read_write("status"),      // [1] 0, or the tag of the first non-finite layer
    ],
    overrides: &[SCORE, CORRECTION, GROUP, RENORM, SHARED_GATE, COUNT],
};

/// Mirrors `Params` in `shaders/select.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct SelectParams {
    pub tokens: u32,
    pub experts: u32,
    pub k: u32,
    pub k_max: u32,
    pub logit_stride: u32,
    pub n_group: u32,
    pub topk_group: u32,
    pub renorm_eps: f32,
    pub scale: f32,
    pub skip_beta: f32,
    pub top_p: f32,
    pub permute: u32,
    pub block_m: u32,
    pub col_blocks_a: u32,
    pub col_blocks_b: u32,
    pub tail_m: u32,
    pub status_tag: u32,
}

/// The buffers of a [`Select`].
pub struct SelectBuffers<'a> {
    /// [tokens, logit_stride] router logits (a shared-gate logit in the last column).
    pub logits: &'a wgpu::Buffer,
    /// `[experts]` selection-only correction bias (any buffer without one).
    pub correction: &'a wgpu::Buffer,
    /// `[tokens, k]` u32 selected experts (`INVALID` for dropped picks).
    pub ids: &'a wgpu::Buffer,
    /// `[tokens, k]` f32 routing weights (0 for dropped picks).
    pub weights: &'a wgpu::Buffer,
    /// `[tokens]` sigmoid of the shared-expert gate logit.
    pub shared_gate: &'a wgpu::Buffer,
    /// `[experts]` per-expert counts that every kept pick adds one to (the permutation's
    /// histogram; zero before the step), or `None` to count nothing.
    pub counts: Option<&'a wgpu::Buffer>,
    /// With `counts`: the permutation's buffers (`shaders/permute_common.wgsl`; their ids and
    /// counts are these), so that a step of at most [`WORKGROUP`] tokens is permuted by the
    /// selection itself.
    pub permute: Option<&'a PermuteBuffers<'a>>,
    /// Where a token with a NaN or infinite logit is reported: `[1]` u32 status word (zero
    /// before the step) and the nonzero tag to write there unless a tag is already there.
    /// `None` reports nothing.
    pub status: Option<(&'a wgpu::Buffer, u32)>,
}

/// The top-k selection of each token's experts from router logits (`shaders/select.wgsl`), bound to
/// its buffers.
pub struct Select {
    dispatch: Dispatch<SelectParams>,
    can_permute: bool,
}

fn key(spec: &RoutingSpec, count: bool) -> PipelineKey {
    let score = match spec.scoring {
        Scoring::Softmax => 0.0,
        Scoring::Sigmoid => 1.0,
        Scoring::TopKThenSoftmax => 2.0,
    };
    let group = match spec.group {
        GroupScore::None => 0.0,
        GroupScore::Max => 1.0,
        GroupScore::TopTwoSum => 2.0,
    };
    PipelineKey::new(&SELECT)
        .with(SCORE, score)
        .flag(CORRECTION, spec.correction_bias)
        .with(GROUP, group)
        .flag(RENORM, spec.renormalize)
        .flag(SHARED_GATE, spec.shared_gate)
        .flag(COUNT, count)
}

impl Select {
    /// Builds the selection for `spec` over `buffers`; it counts and permutes when they ask for it.
    pub fn new<'a>(ctx: &Context, spec: &RoutingSpec, buffers: SelectBuffers<'a>) -> Result<Self> {
        spec.validate()?;
        let params = SelectParams {
            tokens: 0,
            experts: spec.experts as u32,
            k: spec.top_k as u32,
            k_max: spec.top_k as u32,
            logit_stride: (spec.experts + usize::from(spec.shared_gate)) as u32,
            n_group: spec.n_group.max(1) as u32,
            topk_group: spec.topk_group.max(1) as u32,
            renorm_eps: spec.renorm_eps,
            scale: spec.scale,
            skip_beta: 0.0,
            top_p: 1.0,
            permute: 0,
            block_m: 1,
            col_blocks_a: 0,
            col_blocks_b: 0,
            tail_m: 0,
            status_tag: buffers.status.map_or(0, |s| s.1),
        };
        let b = &buffers;
        if let Some(p) = b.permute
            && (b.counts != Some(p.counts) || b.ids != p.ids)
        {
            return Err(Error::input(
                "a selection that permutes must count into the permutation's counts and write its ids",
            ));
        }
        // One small buffer stands in for each one the pipeline never touches.
        let unused = ctx.storage("select: unused binding", 16)?;
        let counts = b.counts.unwrap_or(&unused);
        let can_permute = b.permute.is_some();
        let p = b.permute;
        let or_unused = |f: fn(&PermuteBuffers<'a>) -> &'a wgpu::Buffer| p.map_or(&unused, f);
        let dispatch = Dispatch::new(
            ctx,
            &key(spec, b.counts.is_some()),
            params,
            &[
                b.logits,
                b.correction,
                b.ids,
                b.weights,
                b.shared_gate,
                counts,
                or_unused(|p| p.offsets),
                or_unused(|p| p.cursor),
                or_unused(|p| p.tiles),
                or_unused(|p| p.args),
                or_unused(|p| p.rows),
                or_unused(|p| p.pos),
                b.status.map_or(&unused, |s| s.0),
            ],
        )?;
        Ok(Self {
            dispatch,
            can_permute,
        })
    }

    /// Records the selection of `tokens` tokens. With `permute`, a selection built with the
    /// permutation's buffers also permutes a step of at most [`WORKGROUP`] tokens for GEMMs
    /// of that shape; returns whether it does (else the caller runs the scan).
    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        k: usize,
        activation: &DynamicActivation,
        permute: Option<PermuteShape>,
    ) -> bool {
        let fused = permute.filter(|_| self.can_permute && tokens <= WORKGROUP as usize);
        let shape = fused.unwrap_or(PermuteShape {
            block_m: 1,
            tail_m: 0,
            col_blocks: (0, 0),
        });
        self.dispatch.set_params(
            ctx,
            SelectParams {
                tokens: tokens as u32,
                k: k as u32,
                skip_beta: activation.skip_beta,
                top_p: activation.top_p,
                permute: u32::from(fused.is_some()),
                block_m: shape.block_m,
                col_blocks_a: shape.col_blocks.0,
                col_blocks_b: shape.col_blocks.1,
                tail_m: shape.tail_m,
                ..self.dispatch.params()
            },
        );
        self.dispatch.dispatch(pass, groups(tokens, WORKGROUP), 1);
        fused.is_some()
    }
}
