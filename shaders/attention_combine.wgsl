// Merges the key splits of attention.wgsl (see attention_common.wgsl): one workgroup per
// (head, token). With M the largest split max (and the sink's logit), every split's sum and
// accumulator are scaled by exp(m_s − M) and added in split order, so the result is the same
// on every run; empty splits (m = NO_SCORE, l = 0) add nothing.

const WG: u32 = 64u;

@group(0) @binding(1) var<storage, read> partials: array<f32>;  // [tokens, heads, splits, 2 + v_dim] (m, l, acc)
@group(0) @binding(2) var<storage, read> sinks: array<f32>;     // [heads] (SINKS only)
@group(0) @binding(3) var<storage, read_write> out: array<f32>; // [tokens, heads, v_dim]

@compute @workgroup_size(WG)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let h = wg.x;
    let t = wg.y;
    let row = 2u + p.v_dim;
    let pb = (t * p.heads + h) * p.splits * row;
    var mx = NO_SCORE;
    for (var s = 0u; s < p.splits; s++) {
        mx = max(mx, partials[pb + s * row]);
    }
    if (SINKS) {
        mx = max(mx, sinks[h]);
    }
    var total = 0.0;
    for (var s = 0u; s < p.splits; s++) {
        total += partials[pb + s * row + 1u] * exp(partials[pb + s * row] - mx);
    }
    if (SINKS) {
        total += exp(sinks[h] - mx);
    }
    let ob = t * p.out_stride + h * p.v_dim;
    for (var d = lid; d < p.v_dim; d += WG) {
        var acc = 0.0;
        for (var s = 0u; s < p.splits; s++) {
            acc += partials[pb + s * row + 2u + d] * exp(partials[pb + s * row] - mx);
        }
        out[ob + d] = acc / total;
    }
}
