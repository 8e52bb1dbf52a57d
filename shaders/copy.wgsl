// dst = src, one vec4<u32> per thread per step over a grid-stride loop: the plain copy whose
// bytes per second are the yardstick for the bandwidth of the other kernels.

struct Params {
    words: u32,   // vec4<u32> words to copy
    stride: u32,  // threads in the grid
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;        // [words]
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;  // [words]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    for (var i = gid.x; i < p.words; i += p.stride) {
        dst[i] = src[i];
    }
}
