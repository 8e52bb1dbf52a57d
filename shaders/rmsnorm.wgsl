// out[r] = weight ⊙ x[r] / sqrt(mean(x[r]²) + eps), one invocation per row, summed in column
// order (deterministic, no workgroup memory: cheap to compile on GL).
// With ADD the residual update comes first: x[r] += delta[r] is written back, then normalised.
// That fuses "h = h + sublayer(h)" with the next layer's norm.
// Rows of x and delta start at in_offset + r · in_stride, rows of out at r · out_stride, so the
// same kernel normalises whole tokens, each head of q / k, or the first columns of a wider row.

struct Params {
    rows: u32,       // rows to normalise
    width: u32,      // columns per row (length of weight)
    in_stride: u32,  // floats between rows of x and delta
    in_offset: u32,  // float index of row 0 in x and delta
    out_stride: u32, // floats between rows of out
    eps: f32,
    _pad0: u32,
    _pad1: u32,
}

override ADD: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> delta: array<f32>;     // [rows, in_stride] (ADD only)
@group(0) @binding(2) var<storage, read_write> x: array<f32>;   // [rows, in_stride] residual stream
@group(0) @binding(3) var<storage, read> weight: array<f32>;    // [width]
@group(0) @binding(4) var<storage, read_write> out: array<f32>; // [rows, out_stride]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let r = gid.x;
    if (r >= p.rows) {
        return;
    }
    let base = p.in_offset + r * p.in_stride;
    var sum = 0.0;
    for (var c = 0u; c < p.width; c++) {
        var v = x[base + c];
        if (ADD) {
            v += delta[base + c];
            x[base + c] = v;
        }
        sum += v * v;
    }
    let inv = inverseSqrt(sum / f32(p.width) + p.eps);
    let o = r * p.out_stride;
    for (var c = 0u; c < p.width; c++) {
        out[o + c] = weight[c] * (x[base + c] * inv);
    }
}
