// Expert output rows computed on the CPU, put among the GPU's before the combine:
//   y[pos[pairs[i]]] = cpu_y[i]   for each of the step's `count` CPU rows.
// The combine then sums each token's slots in slot order, wherever each row came from.

struct Params {
    count: u32,   // CPU rows this step
    hidden: u32,  // floats per row of cpu_y and y
    _pad0: u32,
    _pad1: u32,
}

const INVALID: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> pairs: array<u32>;      // [count] token · k + slot of each row
@group(0) @binding(2) var<storage, read> pos: array<u32>;        // [tokens, k] pair -> sorted row
@group(0) @binding(3) var<storage, read> cpu_y: array<f32>;      // [count, hidden]
@group(0) @binding(4) var<storage, read_write> y: array<f32>;    // [pairs, hidden] sorted rows

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let c = gid.x;
    let i = gid.y;
    if (c >= p.hidden || i >= p.count) {
        return;
    }
    let r = pos[pairs[i]];
    if (r != INVALID) {
        y[r * p.hidden + c] = cpu_y[i * p.hidden + c];
    }
}
