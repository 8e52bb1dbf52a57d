//! `shaders/{count,scan,scatter}.wgsl`: token-to-expert permutation into CSR segments, plus the
//! tile list and indirect dispatch sizes of the grouped GEMMs.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{Context, Kernel, PipelineKey};
use crate::kernels::{Dispatch, WORKGROUP, groups};

/// Mirrors `Params` in `shaders/count.wgsl` and `shaders/scatter.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct PairParams {
    pub pairs: u32,
    pub experts: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Mirrors `Params` in `shaders/scan.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct ScanParams {
    pub experts: u32,
    pub block_m: u32,
    pub col_blocks_a: u32,
    pub col_blocks_b: u32,
}

/// Byte offsets of the two indirect dispatches the scan writes.
pub const ARGS_A: u64 = 0;
pub const ARGS_B: u64 = 12;
/// u32 words of the indirect-argument buffer.
pub const ARGS_WORDS: usize = 6;

/// Most tiles a launch can produce: every pair in its own partial tile is bounded by
/// pairs / block_m + experts.
pub fn max_tiles(pairs: usize, block_m: u32, experts: usize) -> usize {
    pairs.div_ceil(block_m as usize) + experts
}

/// The permutation's working buffers, all sized for `max_pairs` pairs.
pub struct PermuteBuffers<'a> {
    pub ids: &'a wgpu::Buffer,
    pub counts: &'a wgpu::Buffer,
    pub offsets: &'a wgpu::Buffer,
    pub cursor: &'a wgpu::Buffer,
    pub tiles: &'a wgpu::Buffer,
    pub args: &'a wgpu::Buffer,
    pub rows: &'a wgpu::Buffer,
    pub pos: &'a wgpu::Buffer,
}

/// count → scan → scatter for one layer. The scan leaves the counts zeroed, so consecutive
/// steps need no clear between them.
pub struct Permute {
    experts: usize,
    count: Dispatch<PairParams>,
    scan: Dispatch<ScanParams>,
    scatter: Dispatch<PairParams>,
}

impl Permute {
    pub fn new(ctx: &Context, experts: usize, b: PermuteBuffers<'_>) -> Result<Self> {
        let pair = PairParams {
            pairs: 0,
            experts: experts as u32,
            _pad0: 0,
            _pad1: 0,
        };
        let count = Dispatch::new(
            ctx,
            &PipelineKey::new(Kernel::Count),
            pair,
            &[b.ids, b.counts],
        )?;
        let scan = Dispatch::new(
            ctx,
            &PipelineKey::new(Kernel::Scan),
            ScanParams {
                experts: experts as u32,
                block_m: 1,
                col_blocks_a: 0,
                col_blocks_b: 0,
            },
            &[b.counts, b.offsets, b.cursor, b.tiles, b.args],
        )?;
        let scatter = Dispatch::new(
            ctx,
            &PipelineKey::new(Kernel::Scatter),
            pair,
            &[b.ids, b.cursor, b.rows, b.pos],
        )?;
        Ok(Self {
            experts,
            count,
            scan,
            scatter,
        })
    }

    /// Records count, scan and scatter together, for `pairs` (token, slot) pairs.
    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        pairs: usize,
        block_m: u32,
        col_blocks: (u32, u32),
    ) {
        self.encode_count(ctx, pass, pairs);
        self.encode_segments(ctx, pass, pairs, block_m, col_blocks);
    }

    /// Records the histogram of `pairs` (token, slot) pairs' expert ids into the counts. It
    /// runs with the routing, so that the counts can be read back before the GEMMs.
    pub fn encode_count(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, pairs: usize) {
        let pair = PairParams {
            pairs: pairs as u32,
            ..self.count.params()
        };
        self.count.set_params(ctx, pair);
        self.count.dispatch(pass, groups(pairs, WORKGROUP), 1);
    }

    /// Records scan and scatter after [`Self::encode_count`]: tiles hold `block_m` rows and
    /// the two GEMMs have `col_blocks` column blocks each.
    pub fn encode_segments(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        pairs: usize,
        block_m: u32,
        col_blocks: (u32, u32),
    ) {
        let pair = PairParams {
            pairs: pairs as u32,
            ..self.scatter.params()
        };
        self.scatter.set_params(ctx, pair);
        self.scan.set_params(
            ctx,
            ScanParams {
                experts: self.experts as u32,
                block_m,
                col_blocks_a: col_blocks.0,
                col_blocks_b: col_blocks.1,
            },
        );
        self.scan.dispatch(pass, 1, 1);
        self.scatter.dispatch(pass, groups(pairs, WORKGROUP), 1);
    }
}
