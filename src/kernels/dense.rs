//! A dense matmul (`shaders/matmul*.wgsl` with one weight matrix) built in two tilings that
//! compute the same bits: register tiles for many rows, the decode matvec for a few. The
//! matvec reads every weight once per row, the tiles once per TM rows, so the matvec wins only
//! at the handful of rows of a decode step, where the tiles leave most threads idle.

use crate::error::Result;
use crate::gpu::Context;
use crate::kernels::matmul::{Matmul, MatmulBuffers, MatmulSpec, Tiling};

/// Rows up to which [`DenseMatmul`] runs its matvec.
pub const MATVEC_MAX_ROWS: usize = 2;

/// A dense matmul bound to its buffers: a matvec for a few rows, the tiled kernel for more.
pub struct DenseMatmul {
    tiles: Matmul,
    matvec: Matmul,
}

impl DenseMatmul {
    /// `spec.tiling` serves more than [`MATVEC_MAX_ROWS`] rows, `matvec` (a decode tiling,
    /// normally [`Tiling::vector`]) up to that; strides as in [`Matmul::new`].
    pub fn new(
        ctx: &Context,
        spec: MatmulSpec,
        matvec: Tiling,
        x_stride: usize,
        out_stride: usize,
        b: MatmulBuffers<'_>,
    ) -> Result<Self> {
        let vec_spec = MatmulSpec {
            tiling: matvec,
            ..spec
        };
        Ok(Self {
            tiles: Matmul::new(ctx, spec, x_stride, out_stride, 1, b)?,
            matvec: Matmul::new(ctx, vec_spec, x_stride, out_stride, 1, b)?,
        })
    }

    /// Records rows 0..m.
    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, m: usize) {
        let which = if m <= MATVEC_MAX_ROWS {
            &self.matvec
        } else {
            &self.tiles
        };
        which.encode(ctx, pass, m);
    }
}
