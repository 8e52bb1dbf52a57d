//! `shaders/rmsnorm.wgsl`: RMSNorm over rows, optionally after a residual add.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{Binding, Context, KernelDef, Override, PipelineKey};
use crate::kernels::{Dispatch, WORKGROUP, groups};

/// Add `delta` to the residual stream `x` (and store it) before the norm.
pub const ADD: Override = Override("ADD");

/// RMSNorm over rows (`shaders/rmsnorm.wgsl`).
pub static RMS_NORM: KernelDef = KernelDef {
    name: "rmsnorm",
    parts: &[include_str!("../../shaders/rmsnorm.wgsl")],
    bindings: &[
        Binding::uniform("p"),      // NormParams
        Binding::read("delta"),     // [rows, in_stride] (ADD only)
        Binding::read_write("x"),   // [rows, in_stride] residual stream
        Binding::read("weight"),    // [width]
        Binding::read_write("out"), // [rows, out_stride]
    ],
    overrides: &[ADD],
};

/// Mirrors `Params` in `shaders/rmsnorm.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct NormParams {
    pub rows: u32,
    pub width: u32,
    pub in_stride: u32,
    pub in_offset: u32,
    pub out_stride: u32,
    pub eps: f32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Where a norm reads and writes, in floats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormShape {
    /// Columns normalised per row (the weight's length).
    pub width: usize,
    /// Rows per token: 1 for a whole hidden state, `heads` for a per-head norm.
    pub rows_per_token: usize,
    /// Floats between consecutive rows of the input (and of the residual update).
    pub in_stride: usize,
    /// Floats between consecutive rows of the output.
    pub out_stride: usize,
}

impl NormShape {
    /// One contiguous row of `width` per token.
    pub fn rows(width: usize) -> Self {
        Self {
            width,
            rows_per_token: 1,
            in_stride: width,
            out_stride: width,
        }
    }
}

/// The buffers of an [`RmsNorm`].
pub struct NormBuffers<'a> {
    /// [rows, in_stride] residual update, read only with `add` (any buffer otherwise).
    pub delta: &'a wgpu::Buffer,
    /// [rows, in_stride] input; with `add` the residual stream, updated in place.
    pub x: &'a wgpu::Buffer,
    /// `[width]` gain.
    pub weight: &'a wgpu::Buffer,
    /// [rows, out_stride]
    pub out: &'a wgpu::Buffer,
}

/// An RMSNorm bound to its buffers.
pub struct RmsNorm {
    shape: NormShape,
    dispatch: Dispatch<NormParams>,
}

impl RmsNorm {
    /// Builds the norm of `shape` with epsilon `eps`; `add` first adds `delta` to the residual
    /// stream `x` in place.
    pub fn new(
        ctx: &Context,
        shape: NormShape,
        eps: f32,
        add: bool,
        b: NormBuffers<'_>,
    ) -> Result<Self> {
        let params = NormParams {
            rows: 0,
            width: shape.width as u32,
            in_stride: shape.in_stride as u32,
            in_offset: 0,
            out_stride: shape.out_stride as u32,
            eps,
            _pad0: 0,
            _pad1: 0,
        };
        let key = PipelineKey::new(&RMS_NORM).flag(ADD, add);
        let dispatch = Dispatch::new(ctx, &key, params, &[b.delta, b.x, b.weight, b.out])?;
        Ok(Self { shape, dispatch })
    }

    /// Normalises the rows of tokens 0..tokens.
    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        self.encode_range(ctx, pass, 0, tokens);
    }

    /// Normalises the rows of tokens first..first + tokens, writing them from output row 0.
    pub fn encode_range(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        first: usize,
        tokens: usize,
    ) {
        let rows = tokens * self.shape.rows_per_token;
        let offset = first * self.shape.rows_per_token * self.shape.in_stride;
        self.dispatch.set_params(
            ctx,
            NormParams {
                rows: rows as u32,
                in_offset: offset as u32,
                ..self.dispatch.params()
            },
        );
        self.dispatch.dispatch(pass, groups(rows, WORKGROUP), 1);
    }
}
