//! The decoder kernels against `src/reference`: RMSNorm (with and without the fused residual
//! add, per-head rows, strided rows, a row range) and rotary copy (halves and interleaved
//! pairs, partial rotation, broadcast heads, cache rows). Attention has its own sweep in
//! tests/kernels/kernel_attention.rs. Elementwise results within 1e-5 scaled by max(1, |ref|).

use std::sync::Arc;

use moe_gpu::kernels::norm::{NormBuffers, NormShape, RmsNorm};
use moe_gpu::kernels::rope::{Rope, RopeBuffers, RopeLayout};
use moe_gpu::kernels::rows::RowTable;
use moe_gpu::reference::{rms_norm, rotate};
use moe_gpu::synthetic::Rng;

use crate::common;

const TOL: f32 = 1e-5;

#[test]
fn rms_norm_matches_reference() {
    let ctx = common::ctx();
    let mut rng = Rng::new(3);
    for width in [1, 7, 64, 97] {
        for rows_per_token in [1, 3] {
            for (tokens, first, count) in [(1, 0, 1), (5, 0, 5), (5, 4, 1), (6, 2, 3)] {
                for add in [false, true] {
                    let pad = 2; // extra columns per row: strided input
                    let in_stride = width + pad;
                    let rows = tokens * rows_per_token;
                    let x = rng.normals(rows * in_stride, 1.5);
                    let delta = rng.normals(rows * in_stride, 1.0);
                    let w = rng.normals(width, 1.0);
                    let shape = NormShape {
                        width,
                        rows_per_token,
                        in_stride,
                        out_stride: width,
                    };
                    let xb = ctx.storage_with("x", &x).unwrap();
                    let db = ctx.storage_with("delta", &delta).unwrap();
                    let wb = ctx.storage_with("w", &w).unwrap();
                    let out = ctx.storage("out", (rows * width * 4) as u64).unwrap();
                    let norm = RmsNorm::new(
                        ctx,
                        shape,
                        1e-5,
                        add,
                        NormBuffers {
                            delta: &db,
                            x: &xb,
                            weight: &wb,
                            out: &out,
                        },
                    )
                    .unwrap();
                    common::run_pass(ctx, |pass| norm.encode_range(ctx, pass, first, count));

                    let r0 = first * rows_per_token;
                    let r1 = (first + count) * rows_per_token;
                    let mut residual = x.clone();
                    if add {
                        for r in r0..r1 {
                            for c in 0..width {
                                residual[r * in_stride + c] += delta[r * in_stride + c];
                            }
                        }
                    }
                    let input: Vec<f32> = (r0..r1)
                        .flat_map(|r| residual[r * in_stride..][..width].to_vec())
                        .collect();
                    let want = rms_norm(&input, width, &w, 1e-5);
                    let got = ctx.read_back::<f32>(&out, want.len()).unwrap();
                    let what = format!(
                        "width {width} × {rows_per_token}/token, tokens {first}+{count}, add {add}"
                    );
                    common::assert_close(&what, &got, &want, TOL);
                    let stream = ctx.read_back::<f32>(&xb, x.len()).unwrap();
                    common::assert_close(&format!("{what} residual"), &stream, &residual, TOL);
                }
            }
        }
    }
}

/// (cos, sin) table of `positions` × `half` random angles.
fn angle_table(rng: &mut Rng, positions: usize, half: usize) -> Vec<[f32; 2]> {
    (0..positions * half)
        .map(|_| {
            let a = (rng.uniform() * 20.0 - 10.0) as f32;
            [a.cos() * 1.2, a.sin() * 1.2]
        })
        .collect()
}

#[test]
fn rope_copy_matches_reference() {
    let ctx = common::ctx();
    let mut rng = Rng::new(4);
    // (heads, dim, rot_start, rot_dim, src_head_stride: None = dim, Some(0) = broadcast)
    let cases = [
        (1, 2, 0, 2, None),
        (3, 6, 0, 6, None),
        (4, 16, 0, 16, None),
        (5, 24, 16, 8, None),    // MLA q: nope then rope columns
        (3, 12, 0, 12, Some(0)), // MLA shared rope key broadcast to every head
        (2, 10, 0, 0, None),     // plain copy (values into the cache)
    ];
    for (heads, dim, rot_start, rot_dim, head_stride) in cases {
        for interleave in [false, true] {
            for (tokens, pos0, at_position) in [(1, 0, false), (4, 3, true), (1, 9, true)] {
                let src_head_stride = head_stride.unwrap_or(dim);
                let src_offset = 3;
                let src_stride = src_offset + heads * src_head_stride + dim + 1;
                let dst_head_stride = dim + 1;
                let dst_offset = 2;
                let dst_stride = dst_offset + heads * dst_head_stride;
                let half = rot_dim / 2;
                let positions = pos0 + tokens;
                let table = angle_table(&mut rng, positions, half.max(1));
                let src = rng.normals(tokens * src_stride, 1.0);
                let dst_rows = if at_position { positions } else { tokens };
                let dst0 = rng.normals(dst_rows * dst_stride, 1.0);
                let layout = RopeLayout {
                    heads,
                    dim,
                    rot_start,
                    rot_dim,
                    src_stride,
                    src_head_stride,
                    src_offset,
                    dst_stride,
                    dst_head_stride,
                    dst_offset,
                    dst_at_position: at_position,
                    interleave,
                };
                let sb = ctx.storage_with("src", &src).unwrap();
                let tb = ctx
                    .storage_with("table", bytemuck::cast_slice::<[f32; 2], f32>(&table))
                    .unwrap();
                let db = ctx.storage_with("dst", &dst0).unwrap();
                let rope = Rope::new(
                    ctx,
                    layout,
                    RopeBuffers {
                        src: &sb,
                        table: &tb,
                        dst: &db,
                        rows: &Arc::new(RowTable::new(ctx, tokens).unwrap()),
                    },
                )
                .unwrap();
                common::run_pass(ctx, |pass| rope.encode(ctx, pass, tokens, pos0).unwrap());

                let mut want = dst0.clone();
                for t in 0..tokens {
                    let p = pos0 + t;
                    let cos: Vec<f32> = (0..half).map(|j| table[p * half.max(1) + j][0]).collect();
                    let sin: Vec<f32> = (0..half).map(|j| table[p * half.max(1) + j][1]).collect();
                    let row = if at_position { p } else { t };
                    for h in 0..heads {
                        let s = t * src_stride + src_offset + h * src_head_stride;
                        let head = &src[s..s + dim];
                        let mut v = head.to_vec();
                        let rotated = rotate(
                            &head[rot_start..rot_start + rot_dim],
                            &cos,
                            &sin,
                            interleave,
                        );
                        v[rot_start..rot_start + rot_dim].copy_from_slice(&rotated);
                        let d = row * dst_stride + dst_offset + h * dst_head_stride;
                        want[d..d + dim].copy_from_slice(&v);
                    }
                }
                let got = ctx.read_back::<f32>(&db, want.len()).unwrap();
                let what = format!(
                    "heads {heads} dim {dim} rot {rot_start}+{rot_dim} interleave {interleave} \
                     tokens {tokens} at {pos0} (cache rows {at_position})"
                );
                common::assert_close(&what, &got, &want, TOL);
            }
        }
    }
}
