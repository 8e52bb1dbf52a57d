// Shared part of the decode matvec kernels (matmul_vec.wgsl, down_combine.wgsl), prefixed after
// matmul_common.wgsl. A thread computes TN ≤ 8 adjacent columns of one x row. The general
// register kernel keeps its accumulators, weight words and offsets in private arrays indexed
// in loops and guards every weight load with a column check; here the TN columns are the
// components of vec4 accumulators (columns 0-3, then 4-7), every index is a constant after
// specialisation, and the weight rows of columns past n are clamped onto the last column
// (loaded, never stored), so the k loop has no per-column branch; on lavapipe the autotuner
// picks it over the register tiles at every decode shape. Per column the arithmetic is the
// general kernel's, term for term in k order (each word's side data applied to its chunks by
// `weights`, int8 row scales at the store), so results are bit-identical to the prefill tiles (batch invariance).

// Gate (or only) and up accumulators of columns col0 + 0..3 and col0 + 4..7.
struct Acc {
    g: vec4<f32>,
    u: vec4<f32>,
    g_hi: vec4<f32>,
    u_hi: vec4<f32>,
}

// One column's gate (or only) and up weight words of a k step, with their side data.
struct Col {
    w: vec4<u32>,
    u: vec4<u32>,
    ws: Meta,
    us: Meta,
}

// Column `col0 + j`, clamped onto the last one.
fn column_of(col0: u32, j: u32) -> u32 {
    return min(col0 + j, p.n - 1u);
}

// Word `word` of column `col`'s gate (or only) and up rows in the slot at `sb`.
fn load_col(sb: u32, col: u32, word: u32) -> Col {
    var c: Col;
    c.w = w[sb + col * p.w_row_vecs + word];
    if (GLU != 0u) {
        c.u = w[sb + (col + p.n) * p.w_row_vecs + word];
    }
    if (group_scaled()) {
        c.ws = load_meta(sb, col, word);
        if (GLU != 0u) {
            c.us = load_meta(sb, col + p.n, word);
        }
    }
    return c;
}

// Adds chunk `sub` of column words `c` times `xv` to component `j` of `g` and `u`.
fn accumulate(
    g: ptr<function, vec4<f32>>,
    u: ptr<function, vec4<f32>>,
    j: u32,
    xv: vec4<f32>,
    c: Col,
    sub: u32,
) {
    (*g)[j] += dot(xv, weights(c.w, c.ws, sub));
    if (GLU != 0u) {
        (*u)[j] += dot(xv, weights(c.u, c.us, sub));
    }
}

// x row at `xbase` (floats) times the TN weight rows of columns col0.. in `slot`.
fn matvec(slot: u32, xbase: u32, col0: u32) -> Acc {
    let sb = slot * p.w_slot_vecs;
    var g = vec4<f32>(0.0);
    var u = vec4<f32>(0.0);
    var g_hi = vec4<f32>(0.0);
    var u_hi = vec4<f32>(0.0);
    for (var k0 = 0u; k0 < p.k; k0 += PER_WORD) {
        let word = k0 / PER_WORD;
        // Each word is loaded once and used for its SUBS chunks of 4 values.
        let c0 = load_col(sb, column_of(col0, 0u), word);
        var c1: Col;
        var c2: Col;
        var c3: Col;
        var c4: Col;
        var c5: Col;
        var c6: Col;
        var c7: Col;
        if (TN > 1u) {
            c1 = load_col(sb, column_of(col0, 1u), word);
        }
        if (TN > 2u) {
            c2 = load_col(sb, column_of(col0, 2u), word);
        }
        if (TN > 3u) {
            c3 = load_col(sb, column_of(col0, 3u), word);
        }
        if (TN > 4u) {
            c4 = load_col(sb, column_of(col0, 4u), word);
        }
        if (TN > 5u) {
            c5 = load_col(sb, column_of(col0, 5u), word);
        }
        if (TN > 6u) {
            c6 = load_col(sb, column_of(col0, 6u), word);
        }
        if (TN > 7u) {
            c7 = load_col(sb, column_of(col0, 7u), word);
        }
        for (var sub = 0u; sub < SUBS; sub++) {
            let c = k0 + 4u * sub;
            if (c >= p.k) {
                break;
            }
            let xv = x_chunk(xbase, c);
            accumulate(&g, &u, 0u, xv, c0, sub);
            if (TN > 1u) {
                accumulate(&g, &u, 1u, xv, c1, sub);
            }
            if (TN > 2u) {
                accumulate(&g, &u, 2u, xv, c2, sub);
            }
            if (TN > 3u) {
                accumulate(&g, &u, 3u, xv, c3, sub);
            }
            if (TN > 4u) {
                accumulate(&g_hi, &u_hi, 0u, xv, c4, sub);
            }
            if (TN > 5u) {
                accumulate(&g_hi, &u_hi, 1u, xv, c5, sub);
            }
            if (TN > 6u) {
                accumulate(&g_hi, &u_hi, 2u, xv, c6, sub);
            }
            if (TN > 7u) {
                accumulate(&g_hi, &u_hi, 3u, xv, c7, sub);
            }
        }
    }
    return Acc(g, u, g_hi, u_hi);
}

// Gate (or only) accumulator of column col0 + j.
fn gate_of(a: Acc, j: u32) -> f32 {
    return select(a.g_hi[j % 4u], a.g[j % 4u], j < 4u);
}

// Up accumulator of column col0 + j.
fn up_of(a: Acc, j: u32) -> f32 {
    return select(a.u_hi[j % 4u], a.u[j % 4u], j < 4u);
}
