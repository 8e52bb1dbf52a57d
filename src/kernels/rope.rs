//! `shaders/rope.wgsl`: rotary position embedding fused with a strided copy (into the attention
//! input or the KV cache).

use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Binding, Context, KernelDef, Override, PipelineKey};
use crate::kernels::rows::{RowPlace, RowTable};
use crate::kernels::{Dispatch, WORKGROUP, groups};

/// Rotate interleaved pairs (2i, 2i + 1) rather than halves (i, i + rot_dim / 2).
pub const INTERLEAVE: Override = Override("INTERLEAVE");

/// Rotary embedding fused with a strided copy (`shaders/rope.wgsl`).
pub static ROPE: KernelDef = KernelDef {
    name: "rope",
    parts: &[include_str!("../../shaders/rope.wgsl")],
    bindings: &[
        Binding::uniform("p"),      // RopeParams
        Binding::read("src"),       // [tokens, src_stride]
        Binding::read("table"),     // [positions, rot_dim / 2] (cos, sin)
        Binding::read_write("dst"), // [rows, dst_stride]
        Binding::read("rows"),      // [tokens] RowPlace
    ],
    overrides: &[INTERLEAVE],
};

/// Mirrors `Params` in `shaders/rope.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct RopeParams {
    pub tokens: u32,
    pub heads: u32,
    pub dim: u32,
    pub rot_start: u32,
    pub rot_dim: u32,
    pub src_stride: u32,
    pub src_head_stride: u32,
    pub src_offset: u32,
    pub dst_stride: u32,
    pub dst_head_stride: u32,
    pub dst_offset: u32,
    pub at_position: u32,
    pub _pad: [u32; 3],
}

/// The layout of one rotate-and-copy, in floats. Token t, head h, column c is read from
/// `src[t·src_stride + src_offset + h·src_head_stride + c]` and written to
/// `dst[row·dst_stride + dst_offset + h·dst_head_stride + c]`, where row is t or, for a KV
/// cache, the token's place in its sequence's cache (see [`RowPlace`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RopeLayout {
    /// Heads to rotate and copy.
    pub heads: usize,
    /// Columns copied per head.
    pub dim: usize,
    /// First rotated column of each head.
    pub rot_start: usize,
    /// Rotated columns; 0 copies only.
    pub rot_dim: usize,
    /// Source floats per token.
    pub src_stride: usize,
    /// 0 broadcasts one source head to every destination head.
    pub src_head_stride: usize,
    /// Source float offset of head 0.
    pub src_offset: usize,
    /// Destination floats per row.
    pub dst_stride: usize,
    /// Destination floats between heads.
    pub dst_head_stride: usize,
    /// Destination float offset of head 0.
    pub dst_offset: usize,
    /// Write token t to its cache row (`cache_row0 + position`) rather than row t.
    pub dst_at_position: bool,
    /// Rotate pairs (2i, 2i + 1) rather than (i, i + rot_dim / 2).
    pub interleave: bool,
}

/// The buffers of a [`Rope`].
pub struct RopeBuffers<'a> {
    /// [tokens, src_stride]
    pub src: &'a wgpu::Buffer,
    /// [positions, rot_dim / 2] (cos, sin) pairs.
    pub table: &'a wgpu::Buffer,
    /// [rows, dst_stride]
    pub dst: &'a wgpu::Buffer,
    /// Each token's sequence and position.
    pub rows: &'a Arc<RowTable>,
}

/// The rotate-and-copy kernel bound to one layout and its buffers.
pub struct Rope {
    layout: RopeLayout,
    dispatch: Dispatch<RopeParams>,
    rows: Arc<RowTable>,
}

impl Rope {
    /// Builds the pipeline for `layout` over the buffers `b`.
    pub fn new(ctx: &Context, layout: RopeLayout, b: RopeBuffers<'_>) -> Result<Self> {
        let l = &layout;
        if l.dim == 0
            || l.heads == 0
            || !l.rot_dim.is_multiple_of(2)
            || l.rot_start + l.rot_dim > l.dim
        {
            return Err(Error::input(format!(
                "rope: rotated columns {}..{} must be an even range inside a head of {} columns",
                l.rot_start,
                l.rot_start + l.rot_dim,
                l.dim
            )));
        }
        let params = RopeParams {
            tokens: 0,
            heads: l.heads as u32,
            dim: l.dim as u32,
            rot_start: l.rot_start as u32,
            rot_dim: l.rot_dim as u32,
            src_stride: l.src_stride as u32,
            src_head_stride: l.src_head_stride as u32,
            src_offset: l.src_offset as u32,
            dst_stride: l.dst_stride as u32,
            dst_head_stride: l.dst_head_stride as u32,
            dst_offset: l.dst_offset as u32,
            at_position: u32::from(l.dst_at_position),
            _pad: [0; 3],
        };
        let key = PipelineKey::new(&ROPE).flag(INTERLEAVE, l.interleave);
        let buffers = [b.src, b.table, b.dst, b.rows.buffer()];
        let dispatch = Dispatch::new(ctx, &key, params, &buffers)?;
        Ok(Self {
            layout,
            dispatch,
            rows: b.rows.clone(),
        })
    }

    /// Rotates and copies `tokens` consecutive tokens at positions pos0.. of a sequence whose
    /// cache starts at row 0.
    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        pos0: usize,
    ) -> Result<()> {
        self.rows
            .set(ctx, &RowPlace::consecutive(0, pos0, tokens))?;
        self.encode_rows(ctx, pass, tokens);
        Ok(())
    }

    /// Rotates and copies the first `tokens` rows of its row table, which the caller has set.
    pub fn encode_rows(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        self.dispatch.set_params(
            ctx,
            RopeParams {
                tokens: tokens as u32,
                ..self.dispatch.params()
            },
        );
        let cols = self.layout.heads * self.layout.dim;
        self.dispatch
            .dispatch(pass, groups(cols, WORKGROUP), tokens as u32);
    }
}
