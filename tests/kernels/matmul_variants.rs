//! Every matmul variant and tiling the autotuner may choose (and the fixed defaults) against
//! `reference::linear`: dense and grouped (each tiling with its tail pipeline, where it has
//! one, over experts' last tiles of few rows), with the edge cases of the runtime (1 row, fewer
//! rows than a tile, experts with no rows, every row on one expert, a non-resident expert, odd
//! k and n, strides that do and do not allow vec4 loads of x), in every weight format. Weights
//! in f16, bf16, int8, int4 and mxfp4 are compared with a reference that uses the same rounded
//! or dequantised weights, so the tolerance (1e-5 of max(1, |ref|)) measures the kernel, not
//! the storage format. The int4 and mxfp4 cases have a k with a partial last group of 32.

use moe_gpu::Context;
use moe_gpu::kernels::INVALID;
use moe_gpu::kernels::grouped_matmul::GroupedMatmul;
use moe_gpu::kernels::matmul::{Glu, Matmul, MatmulBuffers, MatmulSpec, Tiling, WeightFormat};
use moe_gpu::kernels::permute::{TileLists, expert_sorted_rows};
use moe_gpu::kernels::row_split::SplitWeights;
use moe_gpu::reference::{linear, linear::activate};
use moe_gpu::synthetic::Rng;

use crate::common;
use crate::common::matmul::{all_tilings, limit_for_parts, split_weights};

pub(crate) const TOL: f32 = 1e-5;

#[derive(Clone, Copy)]
pub(crate) struct Case {
    pub n: usize,
    pub k: usize,
    pub glu: Glu,
    pub bias: bool,
    pub format: WeightFormat,
    /// x row stride; a multiple of 4 turns on vec4 loads of x.
    pub x_stride: usize,
}

/// Per-slot weights as f32 [slots][rows, k]: as generated (`raw`, what is packed) and as the
/// format holds them (`w`, what the reference uses); and biases.
struct Weights {
    raw: Vec<Vec<f32>>,
    w: Vec<Vec<f32>>,
    b: Vec<Vec<f32>>,
}

fn weights(rng: &mut Rng, c: &Case, slots: usize) -> Weights {
    let rows = c.n * c.glu.rows_per_output();
    let raw: Vec<Vec<f32>> = (0..slots)
        .map(|_| rng.normals(rows * c.k, 1.0 / (c.k as f32).sqrt()))
        .collect();
    let w = raw
        .iter()
        .map(|r| c.format.dequantize(r, rows, c.k))
        .collect();
    let b = (0..slots)
        .map(|_| {
            if c.bias {
                rng.normals(rows, 0.5)
            } else {
                vec![0.0; rows]
            }
        })
        .collect();
    Weights { raw, w, b }
}

/// What the kernel should write for x row `xr` with slot weights `s`.
fn expected_row(c: &Case, wt: &Weights, s: usize, xr: &[f32]) -> Vec<f32> {
    let rows = c.n * c.glu.rows_per_output();
    let y = linear(xr, 1, c.k, &wt.w[s], rows, Some(&wt.b[s]));
    if c.glu == Glu::None {
        return y;
    }
    (0..c.n)
        .map(|j| activate(c.glu, y[j] as f64, y[c.n + j] as f64) as f32)
        .collect()
}

/// The packed weights and the biases. Cases of odd n split the weights by rows into three
/// parts (`kernels::row_split`), so every sweep covers split weights.
fn upload_weights(ctx: &Context, c: &Case, wt: &Weights) -> (SplitWeights, wgpu::Buffer) {
    let spec = spec(c, Tiling::PREFILL, false, false);
    let slots = wt.raw.len();
    let parts = if c.n % 2 == 1 { 3 } else { 1 };
    let raw: Vec<&[f32]> = wt.raw.iter().map(|w| &w[..]).collect();
    let w = split_weights(ctx, &spec, &raw, limit_for_parts(&spec, slots, parts));
    let bias: Vec<f32> = wt.b.concat();
    (w, ctx.storage_with("bias", &bias).unwrap())
}

fn spec(c: &Case, tiling: Tiling, grouped: bool, gather: bool) -> MatmulSpec {
    MatmulSpec {
        n: c.n,
        k: c.k,
        glu: c.glu,
        bias: c.bias,
        format: c.format,
        grouped,
        gather,
        tail: false,
        tiling,
    }
}

pub(crate) fn run_dense(ctx: &Context, tiling: Tiling, c: &Case, m: usize, seed: u64) {
    let mut rng = Rng::new(seed);
    let wt = weights(&mut rng, c, 1);
    let x = rng.normals(m * c.x_stride, 1.0);
    let (w, b) = upload_weights(ctx, c, &wt);
    let xb = ctx.storage_with("x", &x).unwrap();
    let out = ctx.storage("out", (m * c.n * 4) as u64).unwrap();
    let zero = ctx.storage_with("slot 0", &[0u32]).unwrap();
    let mm = Matmul::new(
        ctx,
        spec(c, tiling, false, false),
        c.x_stride,
        c.n,
        1,
        MatmulBuffers {
            x: &xb,
            w: &w,
            bias: &b,
            slots: &zero,
            tiles: &zero,
            rows: &zero,
            out: &out,
        },
    )
    .unwrap();
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        mm.encode(ctx, &mut pass, m);
    }
    ctx.submit([enc.finish()]).unwrap();
    let got: Vec<f32> = ctx.read_back(&out, m * c.n).unwrap();
    let want: Vec<f32> = (0..m)
        .flat_map(|r| expected_row(c, &wt, 0, &x[r * c.x_stride..r * c.x_stride + c.k]))
        .collect();
    common::assert_close(
        &format!(
            "{tiling:?} dense m={m} n={} k={} {:?} {:?}",
            c.n, c.k, c.glu, c.format
        ),
        &got,
        &want,
        TOL,
    );
}

/// What a grouped GEMM wrote for the rows of resident experts, what the reference gives for
/// them, and whether the rows of the non-resident expert stayed untouched (NaN sentinel).
pub(crate) struct GroupedRun {
    pub got: Vec<f32>,
    pub want: Vec<f32>,
    pub missing_untouched: bool,
}

/// Grouped over `experts` experts, `tokens` tokens with `top_k` picks each given by `ids`.
/// Expert `missing` (if any) is not resident: its rows must stay untouched. `gather`: x rows
/// are tokens gathered through the permutation (gate/up); otherwise x holds one row per sorted
/// pair (down).
#[allow(clippy::too_many_arguments)]
pub(crate) fn grouped_outputs(
    ctx: &Context,
    tiling: Tiling,
    c: &Case,
    experts: usize,
    top_k: usize,
    ids: &[u32],
    missing: Option<usize>,
    gather: bool,
    seed: u64,
) -> GroupedRun {
    let mut rng = Rng::new(seed);
    let pairs = ids.len();
    let tokens = pairs / top_k;
    // Slot of expert e is experts-1-e, so the table's indirection is exercised.
    let wt = weights(&mut rng, c, experts);
    let slot = |e: usize| (Some(e) != missing).then_some((experts - 1 - e) as u32);
    let table: Vec<u32> = (0..experts).map(|e| slot(e).unwrap_or(INVALID)).collect();
    let x_rows = if gather { tokens } else { pairs };
    let x = rng.normals(x_rows * c.x_stride, 1.0);
    // Expert-sorted rows and the tile lists (full, and tail where the tiling has a tail), as
    // the permutation kernels would produce them.
    let (rows, counts) = expert_sorted_rows(ids, experts);
    let tiles = TileLists::new(&counts, tiling.block_m(), tiling.tail_m());
    let (w, b) = upload_weights(ctx, c, &wt);
    let xb = ctx.storage_with("x", &x).unwrap();
    let sentinel = vec![f32::NAN; pairs * c.n];
    let out = ctx.storage_with("out", &sentinel).unwrap();
    let slots = ctx.storage_with("slots", &table).unwrap();
    let tiles_b = ctx.storage_with("tiles", &tiles.buffer_words()).unwrap();
    let rows_b = ctx.storage_with("rows", &rows).unwrap();
    let mm = GroupedMatmul::new(
        ctx,
        spec(c, tiling, true, gather),
        c.x_stride,
        c.n,
        top_k,
        MatmulBuffers {
            x: &xb,
            w: &w,
            bias: &b,
            slots: &slots,
            tiles: &tiles_b,
            rows: &rows_b,
            out: &out,
        },
    )
    .unwrap();
    let mut enc = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = enc.begin_compute_pass(&Default::default());
        mm.encode_tiles(
            &mut pass,
            (tiles.full.len() as u32, tiles.tail.len() as u32),
        );
    }
    ctx.submit([enc.finish()]).unwrap();
    let all: Vec<f32> = ctx.read_back(&out, pairs * c.n).unwrap();
    let mut run = GroupedRun {
        got: Vec::new(),
        want: Vec::new(),
        missing_untouched: true,
    };
    for (r, &pair) in rows.iter().enumerate() {
        let e = ids[pair as usize] as usize;
        let row = &all[r * c.n..(r + 1) * c.n];
        if Some(e) == missing {
            run.missing_untouched &= row.iter().all(|v| v.is_nan());
            continue;
        }
        let xi = if gather { pair as usize / top_k } else { r };
        let xr = &x[xi * c.x_stride..xi * c.x_stride + c.k];
        run.got.extend_from_slice(row);
        run.want.extend(expected_row(c, &wt, experts - 1 - e, xr));
    }
    run
}

#[allow(clippy::too_many_arguments)]
pub(crate) fn run_grouped(
    ctx: &Context,
    tiling: Tiling,
    c: &Case,
    experts: usize,
    top_k: usize,
    ids: &[u32],
    missing: Option<usize>,
    seed: u64,
) {
    let run = grouped_outputs(ctx, tiling, c, experts, top_k, ids, missing, true, seed);
    let what = format!(
        "{tiling:?} grouped tokens={} k={top_k} experts={experts} n={} k={} {:?} {:?}",
        ids.len() / top_k,
        c.n,
        c.k,
        c.glu,
        c.format
    );
    assert!(
        run.missing_untouched,
        "{what}: row of a missing expert written"
    );
    common::assert_close(&what, &run.got, &run.want, TOL);
}

/// Six pipelines per tiling: plain with bias in f32, bf16 and int8 (a stride that forbids vec4
/// x loads), SiLU-gated in f16, int4 and mxfp4 (a vec4-aligned stride wider than k); each at odd
/// k and n (int4, mxfp4: two full groups of 32 and a partial one) and at k = 1; and GGUF's
/// Q4_K (SiLU, three super-blocks, the last partial), Q6_K and Q8_0 (plain, several blocks).
fn dense_cases() -> Vec<Case> {
    use WeightFormat::{Bf16, F16, F32, Int4, Int8, Mxfp4, Q4K, Q6K, Q8_0};
    let plain = |format, n, k| Case {
        n,
        k,
        glu: Glu::None,
        bias: true,
        format,
        x_stride: k,
    };
    let gated = |format, n, k| Case {
        n,
        k,
        glu: Glu::Silu,
        bias: false,
        format,
        x_stride: k.div_ceil(4) * 4 + 4,
    };
    vec![
        plain(F32, 29, 37),
        plain(F32, 5, 1),
        gated(F16, 70, 45),
        gated(F16, 3, 1),
        plain(Int8, 29, 37),
        plain(Int8, 5, 1),
        gated(Int4, 70, 77),
        gated(Int4, 3, 1),
        plain(Bf16, 29, 37),
        plain(Bf16, 5, 1),
        gated(Mxfp4, 70, 77),
        gated(Mxfp4, 3, 1),
        gated(Q4K, 9, 600),
        plain(Q6K, 13, 520),
        plain(Q8_0, 29, 100),
    ]
}

#[test]
fn every_tiling_matches_the_reference_on_dense_matmuls() {
    let ctx = common::ctx();
    for tiling in all_tilings() {
        for (i, c) in dense_cases().iter().enumerate() {
            for m in [1, 3, 33, 130] {
                run_dense(ctx, tiling, c, m, 100 + i as u64 * 7 + m as u64);
            }
        }
    }
}

#[test]
fn every_tiling_matches_the_reference_on_grouped_matmuls() {
    let ctx = common::ctx();
    let clamped_f32 = Case {
        n: 29,
        k: 37,
        glu: Glu::ClampedSwiglu {
            limit: 7.0,
            alpha: 1.702,
        },
        bias: true,
        format: WeightFormat::F32,
        x_stride: 37,
    };
    let plain_f16 = Case {
        n: 70,
        k: 45,
        glu: Glu::None,
        bias: true,
        format: WeightFormat::F16,
        x_stride: 48,
    };
    let clamped_int4 = Case {
        n: 29,
        k: 45,
        format: WeightFormat::Int4,
        x_stride: 45,
        ..clamped_f32
    };
    let plain_int8 = Case {
        n: 70,
        k: 37,
        format: WeightFormat::Int8,
        x_stride: 40,
        ..plain_f16
    };
    // mxfp4 and bf16 in the shapes of the int4 and f16 cases.
    let [mxfp4, bf16] = [
        (WeightFormat::Mxfp4, clamped_int4),
        (WeightFormat::Bf16, plain_f16),
    ]
    .map(|(format, c)| Case { format, ..c });
    let mut rng = Rng::new(5);
    let experts = 6;
    // 33 tokens with k = 2 distinct picks, but experts 1 and 4 never picked (empty experts).
    let spread: Vec<u32> = (0..33)
        .flat_map(|_| {
            let a = [0u32, 2, 3, 5][rng.below(4)];
            let b = [0u32, 2, 3, 5]
                .iter()
                .copied()
                .find(|&e| e != a)
                .unwrap_or(0);
            [a, b]
        })
        .collect();
    for tiling in all_tilings() {
        for c in [
            &clamped_f32,
            &plain_f16,
            &clamped_int4,
            &plain_int8,
            &mxfp4,
            &bf16,
        ] {
            // one token
            run_grouped(ctx, tiling, c, experts, 2, &[3, 1], None, 1);
            // fewer tokens than a tile, one pick each
            run_grouped(ctx, tiling, c, experts, 1, &[4, 4, 0], None, 2);
            // every token on one expert
            run_grouped(ctx, tiling, c, experts, 1, &[2; 70], None, 3);
            // a spread with empty experts, and one expert not resident
            run_grouped(ctx, tiling, c, experts, 2, &spread, None, 4);
            run_grouped(ctx, tiling, c, experts, 2, &spread, Some(3), 5);
        }
    }
}
