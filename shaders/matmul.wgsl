// y = act(x · Wᵀ + b), register-blocked. One kernel for every projection of the runtime:
//   dense   (GROUPED = false): rows r = 0..m of x, one weight matrix (slot 0);
//   grouped (GROUPED = true):  a tile list of expert-sorted row blocks, one expert per tile, the
//            expert's weights found through the slot table. Experts with no rows have no tiles.
// With GATHER the x row of sorted row r is token rows[r] / top_k, so x is never permuted.
// With GLU the slot holds 2n weight rows, gate rows 0..n then up rows n..2n, and the output is
// act(gate, up); otherwise it holds n rows and the output is x · Wᵀ (+ bias).
// Weights are [rows, k] row-major, each row padded with zeros to w_row_vecs vec4<u32> words:
// 4 f32 (bitcast) or 8 f16 (unpack2x16float) values per word. Accumulation is f32, in k order.

struct Params {
    m: u32,            // dense: rows of x and out
    n: u32,            // output columns
    k: u32,            // reduction length (x columns)
    w_row_vecs: u32,   // vec4<u32> words per padded weight row
    w_slot_vecs: u32,  // vec4<u32> words per expert slot
    bias_slot: u32,    // floats per slot in bias (n, or 2n with GLU)
    x_stride: u32,     // floats per row of x
    out_stride: u32,   // floats per row of out
    top_k: u32,        // GATHER: (token, slot) pairs per token
    act_limit: f32,    // GLU 2: swiglu clamp limit
    act_alpha: f32,    // GLU 2: sigmoid scale
    _pad: u32,
}

override GROUPED: bool = false;
override GATHER: bool = false;
override GLU: u32 = 0u;        // 0 none, 1 silu(g)·u, 2 gpt-oss clamped swiglu
override BIAS: bool = false;
override F16: bool = false;    // weights stored as packed f16 pairs
override WG_M: u32 = 1u;       // threads along rows; 64 / WG_M along columns
override TM: u32 = 4u;         // rows per thread (≤ 8)
override TN: u32 = 4u;         // columns per thread (≤ 8)

const INVALID: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<f32>;          // [m or tokens, x_stride]
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;    // [slots, rows, w_row_vecs]
@group(0) @binding(3) var<storage, read> bias: array<f32>;       // [slots, bias_slot]
@group(0) @binding(4) var<storage, read> slots: array<u32>;      // [experts] expert -> slot
@group(0) @binding(5) var<storage, read> tiles: array<vec4<u32>>; // [tiles] (expert, row0, row_end, _)
@group(0) @binding(6) var<storage, read> rows: array<u32>;       // [pairs] sorted row -> pair id
@group(0) @binding(7) var<storage, read_write> out: array<f32>;  // [rows, out_stride]

fn weight_chunk(word: vec4<u32>, half: u32) -> vec4<f32> {
    if (F16) {
        return vec4<f32>(unpack2x16float(word[2u * half]), unpack2x16float(word[2u * half + 1u]));
    }
    return bitcast<vec4<f32>>(word);
}

// Four x values from column c, zero past k.
fn x_chunk(base: u32, c: u32) -> vec4<f32> {
    if (c + 4u <= p.k) {
        return vec4<f32>(x[base + c], x[base + c + 1u], x[base + c + 2u], x[base + c + 3u]);
    }
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (c + i < p.k) {
            v[i] = x[base + c + i];
        }
    }
    return v;
}

fn activate(g: f32, u: f32) -> f32 {
    if (GLU == 2u) {
        let gc = min(g, p.act_limit);
        let uc = clamp(u, -p.act_limit, p.act_limit);
        return (uc + 1.0) * gc / (1.0 + exp(-p.act_alpha * gc));
    }
    return g / (1.0 + exp(-g)) * u;
}

@compute @workgroup_size(64)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let wg_n = 64u / WG_M;
    let block_m = WG_M * TM;
    let col0 = (wg.y * wg_n + lid % wg_n) * TN;
    let row_in_tile = (lid / wg_n) * TM;

    var row0: u32;
    var row_end: u32;
    var slot = 0u;
    if (GROUPED) {
        let t = tiles[wg.x];
        row0 = t.y + row_in_tile;
        row_end = min(t.z, t.y + block_m);
        slot = slots[t.x];
    } else {
        row0 = wg.x * block_m + row_in_tile;
        row_end = p.m;
    }
    if (row0 >= row_end || col0 >= p.n || slot == INVALID) {
        return;
    }

    // x row offsets of this thread's rows; rows past the tile repeat the first (results dropped).
    var xbase: array<u32, 8>;
    for (var i = 0u; i < TM; i++) {
        let r = select(row0, row0 + i, row0 + i < row_end);
        var xr = r;
        if (GATHER) {
            xr = rows[r] / p.top_k;
        }
        xbase[i] = xr * p.x_stride;
    }
    // weight row offsets (in vec4 words) of this thread's columns; columns past n repeat col0.
    var wbase: array<u32, 8>;
    var ubase: array<u32, 8>;
    let slot_base = slot * p.w_slot_vecs;
    for (var j = 0u; j < TN; j++) {
        let c = select(col0, col0 + j, col0 + j < p.n);
        wbase[j] = slot_base + c * p.w_row_vecs;
        ubase[j] = slot_base + (c + p.n) * p.w_row_vecs;
    }

    var acc: array<f32, 64>;
    var acc_up: array<f32, 64>;
    for (var i = 0u; i < TM * TN; i++) {
        acc[i] = 0.0;
        acc_up[i] = 0.0;
    }
    let per_word = select(4u, 8u, F16);
    for (var c = 0u; c < p.k; c += 4u) {
        let word = c / per_word;
        let half = (c % per_word) / 4u;
        var xv: array<vec4<f32>, 8>;
        for (var i = 0u; i < TM; i++) {
            xv[i] = x_chunk(xbase[i], c);
        }
        for (var j = 0u; j < TN; j++) {
            let wv = weight_chunk(w[wbase[j] + word], half);
            for (var i = 0u; i < TM; i++) {
                acc[i * TN + j] += dot(xv[i], wv);
            }
            if (GLU != 0u) {
                let uv = weight_chunk(w[ubase[j] + word], half);
                for (var i = 0u; i < TM; i++) {
                    acc_up[i * TN + j] += dot(xv[i], uv);
                }
            }
        }
    }

    let bias_base = slot * p.bias_slot;
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
            var v = acc[i * TN + j];
            if (BIAS) {
                v += bias[bias_base + c];
            }
            if (GLU != 0u) {
                var u = acc_up[i * TN + j];
                if (BIAS) {
                    u += bias[bias_base + p.n + c];
                }
                v = activate(v, u);
            }
            out[r * p.out_stride + c] = v;
        }
    }
}
