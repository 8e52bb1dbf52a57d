// Shared part of the two matmul kernels (matmul.wgsl: register-blocked, matmul_tiled.wgsl:
// shared-memory tiles); the host prefixes it to each. Both compute y = act(x · Wᵀ + b):
//   dense   (GROUPED = false): rows r = 0..m of x, one weight matrix (slot 0);
//   grouped (GROUPED = true):  a tile list of expert-sorted row blocks, one expert per tile, the
//            expert's weights found through the slot table. Experts with no rows have no tiles.
//            With TAIL the list is the tail tiles (experts' last tiles of few rows, for a
//            pipeline compiled with a smaller TM), stored backwards from the end of `tiles`.
// With GATHER the x row of sorted row r is token rows[r] / top_k, so x is never permuted.
// With GLU the slot holds 2n weight rows, gate rows 0..n then up rows n..2n, and the output is
// act(gate, up); otherwise it holds n rows and the output is x · Wᵀ (+ bias).
// Weights over the binding limit are split by output rows into parts (src/kernels/row_split.rs),
// one dispatch each: a part computes columns col0 .. col0 + n of n_total, and its slots hold
// only those columns' rows (with GLU, their gate rows then their up rows).
// Weights are [rows, k] row-major, each row padded with zeros to w_row_vecs vec4<u32> words of
// PER_WORD values: 4 f32 (bitcast), 8 f16 (unpack2x16float), 8 bf16 (shifted to the top of an
// f32, exact), 16 int8 or 32 int4 (two's complement lanes, lowest first) or 32 mxfp4 (e2m1
// nibbles, lowest first). Quantised slots end in a scale block (after the rows, at
// w_scale_vecs): int8 one f32 per row, applied to the row's sum; int4 one bf16 per word (a
// group of 32 values), [rows, ceil(w_row_vecs / 2)] u32 with even groups in the low half;
// mxfp4 one e8m0 byte per word, [rows, ceil(w_row_vecs / 4)] u32 with group 4j + b in byte b,
// the scale 2^(e - 127). Group scales are applied to the word's values. Layout and
// quantisation: src/kernels/weight_packing.rs and src/kernels/mxfp4.rs. Accumulation
// is f32 in k order, so an output element's value does not depend on where its row sits in a
// tile (batch invariance).

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
    w_scale_vecs: u32, // vec4<u32> words from a slot's start to its scale block (int8, int4)
    col0: u32,         // first output column of this weight part (out, bias and y columns)
    n_total: u32,      // output columns of all parts (row stride of y, up-bias offset)
    _pad0: u32,
    _pad1: u32,
}

override GROUPED: bool = false;
override TAIL: bool = false;   // GROUPED: read the tail tile list (see permute_common.wgsl)
override GATHER: bool = false;
override GLU: u32 = 0u;        // 0 none, 1 silu(g)·u, 2 gpt-oss clamped swiglu
override BIAS: bool = false;
override WFMT: u32 = 0u;       // weights: 0 f32, 1 f16 pairs, 2 int8, 3 int4, 4 bf16 pairs, 5 mxfp4
override X_VEC4: bool = false; // x_stride % 4 == 0: x rows are read as aligned vec4s
override WG_M: u32 = 1u;       // threads along rows
override WG_N: u32 = 64u;      // threads along columns
override TM: u32 = 4u;         // rows per thread (≤ 8)
override TN: u32 = 4u;         // columns per thread (≤ 16, TM · TN ≤ 64)
// weights per vec4<u32> word: 4 f32, 8 f16 or bf16, 16 int8, 32 int4 or mxfp4
override PER_WORD: u32 = select(select(4u << WFMT, 8u, WFMT == 4u), 32u, WFMT == 5u);
override SUBS: u32 = PER_WORD / 4u;  // chunks of 4 weights per word

const INVALID: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> x: array<vec4<f32>>;    // [m or tokens, x_stride] f32
@group(0) @binding(2) var<storage, read> w: array<vec4<u32>>;    // [slots, w_slot_vecs]: the part's rows, then scales
@group(0) @binding(3) var<storage, read> bias: array<f32>;       // [slots, bias_slot], all columns
@group(0) @binding(4) var<storage, read> slots: array<u32>;      // [experts] expert -> slot
@group(0) @binding(5) var<storage, read> tiles: array<vec4<u32>>; // [max tiles] (expert, row0, row_end, _)
@group(0) @binding(6) var<storage, read> rows: array<u32>;       // [pairs] sorted row -> pair id
@group(0) @binding(7) var<storage, read_write> out: array<f32>;  // [rows, out_stride]

// The rows and weights one workgroup works on.
struct Tile {
    row0: u32,     // first row of the workgroup's block
    row_end: u32,  // one past the last valid row
    slot: u32,     // weight slot, INVALID when the expert is not resident
}

fn tile_of(wg_x: u32) -> Tile {
    let block_m = WG_M * TM;
    if (GROUPED) {
        var i = wg_x;
        if (TAIL) {
            i = arrayLength(&tiles) - 1u - wg_x;
        }
        let t = tiles[i];
        return Tile(t.y, min(t.z, t.y + block_m), slots[t.x]);
    }
    return Tile(wg_x * block_m, p.m, 0u);
}

// Offset (in floats) of the x row that sorted row r reads.
fn x_row(r: u32) -> u32 {
    var xr = r;
    if (GATHER) {
        xr = rows[r] / p.top_k;
    }
    return xr * p.x_stride;
}

fn x_at(i: u32) -> f32 {
    return x[i / 4u][i % 4u];
}

// Four x values from column c (a multiple of 4) of the row at `base`, zero past k.
fn x_chunk(base: u32, c: u32) -> vec4<f32> {
    if (X_VEC4) {
        let v = x[(base + c) / 4u];
        if (c + 4u <= p.k) {
            return v;
        }
        return select(vec4<f32>(0.0), v, c + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(p.k));
    }
    var v = vec4<f32>(0.0);
    for (var i = 0u; i < 4u; i++) {
        if (c + i < p.k) {
            v[i] = x_at(base + c + i);
        }
    }
    return v;
}

// Chunk `sub` (0..SUBS) of a weight word: its values 4·sub .. 4·sub + 3, before any scale.
fn decode(word: vec4<u32>, sub: u32) -> vec4<f32> {
    if (WFMT == 1u) {
        return vec4<f32>(unpack2x16float(word[2u * sub]), unpack2x16float(word[2u * sub + 1u]));
    }
    if (WFMT == 2u) {
        // Each lane's byte to the top, then an arithmetic shift sign-extends it.
        let lanes = vec4<u32>(word[sub]) << vec4<u32>(24u, 16u, 8u, 0u);
        return vec4<f32>(bitcast<vec4<i32>>(lanes) >> vec4<u32>(24u));
    }
    if (WFMT == 3u) {
        let nibbles = vec4<u32>(word[sub / 2u] >> (16u * (sub % 2u)));
        let lanes = nibbles << vec4<u32>(28u, 24u, 20u, 16u);
        return vec4<f32>(bitcast<vec4<i32>>(lanes) >> vec4<u32>(28u));
    }
    if (WFMT == 4u) {
        let lo = word[2u * sub];
        let hi = word[2u * sub + 1u];
        let halves = vec4<u32>(lo << 16u, lo & 0xffff0000u, hi << 16u, hi & 0xffff0000u);
        return bitcast<vec4<f32>>(halves);
    }
    if (WFMT == 5u) {
        let quad = vec4<u32>(word[sub / 2u] >> (16u * (sub % 2u)));
        let nib = (quad >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
        // e2m1 magnitude bits eem: from 1.0 up they are an f32's exponent (biased by 126) and
        // top mantissa bit; 0 and 0.5 (ee = 0) are m / 2. Exact, and no subnormals.
        let mag = nib & vec4<u32>(7u);
        let normal = bitcast<vec4<f32>>((mag << vec4<u32>(22u)) + vec4<u32>(126u << 23u));
        let v = select(normal, vec4<f32>(mag) * 0.5, mag < vec4<u32>(2u));
        let sign = (nib & vec4<u32>(8u)) << vec4<u32>(28u);
        return bitcast<vec4<f32>>(bitcast<vec4<u32>>(v) | sign);
    }
    return bitcast<vec4<f32>>(word);
}

// Whether each weight word has its own scale (int4, mxfp4), applied to its decoded values.
fn group_scaled() -> bool {
    return WFMT == 3u || WFMT == 5u;
}

// u32 word `i` of the scale block of the slot starting at vec4 word `slot_base`.
fn scale_word(slot_base: u32, i: u32) -> u32 {
    let at = (slot_base + p.w_scale_vecs) * 4u + i;
    return w[at / 4u][at % 4u];
}

// int8: the scale of weight row `row` of a slot.
fn row_scale(slot_base: u32, row: u32) -> f32 {
    return bitcast<f32>(scale_word(slot_base, row));
}

// int4 and mxfp4: the scale of group (word) `g` of weight row `row` of a slot, a bf16 (int4)
// or an e8m0 exponent e (mxfp4): 2^(e - 127) from its bits, e = 0 the subnormal 2^-127 (255,
// NaN, is rejected by the loaders).
fn group_scale(slot_base: u32, row: u32, g: u32) -> f32 {
    if (WFMT == 5u) {
        let quad = scale_word(slot_base, row * ((p.w_row_vecs + 3u) / 4u) + g / 4u);
        let e = (quad >> (8u * (g % 4u))) & 0xffu;
        return bitcast<f32>(select(e << 23u, 0x00400000u, e == 0u));
    }
    let pair = scale_word(slot_base, row * ((p.w_row_vecs + 1u) / 2u) + g / 2u);
    return bitcast<f32>(select(pair << 16u, pair & 0xffff0000u, g % 2u == 1u));
}

fn activate(g: f32, u: f32) -> f32 {
    if (GLU == 2u) {
        let gc = min(g, p.act_limit);
        let uc = clamp(u, -p.act_limit, p.act_limit);
        return (uc + 1.0) * gc / (1.0 + exp(-p.act_alpha * gc));
    }
    return g / (1.0 + exp(-g)) * u;
}

// Writes output (r, c) of this part (column col0 + c) from the gate (or only) accumulator g and
// the up accumulator u.
fn store(r: u32, c: u32, slot: u32, g: f32, u: f32) {
    let bias_base = slot * p.bias_slot + p.col0;
    var v = g;
    var up = u;
    if (WFMT == 2u) {
        let slot_base = slot * p.w_slot_vecs;
        v *= row_scale(slot_base, c);
        if (GLU != 0u) {
            up *= row_scale(slot_base, p.n + c);
        }
    }
    if (BIAS) {
        v += bias[bias_base + c];
    }
    if (GLU != 0u) {
        if (BIAS) {
            up += bias[bias_base + p.n_total + c];
        }
        v = activate(v, up);
    }
    out[r * p.out_stride + p.col0 + c] = v;
}
