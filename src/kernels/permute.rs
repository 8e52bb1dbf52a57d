//! `shaders/{scan,scatter}.wgsl`: token-to-expert permutation into CSR segments, plus the tile
//! list and indirect dispatch sizes of the grouped GEMMs. The per-expert counts they start
//! from are the select kernel's (`shaders/select.wgsl` with `COUNT`). The scan's body is
//! `shaders/permute_common.wgsl`, which the selection of a step of at most 64 tokens runs
//! itself (see [`crate::kernels::select::Select::encode`]); this module serves larger steps
//! and the expert cache's rounds.

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{Binding, Context, KernelDef, PipelineKey};
use crate::kernels::{Dispatch, WORKGROUP, groups};

/// The permutation's body, first in the scan's and the selection's source.
pub(crate) const PERMUTE_COMMON: &str = include_str!("../../shaders/permute_common.wgsl");

/// The exclusive scan of the counts, the tile lists and the indirect dispatch sizes
/// (`shaders/scan.wgsl`).
pub static SCAN: KernelDef = KernelDef {
    name: "scan",
    parts: &[PERMUTE_COMMON, include_str!("../../shaders/scan.wgsl")],
    bindings: &[
        Binding::uniform("p"),          // ScanParams
        Binding::read_write("counts"),  // [experts], zeroed by the scan
        Binding::read_write("offsets"), // [experts + 1]
        Binding::read_write("cursor"),  // [experts]
        Binding::read_write("tiles"),   // [max tiles]
        Binding::read_write("args"),    // [12] four indirect dispatches
        Binding::read("ids"),           // [pairs] expert of each pair
        Binding::read_write("rows"),    // [pairs] position -> pair
        Binding::read_write("pos"),     // [pairs] pair -> position
    ],
    overrides: &[],
};

/// The scatter of (token, slot) pairs into expert-sorted order (`shaders/scatter.wgsl`).
pub static SCATTER: KernelDef = KernelDef {
    name: "scatter",
    parts: &[include_str!("../../shaders/scatter.wgsl")],
    bindings: &[
        Binding::uniform("p"),         // PairParams
        Binding::read("ids"),          // [pairs]
        Binding::read_write("cursor"), // [experts]
        Binding::read_write("rows"),   // [pairs] position -> pair
        Binding::read_write("pos"),    // [pairs] pair -> position
    ],
    overrides: &[],
};

/// Mirrors `Params` in `shaders/scatter.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct PairParams {
    pub pairs: u32,
    pub experts: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Mirrors `Params` in `shaders/scan.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct ScanParams {
    pub experts: u32,
    pub block_m: u32,
    pub col_blocks_a: u32,
    pub col_blocks_b: u32,
    /// Pairs the scan's workgroup scatters itself; 0 when the scatter kernel follows.
    pub pairs: u32,
    pub tail_m: u32,
    pub _pad: [u32; 2],
}

/// Byte offsets of the four indirect dispatches the scan writes: the two GEMMs over the full
/// tile list, then over the tail list.
pub const ARGS_A: u64 = 0;
/// Byte offset of the down GEMM's dispatch over the full tiles.
pub const ARGS_B: u64 = 12;
/// Byte offset of the gate/up GEMM's dispatch over the tail tiles.
pub const ARGS_A_TAIL: u64 = 24;
/// Byte offset of the down GEMM's dispatch over the tail tiles.
pub const ARGS_B_TAIL: u64 = 36;
/// u32 words of the indirect-argument buffer.
pub const ARGS_WORDS: usize = 12;

/// The grouped GEMMs that a permutation feeds: their tile height, the most rows of an expert's
/// last tile that go to the tail list (0: no tail list), and their column blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PermuteShape {
    /// Rows per tile of the GEMMs.
    pub block_m: u32,
    /// Most rows of an expert's last tile that go to the tail list (0: no tail list).
    pub tail_m: u32,
    /// Column blocks of the gate/up and of the down GEMM.
    pub col_blocks: (u32, u32),
}

/// The (token, slot) pairs of `ids` (`[pairs]` expert ids, `INVALID` for dropped slots) sorted
/// by expert, each expert's in pair order, and the rows of each of `experts` experts: one
/// permutation the scan and scatter may build (theirs orders pairs within an expert freely).
pub fn expert_sorted_rows(ids: &[u32], experts: usize) -> (Vec<u32>, Vec<u32>) {
    let mut rows = Vec::with_capacity(ids.len());
    let mut counts = Vec::with_capacity(experts);
    for e in 0..experts as u32 {
        let start = rows.len();
        rows.extend((0..ids.len() as u32).filter(|&p| ids[p as usize] == e));
        counts.push((rows.len() - start) as u32);
    }
    (rows, counts)
}

/// The tile lists the permutation builds, in order, for experts whose segments of `counts[e]`
/// rows follow one another: (expert, row0, row_end, 0) per `block_m` rows, an expert's last
/// tile in `tail` when it holds at most `tail_m` rows (as `shaders/permute_common.wgsl` does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TileLists {
    /// Tiles of `block_m` rows, and an expert's last tile when it holds more than `tail_m` rows.
    pub full: Vec<[u32; 4]>,
    /// An expert's last tile when it holds at most `tail_m` rows.
    pub tail: Vec<[u32; 4]>,
}

impl TileLists {
    /// The tile lists of experts holding `counts[e]` rows each, in expert order.
    pub fn new(counts: &[u32], block_m: u32, tail_m: u32) -> Self {
        let mut lists = Self::default();
        let mut row = 0;
        for (e, &c) in counts.iter().enumerate() {
            for r0 in (0..c).step_by(block_m.max(1) as usize) {
                let tile = [e as u32, row + r0, row + c, 0];
                if c - r0 <= tail_m {
                    lists.tail.push(tile);
                } else {
                    lists.full.push(tile);
                }
            }
            row += c;
        }
        lists
    }

    /// A tile buffer's contents as the GEMMs read them: the full list from the start, the tail
    /// list backwards from the end.
    pub fn buffer_words(&self) -> Vec<u32> {
        let tail = self.tail.iter().rev();
        self.full.iter().chain(tail).flatten().copied().collect()
    }
}

/// Steps of at most this many (token, slot) pairs are scattered by the scan's one workgroup
/// (four pairs per thread at most), saving the scatter dispatch; larger ones get the scatter
/// kernel's many workgroups.
pub const SCAN_SCATTER_MAX_PAIRS: usize = 1024;

/// Most tiles a launch can produce (full and tail lists together): every pair in its own
/// partial tile is bounded by pairs / block_m + experts.
pub fn max_tiles(pairs: usize, block_m: u32, experts: usize) -> usize {
    pairs.div_ceil(block_m as usize) + experts
}

/// The permutation's working buffers, all sized for `max_pairs` pairs.
#[derive(Clone, Copy)]
pub struct PermuteBuffers<'a> {
    /// `[pairs]` u32 expert of each (token, slot) pair.
    pub ids: &'a wgpu::Buffer,
    /// `[experts]` u32 pairs per expert (the selection's counts; zeroed by the scan).
    pub counts: &'a wgpu::Buffer,
    /// `[experts + 1]` u32 first sorted row of each expert.
    pub offsets: &'a wgpu::Buffer,
    /// `[experts]` u32 scatter cursors.
    pub cursor: &'a wgpu::Buffer,
    /// `[max tiles, 4]` u32 tile lists (expert, row0, row_end, 0).
    pub tiles: &'a wgpu::Buffer,
    /// `[12]` u32: four indirect dispatch sizes (see [`ARGS_A`]).
    pub args: &'a wgpu::Buffer,
    /// `[pairs]` u32 pair of each sorted row.
    pub rows: &'a wgpu::Buffer,
    /// `[pairs]` u32 sorted row of each pair.
    pub pos: &'a wgpu::Buffer,
}

/// scan (+ scatter) for one layer, after the select kernel counted the pairs. The scan leaves
/// the counts zeroed, so consecutive steps need no clear between them.
pub struct Permute {
    experts: usize,
    scan: Dispatch<ScanParams>,
    scatter: Dispatch<PairParams>,
}

impl Permute {
    /// Builds the scan and scatter pipelines for `experts` experts over the buffers `b`.
    pub fn new(ctx: &Context, experts: usize, b: PermuteBuffers<'_>) -> Result<Self> {
        let scan = Dispatch::new(
            ctx,
            &PipelineKey::new(&SCAN),
            ScanParams {
                experts: experts as u32,
                block_m: 1,
                col_blocks_a: 0,
                col_blocks_b: 0,
                pairs: 0,
                tail_m: 0,
                _pad: [0; 2],
            },
            &[
                b.counts, b.offsets, b.cursor, b.tiles, b.args, b.ids, b.rows, b.pos,
            ],
        )?;
        let scatter = Dispatch::new(
            ctx,
            &PipelineKey::new(&SCATTER),
            PairParams {
                pairs: 0,
                experts: experts as u32,
                _pad0: 0,
                _pad1: 0,
            },
            &[b.ids, b.cursor, b.rows, b.pos],
        )?;
        Ok(Self {
            experts,
            scan,
            scatter,
        })
    }

    /// Records the segments of `pairs` counted (token, slot) pairs and the tile lists of GEMMs
    /// of `shape`. One dispatch up to [`SCAN_SCATTER_MAX_PAIRS`] pairs, two above.
    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        pairs: usize,
        shape: PermuteShape,
    ) {
        let fused = pairs <= SCAN_SCATTER_MAX_PAIRS;
        self.scan.set_params(
            ctx,
            ScanParams {
                experts: self.experts as u32,
                block_m: shape.block_m,
                col_blocks_a: shape.col_blocks.0,
                col_blocks_b: shape.col_blocks.1,
                pairs: if fused { pairs as u32 } else { 0 },
                tail_m: shape.tail_m,
                _pad: [0; 2],
            },
        );
        self.scan.dispatch(pass, 1, 1);
        if !fused {
            self.scatter.set_params(
                ctx,
                PairParams {
                    pairs: pairs as u32,
                    ..self.scatter.params()
                },
            );
            self.scatter.dispatch(pass, groups(pairs, WORKGROUP), 1);
        }
    }
}
