//! The grouped expert GEMM as the permutation's tile lists feed it: the full tiles, and the
//! tail tiles in a pipeline compiled for fewer rows.

use crate::error::Result;
use crate::gpu::Context;
use crate::kernels::matmul::{Matmul, MatmulBuffers, MatmulSpec};

/// A grouped GEMM as the permutation's tile lists feed it: one pipeline over the full tiles,
/// and, where the tiling has a tail ([`Tiling::tail`]), one compiled for fewer rows over the
/// tail tiles.
pub struct GroupedMatmul {
    /// The GEMM over the full tile list.
    pub full: Matmul,
    /// The GEMM over the tail tile list, where the tiling has a tail.
    pub tail: Option<Matmul>,
}

impl GroupedMatmul {
    /// As [`Matmul::new`] for a grouped `spec`.
    pub fn new(
        ctx: &Context,
        spec: MatmulSpec,
        x_stride: usize,
        out_stride: usize,
        top_k: usize,
        buffers: MatmulBuffers<'_>,
    ) -> Result<Self> {
        let tail = spec
            .tail_spec()
            .map(|t| Matmul::new(ctx, t, x_stride, out_stride, top_k, buffers))
            .transpose()?;
        Ok(Self {
            full: Matmul::new(ctx, spec, x_stride, out_stride, top_k, buffers)?,
            tail,
        })
    }

    /// The most rows of an expert's last tile that go to the tail list; 0 without one.
    pub fn tail_m(&self) -> u32 {
        self.tail.as_ref().map_or(0, |t| t.spec.tiling.block_m())
    }

    /// Both lists, their sizes read from `args` at the byte offsets `(full, tail)`.
    pub fn encode_indirect(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        args: &wgpu::Buffer,
        offsets: (u64, u64),
    ) {
        self.full.encode_indirect(pass, args, offsets.0);
        if let Some(tail) = &self.tail {
            tail.encode_indirect(pass, args, offsets.1);
        }
    }

    /// Both lists with host-written sizes (see [`crate::kernels::permute::TileLists`]).
    pub fn encode_tiles(&self, pass: &mut wgpu::ComputePass<'_>, tiles: (u32, u32)) {
        self.full.encode_tiles(pass, tiles.0);
        if let Some(tail) = &self.tail {
            tail.encode_tiles(pass, tiles.1);
        }
    }
}
