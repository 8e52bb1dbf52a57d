// Decode down projection fused with the combine (after matmul_common.wgsl and
// matvec_common.wgsl). Workgroup (t, column block) computes, for each of token t's k slots in
// slot order, the expert's row y = h · W_downᵀ (+ bias) and sums
//   out[t, c] = Σ_j weights[t, j] · y_j[c]  (+ gate[t] · shared[t, c])
// with the arithmetic of the down GEMM followed by combine.wgsl, term for term, so the bits
// are those of the unfused path (and no float atomics). y is still written, for routing
// capture. Used with GLU = 0 and any weight format without per-row scales (all but int8;
// side data applies per chunk inside the matvec). Bindings 0-7 are
// matmul_common.wgsl's, with x = the expert hidden rows [pairs, k] and out = the combined
// output [tokens, out_stride]. With split weights each part's dispatch writes its columns
// col0 .. col0 + n of y, out and the shared output.

override SHARED: bool = false;       // add a shared-expert output
override SHARED_GATE: bool = false;  // scale it by a per-token gate

@group(0) @binding(8) var<storage, read> ids: array<u32>;          // [tokens, top_k] expert of each pair
@group(0) @binding(9) var<storage, read> pos: array<u32>;          // [tokens, top_k] sorted row of each pair, INVALID if dropped
@group(0) @binding(10) var<storage, read> route_w: array<f32>;     // [tokens, top_k] routing weights
@group(0) @binding(11) var<storage, read> shared_out: array<f32>;  // [tokens, n_total]
@group(0) @binding(12) var<storage, read> shared_gate: array<f32>; // [tokens]
@group(0) @binding(13) var<storage, read_write> y: array<f32>;     // [pairs, n_total] expert outputs, sorted rows

@compute @workgroup_size(WG_N)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_index) lid: u32) {
    let t = wg.x;
    let col0 = (wg.y * WG_N + lid) * TN;
    if (t >= p.m || col0 >= p.n) {
        return;
    }
    var sums: array<f32, 8>;
    for (var j = 0u; j < TN; j++) {
        sums[j] = 0.0;
    }
    for (var s = 0u; s < p.top_k; s++) {
        let pair = t * p.top_k + s;
        let r = pos[pair];
        if (r == INVALID) {
            continue;
        }
        let slot = slots[ids[pair]];
        if (slot == INVALID) {
            continue;
        }
        let a = matvec(slot, r * p.x_stride, col0);
        let weight = route_w[pair];
        for (var j = 0u; j < TN; j++) {
            let c = min(col0 + j, p.n - 1u);
            var v = gate_of(a, j);
            if (BIAS) {
                v += bias[slot * p.bias_slot + p.col0 + c];
            }
            if (col0 + j < p.n) {
                y[r * p.n_total + p.col0 + c] = v;
            }
            sums[j] += weight * v;
        }
    }
    for (var j = 0u; j < TN; j++) {
        let c = col0 + j;
        if (c < p.n) {
            var acc = sums[j];
            if (SHARED) {
                var sh = shared_out[t * p.n_total + p.col0 + c];
                if (SHARED_GATE) {
                    sh *= shared_gate[t];
                }
                acc += sh;
            }
            out[t * p.out_stride + p.col0 + c] = acc;
        }
    }
}
