// Rotary position embedding fused with a strided copy: for token t and head h, `dim` columns are
// copied from src to dst, and the columns rot_start .. rot_start + rot_dim are rotated by the
// angles of token t's position, rows[t].position. One kernel serves q (into the attention input,
// row t), k and v (into the KV cache at row cache_row0 + position: each token of a step may
// belong to another sequence, with its own cache) and DeepSeek's shared rope key (src_head_stride = 0
// broadcasts one source head to every destination head). rot_dim = 0 is a plain copy.
//   halves (INTERLEAVE = false): pairs (i, i + rot_dim/2), as HF rotate_half;
//   interleaved (INTERLEAVE = true): pairs (2i, 2i + 1), as DeepSeek's complex rotation. The
//   rotated pair stays in place; q · k is the same for any fixed permutation of the columns.
// The table holds cos and sin, already multiplied by the YaRN attention factor.

struct Params {
    tokens: u32,
    heads: u32,
    dim: u32,             // columns copied per head
    rot_start: u32,       // first rotated column within the head
    rot_dim: u32,         // rotated columns (even; 0 = copy only)
    src_stride: u32,      // floats per token in src
    src_head_stride: u32, // floats between heads in src (0 = broadcast)
    src_offset: u32,      // float offset of head 0 within a src token
    dst_stride: u32,      // floats per row in dst
    dst_head_stride: u32, // floats between heads in dst
    dst_offset: u32,      // float offset of head 0 within a dst row
    at_position: u32,     // 1: token t goes to dst row cache_row0 + position (a KV cache); 0: row t
    _pad0: u32,
    _pad1: u32,
    _pad2: u32,
}

struct RowPlace {
    cache_row0: u32,
    position: u32,
}

override INTERLEAVE: bool = false;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> src: array<f32>;        // [tokens, src_stride]
@group(0) @binding(2) var<storage, read> table: array<vec2<f32>>; // [positions, rot_dim / 2] (cos, sin)
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;   // [rows, dst_stride]
@group(0) @binding(4) var<storage, read> rows: array<RowPlace>;   // [tokens]

@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
    let t = gid.y;
    let h = gid.x / p.dim;
    let c = gid.x % p.dim;
    if (t >= p.tokens || h >= p.heads) {
        return;
    }
    let place = rows[t];
    let s = t * p.src_stride + p.src_offset + h * p.src_head_stride;
    var v = src[s + c];
    if (c >= p.rot_start && c < p.rot_start + p.rot_dim) {
        let i = c - p.rot_start;
        let half = p.rot_dim / 2u;
        var j: u32;       // frequency index
        var other: u32;   // column of the pair partner
        var first: bool;  // this column is the pair's first (cos·a − sin·b) element
        if (INTERLEAVE) {
            j = i / 2u;
            first = i % 2u == 0u;
            other = select(c - 1u, c + 1u, first);
        } else {
            first = i < half;
            j = select(i - half, i, first);
            other = select(c - half, c + half, first);
        }
        let cs = table[place.position * half + j];
        let u = src[s + other];
        v = select(v * cs.x + u * cs.y, v * cs.x - u * cs.y, first);
    }
    let row = select(t, place.cache_row0 + place.position, p.at_position != 0u);
    dst[row * p.dst_stride + p.dst_offset + h * p.dst_head_stride + c] = v;
}
