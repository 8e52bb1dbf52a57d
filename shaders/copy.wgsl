// The bandwidth yardsticks of the benchmarks, one vec4<u32> per thread per step over a
// grid-stride loop:
//   READ_ONLY = false: dst = src, the plain copy whose bytes per second the other kernels are
//                      measured against;
//   READ_ONLY = true:  each thread sums the words it visits (wrapping) and writes its sum to
//                      dst[thread]: a kernel that only reads, the most any kernel that reads
//                      its data once can reach.

struct Params {
    words: u32,   // vec4<u32> words to copy or read
    stride: u32,  // threads in the grid
    _pad0: u32,
    _pad1: u32,
}

override READ_ONLY: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<vec4<u32>>;        // [words]
@group(0) @binding(2) var<storage, read_write> dst: array<vec4<u32>>;  // [words], or [stride] sums

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    if (READ_ONLY) {
        var sum = vec4<u32>(0u);
        for (var i = gid.x; i < p.words; i += p.stride) {
            sum += src[i];
        }
        if (gid.x < p.words) {
            dst[gid.x] = sum;
        }
        return;
    }
    for (var i = gid.x; i < p.words; i += p.stride) {
        dst[i] = src[i];
    }
}
