//! `shaders/select.wgsl`: routing family → expert ids and weights per token, on the GPU.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{Context, Kernel, PipelineKey};
use crate::kernels::{Dispatch, WORKGROUP, groups};
use crate::moe::routing::{DynamicActivation, GroupScore, RoutingSpec, Scoring};

/// Mirrors `Params` in `shaders/select.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct SelectParams {
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
    pub _pad: u32,
}

pub struct SelectBuffers<'a> {
    /// [tokens, logit_stride] router logits (a shared-gate logit in the last column).
    pub logits: &'a wgpu::Buffer,
    /// [experts] selection-only correction bias (any buffer without one).
    pub correction: &'a wgpu::Buffer,
    pub ids: &'a wgpu::Buffer,
    pub weights: &'a wgpu::Buffer,
    /// [tokens] sigmoid of the shared-expert gate logit.
    pub shared_gate: &'a wgpu::Buffer,
    /// [experts] per-expert counts that every kept pick adds one to (the permutation's
    /// histogram; zero before the step), or `None` to count nothing.
    pub counts: Option<&'a wgpu::Buffer>,
}

pub struct Select {
    dispatch: Dispatch<SelectParams>,
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
    PipelineKey::new(Kernel::Select)
        .with("SCORE", score)
        .flag("CORRECTION", spec.correction_bias)
        .with("GROUP", group)
        .flag("RENORM", spec.renormalize)
        .flag("SHARED_GATE", spec.shared_gate)
        .flag("COUNT", count)
}

impl Select {
    pub fn new(ctx: &Context, spec: &RoutingSpec, buffers: SelectBuffers<'_>) -> Result<Self> {
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
            _pad: 0,
        };
        let b = &buffers;
        let no_counts;
        let counts = match b.counts {
            Some(c) => c,
            None => {
                no_counts = ctx.storage("select: no counts", 4)?;
                &no_counts
            }
        };
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
            ],
        )?;
        Ok(Self { dispatch })
    }

    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        k: usize,
        activation: &DynamicActivation,
    ) {
        self.dispatch.set_params(
            ctx,
            SelectParams {
                tokens: tokens as u32,
                k: k as u32,
                skip_beta: activation.skip_beta,
                top_p: activation.top_p,
                ..self.dispatch.params()
            },
        );
        self.dispatch.dispatch(pass, groups(tokens, WORKGROUP), 1);
    }
}
