// out[t] = Σ_j weights[t, j] · y[pos(t, j)]  (+ gate[t] · shared[t]).
// A gather in slot order: no float atomics, so the sum is deterministic.

struct Params {
    tokens: u32,
    hidden: u32,
    k_max: u32,
    y_stride: u32,      // floats per row of y and of shared
}

override SHARED: bool = false;       // add a shared-expert output
override SHARED_GATE: bool = false;  // scale it by a per-token gate

const INVALID: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> weights: array<f32>;     // [tokens, k_max]
@group(0) @binding(2) var<storage, read> pos: array<u32>;         // [tokens, k_max] pair -> row
@group(0) @binding(3) var<storage, read> y: array<f32>;           // [pairs, y_stride] sorted rows
@group(0) @binding(4) var<storage, read> shared_out: array<f32>;  // [tokens, y_stride]
@group(0) @binding(5) var<storage, read> shared_gate: array<f32>; // [tokens]
@group(0) @binding(6) var<storage, read_write> out: array<f32>;   // [tokens, hidden]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let t = gid.y;
    if (c >= p.hidden || t >= p.tokens) {
        return;
    }
    var acc = 0.0;
    for (var j = 0u; j < p.k_max; j++) {
        let r = pos[t * p.k_max + j];
        if (r != INVALID) {
            acc += weights[t * p.k_max + j] * y[r * p.y_stride + c];
        }
    }
    if (SHARED) {
        var s = shared_out[t * p.y_stride + c];
        if (SHARED_GATE) {
            s *= shared_gate[t];
        }
        acc += s;
    }
    out[t * p.hidden + c] = acc;
}
