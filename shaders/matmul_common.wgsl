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
// f32, exact), 16 int8 or Q8_0 (two's complement lanes, lowest first), 32 int4 (two's
// complement nibbles, lowest first), 32 mxfp4 (e2m1 nibbles, lowest first) or 32 of a GGUF
// 4-, 5- or 6-bit type (unsigned nibbles, the low 4 bits, lowest first; rows padded to whole
// GGUF blocks). Quantised slots end in a scale block (after the rows, at w_scale_vecs), u32
// words per row: int8 one f32, applied to the row's sum; int4 one bf16 per word (a group of
// 32 values), ceil(w_row_vecs / 2) words with even groups in the low half; mxfp4 one e8m0 byte
// per word, ceil(w_row_vecs / 4) words with group 4j + b in byte b, the scale 2^(e - 127).
// GGUF types, g = 32-value groups per row: Q8_0, Q4_0 f16 d pairs, ceil(g / 2) words; Q4_1
// (d | m << 16) per group; Q5_0 g words qh (bit i: value i's fifth bit) then ceil(g / 2) d
// pairs; Q5_1 per group qh, (d | m << 16); Q4_K per 256 (d | dmin << 16) and GGUF's 12
// packed 6-bit scale/min bytes; Q5_K those 4 words and 8 qh words (one per group); Q6_K per
// 256 16 words of 2-bit highs (value 16m + n in bits 2n of word m), 4 words of i8 scales (one
// per 16), f16 d. Every word's side data is loaded with it (Meta) and `weights` returns its
// final values, computed as gguf-py computes them. Layout and quantisation:
// src/kernels/weight_packing.rs, src/kernels/mxfp4.rs and src/kernels/gguf_formats.rs.
// Accumulation is f32 in k order, so an output element's value does not depend on where its
// row sits in a tile (batch invariance).

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
// weights: 0 f32, 1 f16 pairs, 2 int8, 3 int4, 4 bf16 pairs, 5 mxfp4, then GGUF's 6 Q8_0,
// 7 Q4_0, 8 Q4_1, 9 Q5_0, 10 Q5_1, 11 Q4_K, 12 Q5_K, 13 Q6_K
override WFMT: u32 = 0u;
override X_VEC4: bool = false; // x_stride % 4 == 0: x rows are read as aligned vec4s
override WG_M: u32 = 1u;       // threads along rows
override WG_N: u32 = 64u;      // threads along columns
override TM: u32 = 4u;         // rows per thread (≤ 8)
override TN: u32 = 4u;         // columns per thread (≤ 16, TM · TN ≤ 64)
// weights per vec4<u32> word: 4 f32, 8 f16 or bf16, 16 int8 or Q8_0, 32 for the 4-bit codes
override PER_WORD: u32 = select(
    select(select(4u << min(WFMT, 3u), 8u, WFMT == 4u), 32u, WFMT == 5u || WFMT >= 7u),
    16u,
    WFMT == 6u,
);
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
    if (WFMT == 2u || WFMT == 6u) {
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

// Whether each weight word has side data in the scale block (int4, mxfp4, GGUF types).
fn group_scaled() -> bool {
    return WFMT == 3u || WFMT >= 5u;
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

// A weight word's side data, loaded with it: a scale `a` (int4, mxfp4, GGUF d or d · sc), a
// min or second scale `b` (Q4_1, Q5_1: m; Q4_K, Q5_K: dmin · m; Q6_K: the scale of values
// 16..32), and high bits `h` (Q5_*: the fifth bits; Q6_K: the 2-bit highs of values 0..16, 16..32).
struct Meta {
    a: f32,
    b: f32,
    h: vec2<u32>,
}

fn half_of(word: u32, high: bool) -> f32 {
    return select(unpack2x16float(word).x, unpack2x16float(word).y, high);
}

// Byte `i` (0..4) of `word` as an i8.
fn i8_of(word: u32, i: u32) -> f32 {
    return f32(bitcast<i32>(word << (24u - 8u * i)) >> 24u);
}

// Byte `i` (0..12) of the three words `s`.
fn byte_of(s: vec3<u32>, i: u32) -> u32 {
    return (s[i / 4u] >> (8u * (i % 4u))) & 0xffu;
}

// The side data of word `word` of weight row `row` of the slot at `sb`.
fn load_meta(sb: u32, row: u32, word: u32) -> Meta {
    var m = Meta(1.0, 0.0, vec2<u32>(0u));
    if (WFMT < 6u) {
        if (group_scaled()) {
            m.a = group_scale(sb, row, word);
        }
        return m;
    }
    let g = select(word, word / 2u, WFMT == 6u);  // 32-value group
    let groups = p.w_row_vecs * PER_WORD / 32u;
    let pairs = (groups + 1u) / 2u;
    if (WFMT == 6u || WFMT == 7u) {
        m.a = half_of(scale_word(sb, row * pairs + g / 2u), g % 2u == 1u);
    } else if (WFMT == 8u) {
        let dm = scale_word(sb, row * groups + g);
        m.a = half_of(dm, false);
        m.b = half_of(dm, true);
    } else if (WFMT == 9u) {
        let base = row * (groups + pairs);
        m.h.x = scale_word(sb, base + g);
        m.a = half_of(scale_word(sb, base + groups + g / 2u), g % 2u == 1u);
    } else if (WFMT == 10u) {
        let base = row * 2u * groups + 2u * g;
        m.h.x = scale_word(sb, base);
        m.a = half_of(scale_word(sb, base + 1u), false);
        m.b = half_of(scale_word(sb, base + 1u), true);
    } else if (WFMT == 11u || WFMT == 12u) {
        // ggml's get_scale_min_k4 on the 12 packed bytes.
        let per = select(4u, 12u, WFMT == 12u);
        let base = row * (groups / 8u * per) + g / 8u * per;
        let j = g % 8u;
        let s = vec3<u32>(scale_word(sb, base + 1u), scale_word(sb, base + 2u), scale_word(sb, base + 3u));
        var sc = byte_of(s, j) & 63u;
        var mn = byte_of(s, j + 4u) & 63u;
        if (j >= 4u) {
            sc = (byte_of(s, j + 4u) & 15u) | ((byte_of(s, j - 4u) >> 6u) << 4u);
            mn = (byte_of(s, j + 4u) >> 4u) | ((byte_of(s, j) >> 6u) << 4u);
        }
        let dm = scale_word(sb, base);
        m.a = half_of(dm, false) * f32(sc);
        m.b = half_of(dm, true) * f32(mn);
        if (WFMT == 12u) {
            m.h.x = scale_word(sb, base + 4u + j);
        }
    } else {
        let base = row * (groups / 8u * 21u) + g / 8u * 21u;
        let j = g % 8u;
        m.h = vec2<u32>(scale_word(sb, base + 2u * j), scale_word(sb, base + 2u * j + 1u));
        let scales = scale_word(sb, base + 16u + j / 2u);
        let d = half_of(scale_word(sb, base + 20u), false);
        m.a = d * i8_of(scales, 2u * (j % 2u));
        m.b = d * i8_of(scales, 2u * (j % 2u) + 1u);
    }
    return m;
}

// Chunk `sub` (0..SUBS) of a weight word with side data `m`: its final values 4·sub ..
// 4·sub + 3 (int8 still without its row scale), as the CPU decoders compute them.
fn weights(word: vec4<u32>, m: Meta, sub: u32) -> vec4<f32> {
    if (WFMT <= 6u) {
        let v = decode(word, sub);
        if (group_scaled()) {
            return v * m.a;
        }
        return v;
    }
    let quad = vec4<u32>(word[sub / 2u] >> (16u * (sub % 2u)));
    let q = (quad >> vec4<u32>(0u, 4u, 8u, 12u)) & vec4<u32>(15u);
    let e = vec4<u32>(0u, 1u, 2u, 3u) + 4u * sub;  // the values' places in the group
    let q5 = q | (((vec4<u32>(m.h.x) >> e) & vec4<u32>(1u)) << vec4<u32>(4u));
    if (WFMT == 7u) {
        return m.a * (vec4<f32>(q) - 8.0);
    }
    if (WFMT == 8u) {
        return m.a * vec4<f32>(q) + m.b;
    }
    if (WFMT == 9u) {
        return m.a * (vec4<f32>(q5) - 16.0);
    }
    if (WFMT == 10u) {
        return m.a * vec4<f32>(q5) + m.b;
    }
    if (WFMT == 11u) {
        return m.a * vec4<f32>(q) - m.b;
    }
    if (WFMT == 12u) {
        return m.a * vec4<f32>(q5) - m.b;
    }
    let high = (vec4<u32>(m.h[sub / 4u]) >> (2u * (e % 16u))) & vec4<u32>(3u);
    return select(m.b, m.a, sub < 4u) * (vec4<f32>(q | (high << vec4<u32>(4u))) - 32.0);
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
