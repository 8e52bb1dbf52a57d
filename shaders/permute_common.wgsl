// Shared part of scan.wgsl and select.wgsl, prefixed to each; each declares the buffers used
// here with its own binding numbers. One workgroup of PERMUTE_THREADS threads turns the
// per-expert counts into CSR segments and the grouped GEMMs' tile list:
//   offsets[e] = Σ_{e' < e} counts[e'], offsets[experts] = total rows;
//   cursor[e]  = offsets[e] (the scatter's write heads);
//   tiles      = for each expert, one (expert, row0, row_end) per block_m rows: empty experts
//                get none, so they cost nothing;
//   args       = indirect dispatch sizes (tiles, col_blocks_a, 1) and (tiles, col_blocks_b, 1);
//   counts     = zeroed once read, ready for the next step's counting (no host clear);
// then scatters `pairs` (token, slot) pairs as scatter.wgsl does (none with pairs = 0):
//   rows[position] = pair, pos[pair] = position (INVALID for a dropped slot).
// Buffers: counts [experts] atomic, offsets [experts + 1], cursor [experts] atomic,
// tiles [max tiles] vec4, args [6], ids [pairs], rows [pairs], pos [pairs].

const PERMUTE_THREADS: u32 = 64u;

var<workgroup> row_sums: array<u32, PERMUTE_THREADS>;
var<workgroup> tile_sums: array<u32, PERMUTE_THREADS>;

fn permute(
    lid: u32,
    experts: u32,
    block_m: u32,
    col_blocks_a: u32,
    col_blocks_b: u32,
    pairs: u32,
) {
    // Each thread owns a contiguous run of experts.
    let per = (experts + PERMUTE_THREADS - 1u) / PERMUTE_THREADS;
    let first = min(lid * per, experts);
    let last = min(first + per, experts);
    var nrows = 0u;
    var ntiles = 0u;
    for (var e = first; e < last; e++) {
        let c = atomicLoad(&counts[e]);
        nrows += c;
        ntiles += (c + block_m - 1u) / block_m;
    }
    row_sums[lid] = nrows;
    tile_sums[lid] = ntiles;
    workgroupBarrier();
    // Inclusive Hillis-Steele scan over the threads.
    for (var step = 1u; step < PERMUTE_THREADS; step *= 2u) {
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
        let c = atomicLoad(&counts[e]);
        atomicStore(&counts[e], 0u);
        offsets[e] = row;
        atomicStore(&cursor[e], row);
        for (var r0 = 0u; r0 < c; r0 += block_m) {
            tiles[tile] = vec4<u32>(e, row + r0, row + c, 0u);
            tile += 1u;
        }
        row += c;
    }
    if (lid == PERMUTE_THREADS - 1u) {
        offsets[experts] = row_sums[lid];
        let total_tiles = tile_sums[lid];
        args[0] = total_tiles;
        args[1] = col_blocks_a;
        args[2] = 1u;
        args[3] = total_tiles;
        args[4] = col_blocks_b;
        args[5] = 1u;
    }

    // Every thread's cursors are written before any pair claims a position.
    storageBarrier();
    for (var i = lid; i < pairs; i += PERMUTE_THREADS) {
        let e = ids[i];
        if (e >= experts) {
            pos[i] = INVALID;
            continue;
        }
        let at = atomicAdd(&cursor[e], 1u);
        rows[at] = i;
        pos[i] = at;
    }
}
