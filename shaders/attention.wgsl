// Causal attention over the KV cache for `tokens` queries at positions pos0 .. pos0 + tokens,
// one invocation per (token, head), with an online softmax in f32 (no workgroup memory).
//   GQA: head h reads KV head h / group.
//   Sliding window (window > 0): query position q sees keys q − window + 1 ..= q, as HF's
//   `kv_idx > q_idx - sliding_window`.
//   Sinks (gpt-oss): one extra logit per head joins the softmax and is then dropped.
// Scores are (q · k) · scale; v_dim may differ from qk_dim (DeepSeek MLA).

struct Params {
    tokens: u32,
    pos0: u32,      // position of query 0 (keys 0 .. pos0 + tokens are in the cache)
    heads: u32,
    group: u32,     // query heads per KV head
    qk_dim: u32,
    v_dim: u32,     // ≤ MAX_V
    q_stride: u32,  // floats per token of q
    k_stride: u32,  // floats per cache row of k
    v_stride: u32,  // floats per cache row of v
    out_stride: u32,
    window: u32,    // 0 = full causal attention
    scale: f32,
}

override SINKS: bool = false;

const MAX_V: u32 = 256u;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> q: array<f32>;        // [tokens, heads, qk_dim]
@group(0) @binding(2) var<storage, read> k: array<f32>;        // [positions, kv_heads, qk_dim]
@group(0) @binding(3) var<storage, read> v: array<f32>;        // [positions, kv_heads, v_dim]
@group(0) @binding(4) var<storage, read> sinks: array<f32>;    // [heads] (SINKS only)
@group(0) @binding(5) var<storage, read_write> out: array<f32>; // [tokens, heads, v_dim]

@compute @workgroup_size(16)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let h = gid.x;
    let t = gid.y;
    if (h >= p.heads || t >= p.tokens) {
        return;
    }
    let pos = p.pos0 + t;
    var lo = 0u;
    if (p.window > 0u && pos + 1u > p.window) {
        lo = pos + 1u - p.window;
    }
    let qb = t * p.q_stride + h * p.qk_dim;
    let kv_head = h / p.group;
    var acc: array<f32, MAX_V>;
    for (var d = 0u; d < p.v_dim; d++) {
        acc[d] = 0.0;
    }
    var m = -3.0e38;
    var l = 0.0;
    if (SINKS) {
        m = sinks[h];
        l = 1.0;
    }
    for (var j = lo; j <= pos; j++) {
        let kb = j * p.k_stride + kv_head * p.qk_dim;
        var s = 0.0;
        for (var d = 0u; d < p.qk_dim; d++) {
            s += q[qb + d] * k[kb + d];
        }
        s *= p.scale;
        if (s > m) {
            let c = exp(m - s);
            l *= c;
            for (var d = 0u; d < p.v_dim; d++) {
                acc[d] *= c;
            }
            m = s;
        }
        let w = exp(s - m);
        l += w;
        let vb = j * p.v_stride + kv_head * p.v_dim;
        for (var d = 0u; d < p.v_dim; d++) {
            acc[d] += w * v[vb + d];
        }
    }
    let ob = t * p.out_stride + h * p.v_dim;
    for (var d = 0u; d < p.v_dim; d++) {
        out[ob + d] = acc[d] / l;
    }
}
