// Shared part of scan.wgsl and select.wgsl, prefixed to each; each declares the buffers used
// here with its own binding numbers. One workgroup of PERMUTE_THREADS threads turns the
// per-expert counts into CSR segments and the grouped GEMMs' tile lists:
//   offsets[e] = Σ_{e' < e} counts[e'], offsets[experts] = total rows;
//   cursor[e]  = offsets[e] (the scatter's write heads);
//   tiles      = for each expert, one (expert, row0, row_end) per block_m rows: empty experts
//                get none, so they cost nothing. An expert's last tile when it holds at most
//                tail_m rows (0: never) is a tail tile: tail tiles are listed backwards from
//                the end of the buffer (tiles[len - 1 - j]) for GEMMs compiled for fewer rows,
//                the others forwards from the start;
//   args       = indirect dispatch sizes (full tiles, col_blocks_a, 1), (full tiles,
//                col_blocks_b, 1), then the same two for the tail tiles;
//   counts     = zeroed once read, ready for the next step's counting (no host clear);
// then scatters `pairs` (token, slot) pairs as scatter.wgsl does (none with pairs = 0):
//   rows[position] = pair, pos[pair] = position (INVALID for a dropped slot).
// Buffers: counts [experts] atomic, offsets [experts + 1], cursor [experts] atomic,
// tiles [max tiles] vec4, args [12], ids [pairs], rows [pairs], pos [pairs].

const PERMUTE_THREADS: u32 = 64u;

var<workgroup> row_sums: array<u32, PERMUTE_THREADS>;
var<workgroup> tile_sums: array<u32, PERMUTE_THREADS>;
var<workgroup> tail_sums: array<u32, PERMUTE_THREADS>;

// Whether an expert's tile holding `rows` rows goes to the tail list.
fn is_tail(rows: u32, tail_m: u32) -> bool {
    return rows <= tail_m;
}

fn permute(
    lid: u32,
    experts: u32,
    block_m: u32,
    tail_m: u32,
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
    var ntails = 0u;
    for (var e = first; e < last; e++) {
        let c = atomicLoad(&counts[e]);
        nrows += c;
        let tiles_e = (c + block_m - 1u) / block_m;
        let tail = select(0u, 1u, c > 0u && is_tail(c - (tiles_e - 1u) * block_m, tail_m));
        ntiles += tiles_e - tail;
        ntails += tail;
    }
    row_sums[lid] = nrows;
    tile_sums[lid] = ntiles;
    tail_sums[lid] = ntails;
    workgroupBarrier();
    // Inclusive Hillis-Steele scan over the threads.
    for (var step = 1u; step < PERMUTE_THREADS; step *= 2u) {
        var r = 0u;
        var t = 0u;
        var l = 0u;
        if (lid >= step) {
            r = row_sums[lid - step];
            t = tile_sums[lid - step];
            l = tail_sums[lid - step];
        }
        workgroupBarrier();
        row_sums[lid] += r;
        tile_sums[lid] += t;
        tail_sums[lid] += l;
        workgroupBarrier();
    }
    var row = row_sums[lid] - nrows;
    var tile = tile_sums[lid] - ntiles;
    var tail = tail_sums[lid] - ntails;
    let last_tile = arrayLength(&tiles) - 1u;
    for (var e = first; e < last; e++) {
        let c = atomicLoad(&counts[e]);
        atomicStore(&counts[e], 0u);
        offsets[e] = row;
        atomicStore(&cursor[e], row);
        for (var r0 = 0u; r0 < c; r0 += block_m) {
            let t = vec4<u32>(e, row + r0, row + c, 0u);
            if (is_tail(c - r0, tail_m)) {
                tiles[last_tile - tail] = t;
                tail += 1u;
            } else {
                tiles[tile] = t;
                tile += 1u;
            }
        }
        row += c;
    }
    if (lid == PERMUTE_THREADS - 1u) {
        offsets[experts] = row_sums[lid];
        let lists = vec2<u32>(tile_sums[lid], tail_sums[lid]);
        for (var l = 0u; l < 2u; l++) {
            args[6u * l] = lists[l];
            args[6u * l + 1u] = col_blocks_a;
            args[6u * l + 2u] = 1u;
            args[6u * l + 3u] = lists[l];
            args[6u * l + 4u] = col_blocks_b;
            args[6u * l + 5u] = 1u;
        }
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
