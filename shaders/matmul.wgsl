// Register-blocked matmul (shared part in matmul_common.wgsl): each thread keeps TM rows × TN
// columns of accumulators and streams x and W straight from storage, with no workgroup memory.
// Fastest on CPU adapters (lavapipe), where workgroup memory and barriers buy nothing; with
// TM = 1 it is the decode matvec that reads each weight once.

@compute @workgroup_size(WG_M * WG_N)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let col0 = (wg.y * WG_N + lid % WG_N) * TN;
    let tile = tile_of(wg.x);
    let row0 = tile.row0 + (lid / WG_N) * TM;
    let row_end = tile.row_end;
    let slot = tile.slot;
    if (row0 >= row_end || col0 >= p.n || slot == INVALID) {
        return;
    }

    // Rows past the tile and columns past n are never loaded: their x stays zero and their
    // weight offsets are unused, so a partly filled tile costs fewer loads (on CPU adapters the
    // loads, not the arithmetic, set the pace).
    let rows_here = min(TM, row_end - row0);
    let cols_here = min(TN, p.n - col0);
    var xbase: array<u32, 8>;
    for (var i = 0u; i < TM; i++) {
        if (i < rows_here) {
            xbase[i] = x_row(row0 + i);
        }
    }
    // weight row offsets (in vec4 words) of this thread's columns
    var wbase: array<u32, 16>;
    var ubase: array<u32, 16>;
    let slot_base = slot * p.w_slot_vecs;
    for (var j = 0u; j < TN; j++) {
        wbase[j] = slot_base + (col0 + j) * p.w_row_vecs;
        ubase[j] = slot_base + (col0 + j + p.n) * p.w_row_vecs;
    }

    var acc: array<f32, 64>;
    var acc_up: array<f32, 64>;
    for (var i = 0u; i < TM * TN; i++) {
        acc[i] = 0.0;
        acc_up[i] = 0.0;
    }
    // One weight word per column per step (4 f32 .. 32 4-bit values), loaded once with its side
    // data and used for the word's SUBS chunks of 4 values. Columns past n keep zero words.
    var wq: array<vec4<u32>, 16>;
    var uq: array<vec4<u32>, 16>;
    var wmeta: array<Meta, 16>;
    var umeta: array<Meta, 16>;
    for (var c0 = 0u; c0 < p.k; c0 += PER_WORD) {
        let word = c0 / PER_WORD;
        // A loop of the constant TN (unrolled), not of cols_here: llvmpipe ends an
        // invocation's loops after 65535 iterations in all, which a loop per word would reach
        // at k ≈ 10 000 in f32.
        for (var j = 0u; j < TN; j++) {
            if (j < cols_here) {
                wq[j] = w[wbase[j] + word];
                if (GLU != 0u) {
                    uq[j] = w[ubase[j] + word];
                }
                if (group_scaled()) {
                    wmeta[j] = load_meta(slot_base, col0 + j, word);
                    if (GLU != 0u) {
                        umeta[j] = load_meta(slot_base, col0 + j + p.n, word);
                    }
                }
            }
        }
        for (var sub = 0u; sub < SUBS; sub++) {
            let c = c0 + 4u * sub;
            if (c >= p.k) {
                break;
            }
            var xv: array<vec4<f32>, 8>;
            for (var i = 0u; i < TM; i++) {
                if (i < rows_here) {
                    xv[i] = x_chunk(xbase[i], c);
                }
            }
            for (var j = 0u; j < TN; j++) {
                let wv = weights(wq[j], wmeta[j], sub);
                for (var i = 0u; i < TM; i++) {
                    acc[i * TN + j] += dot(xv[i], wv);
                }
                if (GLU != 0u) {
                    let uv = weights(uq[j], umeta[j], sub);
                    for (var i = 0u; i < TM; i++) {
                        acc_up[i * TN + j] += dot(xv[i], uv);
                    }
                }
            }
        }
    }

    for (var i = 0u; i < TM; i++) {
        let r = row0 + i;
        if (r >= row_end) {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let c = col0 + j;
            if (c >= p.n) {
                break;
            }
            store(r, c, slot, acc[i * TN + j], acc_up[i * TN + j]);
        }
    }
}
