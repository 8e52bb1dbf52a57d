//! The combine (each token's weighted expert rows plus a gated shared expert) and the decode
//! down projection fused into it, against the sum written out from `reference::linear`.

use moe_gpu::kernels::combine::{Combine, CombineBuffers, DownCombine, DownCombineBuffers};
use moe_gpu::kernels::matmul::{
    ExpertFormat, Matmul, MatmulBuffers, MatmulSpec, Tiling, WeightFormat,
};
use moe_gpu::kernels::permute::expert_sorted_rows;
use moe_gpu::reference::linear;
use moe_gpu::synthetic::Rng;

use super::matmul::{Routing, edge_routings, real_routings};
use super::{KERNEL_TOL, Measured, SCALE, Table, real_models};
use crate::common::matmul::{limit_for_parts, split_weights};
use crate::common::{ctx, run_pass};

/// One routing's combine inputs: the sorted rows' pair ids, each pair's row, routing
/// weights, the shared expert's output and gate.
struct Inputs {
    tokens: usize,
    pos: Vec<u32>,
    rows: Vec<u32>,
    weights: Vec<f32>,
    shared: Vec<f32>,
    gate: Vec<f32>,
}

fn inputs(r: &Routing, hidden: usize, rng: &mut Rng) -> Inputs {
    let tokens = r.ids.len() / r.k;
    let (rows, _) = expert_sorted_rows(&r.ids, r.experts);
    let mut pos = vec![moe_gpu::kernels::INVALID; r.ids.len()];
    for (row, &pair) in rows.iter().enumerate() {
        pos[pair as usize] = row as u32;
    }
    Inputs {
        tokens,
        pos,
        rows,
        weights: (0..r.ids.len()).map(|_| rng.uniform() as f32).collect(),
        shared: rng.normals(tokens * hidden, 1.0),
        gate: (0..tokens).map(|_| rng.uniform() as f32).collect(),
    }
}

/// out[t] = Σⱼ w[t, j] · y(t, j) + gate[t] · shared[t], in f64; `y(pair, row)` gives the
/// expert output row of a pair.
fn combined(
    inp: &Inputs,
    k: usize,
    hidden: usize,
    shared: (bool, bool),
    y: impl Fn(usize, usize) -> Vec<f32>,
) -> Vec<f32> {
    let mut out = vec![0.0f64; inp.tokens * hidden];
    for t in 0..inp.tokens {
        for p in t * k..(t + 1) * k {
            let row = y(p, inp.pos[p] as usize);
            for c in 0..hidden {
                out[t * hidden + c] += inp.weights[p] as f64 * row[c] as f64;
            }
        }
        if shared.0 {
            let g = if shared.1 { inp.gate[t] as f64 } else { 1.0 };
            for c in 0..hidden {
                out[t * hidden + c] += g * inp.shared[t * hidden + c] as f64;
            }
        }
    }
    out.iter().map(|v| *v as f32).collect()
}

/// The edge routings (all experts resident) at hidden 37, then the real models' at their
/// scaled hidden size, with (shared expert, gate) off, on, and on with a gate.
fn cases() -> Vec<(Routing, usize, usize, (bool, bool))> {
    let mut v = Vec::new();
    let variants = [(false, false), (true, false), (true, true)];
    for (i, r) in edge_routings()
        .into_iter()
        .filter(|r| r.missing.is_none())
        .enumerate()
    {
        v.push((r, 37, 29, variants[i % 3]));
    }
    for (i, (r, m)) in real_routings(7, 17)
        .into_iter()
        .zip(real_models())
        .enumerate()
    {
        let s = m.layer_spec(SCALE, m.top_k, ExpertFormat::uniform(WeightFormat::F32));
        v.push((r, s.hidden, s.inter, variants[i % 3]));
    }
    v
}

fn label(r: &Routing, hidden: usize, shared: (bool, bool)) -> String {
    let sh = match shared {
        (false, _) => "",
        (true, false) => " +shared",
        (true, true) => " +gated shared",
    };
    format!("{} h={hidden}{sh}", r.label)
}

pub fn combine(t: &mut Table) {
    for (i, (r, hidden, _, shared)) in cases().into_iter().enumerate() {
        t.case("combine", &label(&r, hidden, shared), "-", || {
            let ctx = ctx();
            let mut rng = Rng::new(4000 + i as u64);
            let inp = inputs(&r, hidden, &mut rng);
            let y = rng.normals(r.ids.len() * hidden, 1.0);
            let out = ctx
                .storage("out", (inp.tokens * hidden * 4) as u64)
                .unwrap();
            let (w, pos) = (&inp.weights, &inp.pos);
            let c = Combine::new(
                ctx,
                hidden,
                r.k,
                shared.0,
                shared.1,
                CombineBuffers {
                    weights: &ctx.storage_with("w", w).unwrap(),
                    pos: &ctx.storage_with("pos", pos).unwrap(),
                    y: &ctx.storage_with("y", &y).unwrap(),
                    shared_out: &ctx.storage_with("shared", &inp.shared).unwrap(),
                    shared_gate: &ctx.storage_with("gate", &inp.gate).unwrap(),
                    out: &out,
                },
            )
            .unwrap();
            run_pass(ctx, |pass| c.encode(ctx, pass, inp.tokens));
            let got = ctx.read_back(&out, inp.tokens * hidden).unwrap();
            let want = combined(&inp, r.k, hidden, shared, |_, row| {
                y[row * hidden..(row + 1) * hidden].to_vec()
            });
            Measured::max_scaled(&got, &want, KERNEL_TOL)
        });
    }
}

/// The fused decode down projection + combine: every format but int8 (the formats the layer
/// fuses; int8's per-row scales need the down GEMM and the combine apart).
pub fn down_combine(t: &mut Table) {
    let fused = WeightFormat::ALL
        .into_iter()
        .filter(|&f| f != WeightFormat::Int8);
    for format in fused {
        for (i, (r, hidden, inter, shared)) in cases().into_iter().enumerate() {
            t.case(
                "down_combine",
                &label(&r, hidden, shared),
                format.name(),
                || {
                    let ctx = ctx();
                    let mut rng = Rng::new(5000 + i as u64);
                    let inp = inputs(&r, hidden, &mut rng);
                    let pairs = r.ids.len();
                    let x = rng.normals(pairs * inter, 1.0);
                    let raw: Vec<Vec<f32>> = (0..r.experts)
                        .map(|_| rng.normals(hidden * inter, 1.0 / (inter as f32).sqrt()))
                        .collect();
                    let bias = rng.normals(r.experts * hidden, 0.5);
                    let table: Vec<u32> = (0..r.experts as u32).collect();
                    let buf = |label, data: &[u32]| ctx.storage_with(label, data).unwrap();
                    let fbuf = |label, data: &[f32]| ctx.storage_with(label, data).unwrap();
                    let spec = MatmulSpec {
                        bias: true,
                        format,
                        grouped: true,
                        tiling: Tiling::DECODE,
                        ..MatmulSpec::dense(hidden, inter)
                    };
                    // Odd cases split the down weights by rows into three parts.
                    let parts = if i % 2 == 1 { 3 } else { 1 };
                    let limit = limit_for_parts(&spec, r.experts, parts);
                    let slices: Vec<&[f32]> = raw.iter().map(|w| &w[..]).collect();
                    let wb = split_weights(ctx, &spec, &slices, limit);
                    let (xb, bb) = (fbuf("x", &x), fbuf("bias", &bias));
                    let (slots, rows) = (buf("slots", &table), buf("rows", &inp.rows));
                    let (zero, ids) = (buf("tiles", &[0; 4]), buf("ids", &r.ids));
                    let y = ctx.storage("y", (pairs * hidden * 4) as u64).unwrap();
                    let out = ctx
                        .storage("out", (inp.tokens * hidden * 4) as u64)
                        .unwrap();
                    let down_buffers = MatmulBuffers {
                        x: &xb,
                        w: &wb,
                        bias: &bb,
                        slots: &slots,
                        tiles: &zero,
                        rows: &rows,
                        out: &y,
                    };
                    let down = Matmul::new(ctx, spec, inter, hidden, r.k, down_buffers).unwrap();
                    let fused = DownCombine::new(
                        ctx,
                        &down,
                        hidden,
                        shared.0,
                        shared.1,
                        DownCombineBuffers {
                            down: down_buffers,
                            ids: &ids,
                            combine: CombineBuffers {
                                weights: &fbuf("w", &inp.weights),
                                pos: &buf("pos", &inp.pos),
                                y: &y,
                                shared_out: &fbuf("shared", &inp.shared),
                                shared_gate: &fbuf("gate", &inp.gate),
                                out: &out,
                            },
                        },
                    )
                    .unwrap();
                    run_pass(ctx, |pass| fused.encode(ctx, pass, inp.tokens));
                    let got = ctx.read_back(&out, inp.tokens * hidden).unwrap();
                    let deq: Vec<Vec<f32>> = raw
                        .iter()
                        .map(|w| format.dequantize(w, hidden, inter))
                        .collect();
                    let want = combined(&inp, r.k, hidden, shared, |p, row| {
                        let e = r.ids[p] as usize;
                        let xr = &x[row * inter..(row + 1) * inter];
                        let b = &bias[e * hidden..(e + 1) * hidden];
                        linear(xr, 1, inter, &deq[e], hidden, Some(b))
                    });
                    Measured::max_scaled(&got, &want, KERNEL_TOL)
                },
            );
        }
    }
}
