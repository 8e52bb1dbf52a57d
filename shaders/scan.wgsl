// The permutation of a step on its own (after permute_common.wgsl): one workgroup builds the
// expert segments, tile list and indirect dispatch sizes from the counts, and with pairs > 0
// scatters those pairs too (a step of few pairs saves a dispatch); with pairs = 0
// scatter.wgsl follows. A step of at most 64 tokens runs all of this inside its selection
// (select.wgsl) instead.

struct Params {
    experts: u32,
    block_m: u32,       // rows per GEMM tile
    col_blocks_a: u32,  // column blocks of the first grouped GEMM
    col_blocks_b: u32,  // column blocks of the second grouped GEMM
    pairs: u32,         // (token, slot) pairs to scatter here, 0 to leave them to scatter.wgsl
    tail_m: u32,        // an expert's last tile of at most this many rows is a tail tile
    _pad0: u32,
    _pad1: u32,
}

const INVALID: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> counts: array<atomic<u32>>; // [experts]
@group(0) @binding(2) var<storage, read_write> offsets: array<u32>;   // [experts + 1]
@group(0) @binding(3) var<storage, read_write> cursor: array<atomic<u32>>; // [experts]
@group(0) @binding(4) var<storage, read_write> tiles: array<vec4<u32>>; // [max tiles]
@group(0) @binding(5) var<storage, read_write> args: array<u32>;      // [12] four indirect dispatches
@group(0) @binding(6) var<storage, read> ids: array<u32>;             // [pairs] expert of each pair
@group(0) @binding(7) var<storage, read_write> rows: array<u32>;      // [pairs] position -> pair
@group(0) @binding(8) var<storage, read_write> pos: array<u32>;       // [pairs] pair -> position

@compute @workgroup_size(64)
fn main(@builtin(local_invocation_index) lid: u32) {
    permute(lid, p.experts, p.block_m, p.tail_m, p.col_blocks_a, p.col_blocks_b, p.pairs);
}
