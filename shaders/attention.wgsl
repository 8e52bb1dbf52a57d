// Attention (see attention_common.wgsl), one invocation per (token, head, key split) with an
// online softmax in f32 and no workgroup memory. Split s of a query covers keys
// first_key(pos) + s·c .. + c, where c = row_chunk(its key count) depends on nothing but the
// query's own keys: a query's result is the same whatever else shares its step. They are walked in passes of at most pass_keys keys, one
// dispatch each: llvmpipe (lavapipe, GL) ends every loop of an invocation once 65535 loop
// iterations have run in total (LP_MAX_TGSI_LOOP_ITERATIONS), so no invocation may walk a
// long context alone. Between passes the running max m, sum l and unnormalised accumulator live
// in `partials`; attention_combine.wgsl then merges the splits in split order and normalises
// (flash-decoding: a decode step runs heads · splits invocations rather than one per head). A
// step of one split and one pass (prefill, short contexts) normalises here and writes `out`,
// with the same operations as the combine's merge of a single split.
// Loops move 16 floats (four vec4) per iteration, which keeps the iteration count down; value
// columns are accumulated in registers, at most MAX_V of them.

const MAX_V: u32 = 512u;
const BLOCK: u32 = 16u;

@group(0) @binding(1) var<storage, read> q: array<f32>;             // [tokens, heads, qk_dim] (q_stride per token)
@group(0) @binding(2) var<storage, read> k: array<f32>;             // [rows, kv_heads, qk_dim] (k_stride per row)
@group(0) @binding(3) var<storage, read> v: array<f32>;             // [rows, kv_heads, v_dim] (v_stride per row)
@group(0) @binding(4) var<storage, read> sinks: array<f32>;         // [heads] (SINKS only)
@group(0) @binding(5) var<storage, read_write> partials: array<f32>; // [tokens, heads, splits, 2 + v_dim] (m, l, acc)
@group(0) @binding(6) var<storage, read_write> out: array<f32>;      // [tokens, heads, v_dim] (direct steps)
@group(0) @binding(7) var<storage, read> rows: array<RowPlace>;      // [tokens]

struct RowPlace {
    cache_row0: u32,
    position: u32,
}

// Keys per split of a query that sees `keys` keys: all of them unless it splits, else
// max(chunk, ⌈keys / max_splits⌉).
fn row_chunk(keys: u32) -> u32 {
    if (p.splits > 1u && keys >= p.min_keys) {
        return max(p.chunk, (keys - 1u) / p.max_splits + 1u);
    }
    return keys;
}

// Four floats from index i, zero from index `end` on (the end of the head).
fn mask4(i: u32, end: u32) -> vec4<bool> {
    return i + vec4<u32>(0u, 1u, 2u, 3u) < vec4<u32>(end);
}

fn q4(i: u32, end: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(q[i], q[i + 1u], q[i + 2u], q[i + 3u]), mask4(i, end));
}

fn k4(i: u32, end: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(k[i], k[i + 1u], k[i + 2u], k[i + 3u]), mask4(i, end));
}

fn v4(i: u32, end: u32) -> vec4<f32> {
    return select(vec4<f32>(0.0), vec4<f32>(v[i], v[i + 1u], v[i + 2u], v[i + 3u]), mask4(i, end));
}

fn partial4(i: u32, end: u32) -> vec4<f32> {
    let x = vec4<f32>(partials[i], partials[i + 1u], partials[i + 2u], partials[i + 3u]);
    return select(vec4<f32>(0.0), x, mask4(i, end));
}

// Writes the components of x that lie before `end` to buf[i..].
fn store_partial4(i: u32, end: u32, x: vec4<f32>) {
    let ok = mask4(i, end);
    if (ok.x) { partials[i] = x.x; }
    if (ok.y) { partials[i + 1u] = x.y; }
    if (ok.z) { partials[i + 2u] = x.z; }
    if (ok.w) { partials[i + 3u] = x.w; }
}

fn store_out4(i: u32, end: u32, x: vec4<f32>) {
    let ok = mask4(i, end);
    if (ok.x) { out[i] = x.x; }
    if (ok.y) { out[i + 1u] = x.y; }
    if (ok.z) { out[i + 2u] = x.z; }
    if (ok.w) { out[i + 3u] = x.w; }
}

@compute @workgroup_size(16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.x;
    let split = gid.y % p.splits;
    let t = gid.y / p.splits;
    if (h >= p.heads || t >= p.tokens) {
        return;
    }
    let place = rows[t];
    let pos = place.position;
    let first = first_key(pos);
    let chunk = row_chunk(pos + 1u - first);
    let split_start = first + split * chunk;
    let split_end = min(split_start + chunk, pos + 1u);
    let start = split_start + p.pass_start;
    let end = min(start + p.pass_keys, split_end); // ≤ start: nothing to do in this pass
    let qb = t * p.q_stride + h * p.qk_dim;
    let q_end = qb + p.qk_dim;
    let kv_head = h / p.group;
    let pb = ((t * p.heads + h) * p.splits + split) * (2u + p.v_dim);
    let vec4s = (p.v_dim + 3u) / 4u;

    var acc: array<vec4<f32>, MAX_V / 4u>;
    var m = NO_SCORE;
    var l = 0.0;
    if (p.pass_start > 0u) {
        m = partials[pb];
        l = partials[pb + 1u];
        let a_end = pb + 2u + p.v_dim;
        for (var i = 0u; i < vec4s; i += 4u) {
            let a = pb + 2u + 4u * i;
            acc[i] = partial4(a, a_end);
            acc[i + 1u] = partial4(a + 4u, a_end);
            acc[i + 2u] = partial4(a + 8u, a_end);
            acc[i + 3u] = partial4(a + 12u, a_end);
        }
    }
    for (var j = start; j < end; j++) {
        let kb = (place.cache_row0 + j) * p.k_stride + kv_head * p.qk_dim;
        let k_end = kb + p.qk_dim;
        var dot = vec4<f32>(0.0);
        for (var c = 0u; c < p.qk_dim; c += BLOCK) {
            dot += q4(qb + c, q_end) * k4(kb + c, k_end);
            dot += q4(qb + c + 4u, q_end) * k4(kb + c + 4u, k_end);
            dot += q4(qb + c + 8u, q_end) * k4(kb + c + 8u, k_end);
            dot += q4(qb + c + 12u, q_end) * k4(kb + c + 12u, k_end);
        }
        let s = (dot.x + dot.y + dot.z + dot.w) * p.scale;
        if (s > m) {
            let c = exp(m - s);
            l *= c;
            for (var i = 0u; i < vec4s; i += 4u) {
                acc[i] *= c;
                acc[i + 1u] *= c;
                acc[i + 2u] *= c;
                acc[i + 3u] *= c;
            }
            m = s;
        }
        let w = exp(s - m);
        l += w;
        let vb = (place.cache_row0 + j) * p.v_stride + kv_head * p.v_dim;
        let v_end = vb + p.v_dim;
        for (var i = 0u; i < vec4s; i += 4u) {
            let a = vb + 4u * i;
            acc[i] += w * v4(a, v_end);
            acc[i + 1u] += w * v4(a + 4u, v_end);
            acc[i + 2u] += w * v4(a + 8u, v_end);
            acc[i + 3u] += w * v4(a + 12u, v_end);
        }
    }

    if (p.direct != 0u) {
        // attention_combine.wgsl's arithmetic for one split: (acc · e^(m − M)) / total.
        var mx = m;
        if (SINKS) {
            mx = max(m, sinks[h]);
        }
        let f = exp(m - mx);
        var total = l * f;
        if (SINKS) {
            total += exp(sinks[h] - mx);
        }
        let ob = t * p.out_stride + h * p.v_dim;
        let o_end = ob + p.v_dim;
        for (var i = 0u; i < vec4s; i += 4u) {
            let o = ob + 4u * i;
            store_out4(o, o_end, acc[i] * f / total);
            store_out4(o + 4u, o_end, acc[i + 1u] * f / total);
            store_out4(o + 8u, o_end, acc[i + 2u] * f / total);
            store_out4(o + 12u, o_end, acc[i + 3u] * f / total);
        }
        return;
    }
    partials[pb] = m;
    partials[pb + 1u] = l;
    let a_end = pb + 2u + p.v_dim;
    for (var i = 0u; i < vec4s; i += 4u) {
        let a = pb + 2u + 4u * i;
        store_partial4(a, a_end, acc[i]);
        store_partial4(a + 4u, a_end, acc[i + 1u]);
        store_partial4(a + 8u, a_end, acc[i + 2u]);
        store_partial4(a + 12u, a_end, acc[i + 3u]);
    }
}
