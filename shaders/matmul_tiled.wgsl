// Shared-memory tiled matmul (shared part in matmul_common.wgsl): a workgroup of WG_M × WG_N
// threads computes a (WG_M·TM) × (WG_N·TN) output block. Per BK-wide slice of k it stages the
// block's x rows and weight rows in workgroup memory, each value loaded once from storage, and
// every thread then reads them TN or TM times from there. Fastest on real GPUs; on CPU adapters
// the barriers cost more than the reuse saves.

const BK: u32 = 16u;

override BLOCK_M: u32 = WG_M * TM;
override BLOCK_N: u32 = WG_N * TN;
override XS_LEN: u32 = BK * WG_M * TM;
override WS_LEN: u32 = 2u * BK * WG_N * TN;

var<workgroup> xs: array<f32, XS_LEN>;  // [BK, BLOCK_M] x slice, k-major
var<workgroup> ws: array<f32, WS_LEN>;  // [2 (gate, up), BK, BLOCK_N] weight slice, k-major

@compute @workgroup_size(WG_M * WG_N)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let threads = WG_M * WG_N;
    let tile = tile_of(wg.x);
    let col_block = wg.y * BLOCK_N;
    // Uniform per workgroup, so every thread reaches the barriers below or none does.
    if (tile.row0 >= tile.row_end || col_block >= p.n || tile.slot == INVALID) {
        return;
    }
    let slot_base = tile.slot * p.w_slot_vecs;
    let tx = lid % WG_N;
    let ty = lid / WG_N;
    // Values staged per weight load: a whole word, or half a 32-value word (> BK).
    let unit = min(PER_WORD, BK);
    let units = BK / unit;
    let planes = select(1u, 2u, GLU != 0u);

    var acc: array<f32, 64>;
    var acc_up: array<f32, 64>;
    for (var i = 0u; i < TM * TN; i++) {
        acc[i] = 0.0;
        acc_up[i] = 0.0;
    }

    for (var k0 = 0u; k0 < p.k; k0 += BK) {
        // Stage x: BLOCK_M rows × BK columns, zero past the tile's rows and past k.
        for (var idx = lid; idx < BLOCK_M * BK; idx += threads) {
            let rr = idx / BK;
            let kk = idx % BK;
            let r = tile.row0 + rr;
            var v = 0.0;
            if (r < tile.row_end && k0 + kk < p.k) {
                v = x_at(x_row(r) + k0 + kk);
            }
            xs[kk * BLOCK_M + rr] = v;
        }
        // Stage weights: BLOCK_N rows (and their up rows) × BK columns, `unit` values a load.
        for (var idx = lid; idx < planes * BLOCK_N * units; idx += threads) {
            let plane = idx / (BLOCK_N * units);
            let in_plane = idx % (BLOCK_N * units);
            let cc = in_plane / units;
            let kk0 = (in_plane % units) * unit;
            let c = col_block + cc;
            let word = (k0 + kk0) / PER_WORD;
            var wv = vec4<u32>(0u);
            var side = Meta(1.0, 0.0, vec2<u32>(0u));
            if (c < p.n && word < p.w_row_vecs) {
                let row = c + plane * p.n;
                wv = w[slot_base + row * p.w_row_vecs + word];
                if (group_scaled()) {
                    side = load_meta(slot_base, row, word);
                }
            }
            let sub0 = ((k0 + kk0) % PER_WORD) / 4u;
            let base = plane * BK * BLOCK_N + kk0 * BLOCK_N + cc;
            for (var s = 0u; s < unit / 4u; s++) {
                let v = weights(wv, side, sub0 + s);
                for (var e = 0u; e < 4u; e++) {
                    ws[base + (4u * s + e) * BLOCK_N] = v[e];
                }
            }
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, 8>;
            for (var i = 0u; i < TM; i++) {
                a[i] = xs[kk * BLOCK_M + ty * TM + i];
            }
            for (var j = 0u; j < TN; j++) {
                let b = ws[kk * BLOCK_N + tx * TN + j];
                for (var i = 0u; i < TM; i++) {
                    acc[i * TN + j] = fma(a[i], b, acc[i * TN + j]);
                }
                if (GLU != 0u) {
                    let u = ws[BK * BLOCK_N + kk * BLOCK_N + tx * TN + j];
                    for (var i = 0u; i < TM; i++) {
                        acc_up[i * TN + j] = fma(a[i], u, acc_up[i * TN + j]);
                    }
                }
            }
        }
        workgroupBarrier();
    }

    for (var i = 0u; i < TM; i++) {
        let r = tile.row0 + ty * TM + i;
        if (r >= tile.row_end) {
            break;
        }
        for (var j = 0u; j < TN; j++) {
            let c = col_block + tx * TN + j;
            if (c >= p.n) {
                break;
            }
            store(r, c, tile.slot, acc[i * TN + j], acc_up[i * TN + j]);
        }
    }
}
