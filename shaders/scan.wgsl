// One workgroup turns the per-expert counts into CSR segments and the grouped GEMMs' tile list:
//   offsets[e] = Σ_{e' < e} counts[e'], offsets[experts] = total rows;
//   cursor[e]  = offsets[e] (the scatter's write heads);
//   tiles      = for each expert, one (expert, row0, row_end) per block_m rows: empty experts
//                get none, so they cost nothing;
//   args       = indirect dispatch sizes (tiles, col_blocks_a, 1) and (tiles, col_blocks_b, 1);
//   counts     = zeroed once read, ready for the next step's counting (no host clear).
// With pairs > 0 the same workgroup then scatters those pairs as scatter.wgsl does (a step of
// few pairs, such as a decode step, saves a dispatch); with pairs = 0 scatter.wgsl follows.

struct Params {
    experts: u32,
    block_m: u32,       // rows per GEMM tile
    col_blocks_a: u32,  // column blocks of the first grouped GEMM
    col_blocks_b: u32,  // column blocks of the second grouped GEMM
    pairs: u32,         // (token, slot) pairs to scatter here, 0 to leave them to scatter.wgsl
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

const THREADS: u32 = 256u;
const INVALID: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read_write> counts: array<u32>;    // [experts]
@group(0) @binding(2) var<storage, read_write> offsets: array<u32>;   // [experts + 1]
@group(0) @binding(3) var<storage, read_write> cursor: array<atomic<u32>>; // [experts]
@group(0) @binding(4) var<storage, read_write> tiles: array<vec4<u32>>; // [max tiles]
@group(0) @binding(5) var<storage, read_write> args: array<u32>;      // [6] two indirect dispatches
@group(0) @binding(6) var<storage, read> ids: array<u32>;             // [pairs] expert of each pair
@group(0) @binding(7) var<storage, read_write> rows: array<u32>;      // [pairs] position -> pair
@group(0) @binding(8) var<storage, read_write> pos: array<u32>;       // [pairs] pair -> position

var<workgroup> row_sums: array<u32, THREADS>;
var<workgroup> tile_sums: array<u32, THREADS>;

@compute @workgroup_size(256)
fn main(@builtin(local_invocation_index) lid: u32) {
    // Each thread owns a contiguous run of experts.
    let per = (p.experts + THREADS - 1u) / THREADS;
    let first = min(lid * per, p.experts);
    let last = min(first + per, p.experts);
    var nrows = 0u;
    var ntiles = 0u;
    for (var e = first; e < last; e++) {
        nrows += counts[e];
        ntiles += (counts[e] + p.block_m - 1u) / p.block_m;
    }
    row_sums[lid] = nrows;
    tile_sums[lid] = ntiles;
    workgroupBarrier();
    // Inclusive Hillis-Steele scan over the threads.
    for (var step = 1u; step < THREADS; step *= 2u) {
        var r = 0u;
        var t = 0u;
        if (lid >= step) {
            r = row_sums[lid - step];
            t = tile_sums[lid - step];
        }
        workgroupBarrier();
        row_sums[lid] += r;
        tile_sums[lid] += t;
        workgroupBarrier();
    }
    var row = row_sums[lid] - nrows;
    var tile = tile_sums[lid] - ntiles;
    for (var e = first; e < last; e++) {
        let c = counts[e];
        counts[e] = 0u;
        offsets[e] = row;
        atomicStore(&cursor[e], row);
        for (var r0 = 0u; r0 < c; r0 += p.block_m) {
            tiles[tile] = vec4<u32>(e, row + r0, row + c, 0u);
            tile += 1u;
        }
        row += c;
    }
    if (lid == THREADS - 1u) {
        offsets[p.experts] = row_sums[lid];
        let total_tiles = tile_sums[lid];
        args[0] = total_tiles;
        args[1] = p.col_blocks_a;
        args[2] = 1u;
        args[3] = total_tiles;
        args[4] = p.col_blocks_b;
        args[5] = 1u;
    }

    // Every thread's cursors are written before any pair claims a position.
    storageBarrier();
    for (var i = lid; i < p.pairs; i += THREADS) {
        let e = ids[i];
        if (e >= p.experts) {
            pos[i] = INVALID;
            continue;
        }
        let at = atomicAdd(&cursor[e], 1u);
        rows[at] = i;
        pos[i] = at;
    }
}
