//! `shaders/combine.wgsl`: weighted gather of each token's expert rows, plus the shared expert.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{Context, Kernel, PipelineKey};
use crate::kernels::{Dispatch, WORKGROUP, groups};

/// Mirrors `Params` in `shaders/combine.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct CombineParams {
    pub tokens: u32,
    pub hidden: u32,
    pub k_max: u32,
    pub y_stride: u32,
}

pub struct CombineBuffers<'a> {
    pub weights: &'a wgpu::Buffer,
    pub pos: &'a wgpu::Buffer,
    pub y: &'a wgpu::Buffer,
    pub shared_out: &'a wgpu::Buffer,
    pub shared_gate: &'a wgpu::Buffer,
    pub out: &'a wgpu::Buffer,
}

pub struct Combine {
    hidden: usize,
    dispatch: Dispatch<CombineParams>,
}

impl Combine {
    pub fn new(
        ctx: &Context,
        hidden: usize,
        k_max: usize,
        shared: bool,
        shared_gate: bool,
        b: CombineBuffers<'_>,
    ) -> Result<Self> {
        let key = PipelineKey::new(Kernel::Combine)
            .flag("SHARED", shared)
            .flag("SHARED_GATE", shared_gate);
        let params = CombineParams {
            tokens: 0,
            hidden: hidden as u32,
            k_max: k_max as u32,
            y_stride: hidden as u32,
        };
        let dispatch = Dispatch::new(
            ctx,
            &key,
            params,
            &[b.weights, b.pos, b.y, b.shared_out, b.shared_gate, b.out],
        )?;
        Ok(Self { hidden, dispatch })
    }

    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        self.dispatch.set_params(
            ctx,
            CombineParams {
                tokens: tokens as u32,
                ..self.dispatch.params()
            },
        );
        self.dispatch
            .dispatch(pass, groups(self.hidden, WORKGROUP), tokens as u32);
    }
}
