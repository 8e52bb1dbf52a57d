// Scatter of (token, slot) pairs into expert-sorted rows: rows[position] = pair id and
// pos[pair id] = position. The order inside an expert's segment depends on atomics; results do
// not, because each row's GEMM arithmetic is independent of its position.

struct Params {
    pairs: u32,   // tokens · k_max
    experts: u32,
    _pad0: u32,
    _pad1: u32,
}

const INVALID: u32 = 0xffffffffu;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> ids: array<u32>;                  // [pairs]
@group(0) @binding(2) var<storage, read_write> cursor: array<atomic<u32>>; // [experts]
@group(0) @binding(3) var<storage, read_write> rows: array<u32>;           // [pairs] position -> pair
@group(0) @binding(4) var<storage, read_write> pos: array<u32>;            // [pairs] pair -> position

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let i = gid.x;
    if (i >= p.pairs) {
        return;
    }
    let e = ids[i];
    if (e >= p.experts) {
        pos[i] = INVALID;
        return;
    }
    let at = atomicAdd(&cursor[e], 1u);
    rows[at] = i;
    pos[i] = at;
}
