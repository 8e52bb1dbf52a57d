//! The decoder kernels: RMSNorm (with the fused residual add), rotary copy and attention,
//! elementwise within 1e-5 of max(1, |ref|) (tests/kernels/kernel_decoder.rs,
//! kernel_attention.rs). No weight formats: the format column is "-".

use std::sync::Arc;

use moe_gpu::kernels::attention::SplitKv;
use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::kernels::norm::{NormBuffers, NormShape, RmsNorm};
use moe_gpu::kernels::rope::{Rope, RopeBuffers, RopeLayout};
use moe_gpu::kernels::rows::RowTable;
use moe_gpu::reference::{rms_norm as reference_rms_norm, rotate};
use moe_gpu::synthetic::Rng;

use super::{KERNEL_TOL, Measured, SCALE, Table, model_label, real_models, scaled_err};
use crate::common::attention::{self, Case};
use crate::common::{ctx, run_pass};

pub fn rms_norm_case(width: usize, tokens: usize, add: bool, seed: u64) -> Measured {
    let ctx = ctx();
    let mut rng = Rng::new(seed);
    let x = rng.normals(tokens * width, 1.5);
    let delta = rng.normals(tokens * width, 1.0);
    let w = rng.normals(width, 1.0);
    let xb = ctx.storage_with("x", &x).unwrap();
    let out = ctx.storage("out", (tokens * width * 4) as u64).unwrap();
    let norm = RmsNorm::new(
        ctx,
        NormShape::rows(width),
        1e-5,
        add,
        NormBuffers {
            delta: &ctx.storage_with("delta", &delta).unwrap(),
            x: &xb,
            weight: &ctx.storage_with("w", &w).unwrap(),
            out: &out,
        },
    )
    .unwrap();
    run_pass(ctx, |pass| norm.encode(ctx, pass, tokens));
    let residual: Vec<f32> = if add {
        x.iter().zip(&delta).map(|(a, b)| a + b).collect()
    } else {
        x
    };
    let want = reference_rms_norm(&residual, width, &w, 1e-5);
    let got = ctx.read_back::<f32>(&out, want.len()).unwrap();
    let stream = ctx.read_back::<f32>(&xb, residual.len()).unwrap();
    // The output and the residual stream it updates in place, whichever is further off.
    let err = scaled_err(&got, &want).max(scaled_err(&stream, &residual));
    Measured::new("max_scaled", err, KERNEL_TOL)
}

pub fn rms_norm(t: &mut Table) {
    let mut shapes = vec![
        ("w=1 T=1".to_string(), 1, 1, false),
        ("w=7 T=3 +residual".to_string(), 7, 3, true),
        ("w=97 T=33".to_string(), 97, 33, false),
    ];
    for m in real_models() {
        let h = m
            .layer_spec(SCALE, m.top_k, ExpertFormat::uniform(WeightFormat::F32))
            .hidden;
        shapes.push((
            format!("T=7 {} w={h} +residual", model_label(&m)),
            h,
            7,
            true,
        ));
    }
    for (i, (label, width, tokens, add)) in shapes.into_iter().enumerate() {
        t.case("rmsnorm", &label, "-", || {
            rms_norm_case(width, tokens, add, 6000 + i as u64)
        });
    }
}

/// Rotates columns rot_start..rot_start + rot_dim of each head of `tokens` tokens at
/// positions pos0.. with random angles (a contiguous copy otherwise).
fn rope_case(
    (heads, dim, rot_start, rot_dim): (usize, usize, usize, usize),
    (tokens, pos0): (usize, usize),
    interleave: bool,
    seed: u64,
) -> Measured {
    let ctx = ctx();
    let mut rng = Rng::new(seed);
    let half = (rot_dim / 2).max(1);
    let table: Vec<f32> = (0..(pos0 + tokens) * half)
        .flat_map(|_| {
            let a = (rng.uniform() * 20.0 - 10.0) as f32;
            [a.cos(), a.sin()]
        })
        .collect();
    let src = rng.normals(tokens * heads * dim, 1.0);
    let dst = ctx
        .storage("dst", (tokens * heads * dim * 4) as u64)
        .unwrap();
    let layout = RopeLayout {
        heads,
        dim,
        rot_start,
        rot_dim,
        src_stride: heads * dim,
        src_head_stride: dim,
        dst_stride: heads * dim,
        dst_head_stride: dim,
        interleave,
        ..Default::default()
    };
    let rope = Rope::new(
        ctx,
        layout,
        RopeBuffers {
            src: &ctx.storage_with("src", &src).unwrap(),
            table: &ctx.storage_with("table", &table).unwrap(),
            dst: &dst,
            rows: &Arc::new(RowTable::new(ctx, tokens).unwrap()),
        },
    )
    .unwrap();
    run_pass(ctx, |pass| rope.encode(ctx, pass, tokens, pos0).unwrap());
    let mut want = src.clone();
    for tk in 0..tokens {
        let p = (pos0 + tk) * half;
        let cos: Vec<f32> = (0..rot_dim / 2).map(|j| table[2 * (p + j)]).collect();
        let sin: Vec<f32> = (0..rot_dim / 2).map(|j| table[2 * (p + j) + 1]).collect();
        for h in 0..heads {
            let s = (tk * heads + h) * dim + rot_start;
            let rotated = rotate(&src[s..s + rot_dim], &cos, &sin, interleave);
            want[s..s + rot_dim].copy_from_slice(&rotated);
        }
    }
    let got = ctx.read_back::<f32>(&dst, want.len()).unwrap();
    Measured::max_scaled(&got, &want, KERNEL_TOL)
}

pub fn rope(t: &mut Table) {
    // (heads, dim, rot_start, rot_dim), (tokens, pos0)
    let shapes = [
        ((1, 2, 0, 2), (1, 0)),
        ((3, 6, 0, 6), (4, 3)),
        ((5, 24, 16, 8), (7, 5)),
        ((8, 128, 0, 128), (1, 300)),
        ((2, 10, 0, 0), (3, 0)),
    ];
    for (i, (head, step)) in shapes.into_iter().enumerate() {
        for interleave in [false, true] {
            let (h, d, r0, rd) = head;
            let label = format!(
                "heads={h} dim={d} rot={r0}+{rd} T={} at {} {}",
                step.0,
                step.1,
                if interleave { "pairs" } else { "halves" }
            );
            t.case("rope", &label, "-", || {
                rope_case(head, step, interleave, 7000 + i as u64)
            });
        }
    }
}

pub fn attention(t: &mut Table) {
    let case = |heads, kv_heads, qk_dim, v_dim, tokens, pos0, window, sinks| Case {
        heads,
        kv_heads,
        qk_dim,
        v_dim,
        tokens,
        pos0,
        window,
        sinks,
        pass_keys: None,
    };
    let cases = [
        case(1, 1, 8, 8, 1, 0, None, false),
        case(4, 2, 12, 12, 7, 0, None, false),
        case(3, 3, 7, 5, 3, 5, Some(3), true),
        case(5, 1, 16, 20, 1, 700, None, false),
        case(2, 1, 40, 300, 4, 129, None, true),
        case(8, 2, 64, 64, 1, 255, Some(128), true),
    ];
    let mut rng = Rng::new(8000);
    for c in cases {
        let label = format!(
            "h={}/{} d={}/{} T={} at {} win={:?}{}",
            c.heads,
            c.kv_heads,
            c.qk_dim,
            c.v_dim,
            c.tokens,
            c.pos0,
            c.window,
            if c.sinks { " sinks" } else { "" }
        );
        t.case("attention", &label, "-", || {
            let s = attention::setup(&mut rng, c, SplitKv::default());
            let split = s.attention.split_for(c.tokens, c.pos0);
            let got = attention::run(&s, &c, split);
            Measured::max_scaled(&got, &s.want, attention::TOL as f64)
        });
    }
}
