// Tokens per expert: a histogram of the selected ids. Integer atomics, so the counts are exact.

struct Params {
    pairs: u32,   // tokens · k_max
    experts: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;                  // [pairs]
@group(0) @binding(2) var<storage, read_write> counts: array<atomic<u32>>; // [experts], zeroed

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.pairs) {
        return;
    }
    let e = ids[i];
    if (e < p.experts) {
        atomicAdd(&counts[e], 1u);
    }
}
