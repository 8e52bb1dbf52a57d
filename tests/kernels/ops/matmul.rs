//! The matmuls: dense (every tiling), the decode matvec (`DenseMatmul` at 1 and 2 rows) and
//! the grouped gate/up (GLU, rows gathered through the permutation) and down GEMMs, each in
//! every weight format, against `reference::linear` on the weights as the format stores them.

use moe_gpu::kernels::dense::DenseMatmul;
use moe_gpu::kernels::matmul::{ExpertFormat, Glu, MatmulSpec, Tiling, WeightFormat};
use moe_gpu::synthetic::Rng;

use super::{KERNEL_TOL, Measured, SCALE, Table, model_label, real_models};
use crate::common::ctx;
use crate::common::matmul::{all_tilings, gpu_dense, run_dense};
use crate::kernel_matmul::cpu;
use crate::matmul_variants::{Case, grouped_outputs};

/// A tiling in a few characters: variant, threads WG_M×WG_N, outputs per thread TM×TN.
pub fn tiling_name(t: Tiling) -> String {
    format!("{:?} {}x{} {}x{}", t.variant, t.wg_m, t.wg_n, t.tm, t.tn)
}

/// A dense shape: label, rows, n, k, GLU, bias.
type Dense = (String, usize, usize, usize, Glu, bool);

fn dense_shapes() -> Vec<Dense> {
    let ds = moe_gpu::bench::shapes::RealModel::by_name("DeepSeek-V2-Lite").unwrap();
    let s = ds.layer_spec(SCALE, ds.top_k, ExpertFormat::uniform(WeightFormat::F32));
    let si = s.shared_inter.unwrap();
    vec![
        ("T=1 n=29 k=37 bias".into(), 1, 29, 37, Glu::None, true),
        (
            "T=3 (< tile) n=70 k=45 silu".into(),
            3,
            70,
            45,
            Glu::Silu,
            false,
        ),
        ("T=33 n=5 k=1 bias".into(), 33, 5, 1, Glu::None, true),
        // Three K-quant super-blocks, the last one partial.
        ("T=2 n=9 k=600 silu".into(), 2, 9, 600, Glu::Silu, false),
        (
            format!("T=7 {} shared gate_up", model_label(&ds)),
            7,
            si,
            s.hidden,
            Glu::Silu,
            false,
        ),
    ]
}

/// One dense case: random x, weights and bias; the GPU output against the reference.
fn dense_case(
    spec: MatmulSpec,
    m: usize,
    seed: u64,
    run: impl Fn(&[f32], &[f32], &[f32]) -> Vec<f32>,
) -> Measured {
    let mut rng = Rng::new(seed);
    let rows = spec.weight_rows();
    let x = rng.normals(m * spec.k, 1.0);
    let w = rng.normals(rows * spec.k, 1.0 / (spec.k as f32).sqrt());
    let b = rng.normals(rows, 0.5);
    let got = run(&x, &w, &b);
    Measured::max_scaled(&got, &cpu(&spec, &x, m, &w, &b), KERNEL_TOL)
}

pub fn dense(t: &mut Table) {
    for (i, tiling) in all_tilings().into_iter().enumerate() {
        for format in WeightFormat::ALL {
            for (j, (label, m, n, k, glu, bias)) in dense_shapes().into_iter().enumerate() {
                let spec = MatmulSpec {
                    glu,
                    bias,
                    format,
                    tiling,
                    ..MatmulSpec::dense(n, k)
                };
                let shape = format!("{label} {}", tiling_name(tiling));
                t.case("dense_matmul", &shape, format.name(), || {
                    dense_case(spec, m, 1000 + 10 * i as u64 + j as u64, |x, w, b| {
                        gpu_dense(spec, x, m, w, b)
                    })
                });
            }
        }
    }
}

/// `DenseMatmul` over `m` rows: its matvec up to `MATVEC_MAX_ROWS`, as a decode step runs it.
fn gpu_dense_matmul(spec: MatmulSpec, x: &[f32], m: usize, w: &[f32], bias: &[f32]) -> Vec<f32> {
    run_dense(spec, x, m, w, bias, |ctx, buffers, pass| {
        let mm = DenseMatmul::new(ctx, spec, Tiling::DECODE, spec.k, spec.n, buffers).unwrap();
        mm.encode(ctx, pass, m);
    })
}

pub fn matvec(t: &mut Table) {
    let mx = moe_gpu::bench::shapes::RealModel::by_name("Mixtral-8x7B").unwrap();
    let s = mx.layer_spec(SCALE, mx.top_k, ExpertFormat::uniform(WeightFormat::F32));
    let mxl = model_label(&mx);
    let shapes: Vec<Dense> = vec![
        ("T=1 n=29 k=37 bias".into(), 1, 29, 37, Glu::None, true),
        ("T=2 n=70 k=45 silu".into(), 2, 70, 45, Glu::Silu, false),
        ("T=1 n=13 k=520 bias".into(), 1, 13, 520, Glu::None, true),
        (
            format!("T=1 {mxl} gate_up"),
            1,
            s.inter,
            s.hidden,
            s.glu,
            false,
        ),
        (
            format!("T=2 {mxl} down"),
            2,
            s.hidden,
            s.inter,
            Glu::None,
            false,
        ),
    ];
    for format in WeightFormat::ALL {
        for (j, (label, m, n, k, glu, bias)) in shapes.iter().cloned().enumerate() {
            let spec = MatmulSpec {
                glu,
                bias,
                format,
                ..MatmulSpec::dense(n, k)
            };
            t.case("decode_matvec", &label, format.name(), || {
                dense_case(spec, m, 2000 + j as u64, |x, w, b| {
                    gpu_dense_matmul(spec, x, m, w, b)
                })
            });
        }
    }
}

/// `tokens` tokens each picking `k` distinct experts of `experts` at random.
pub fn random_ids(rng: &mut Rng, tokens: usize, experts: usize, k: usize) -> Vec<u32> {
    let mut ids = Vec::with_capacity(tokens * k);
    for _ in 0..tokens {
        let mut all: Vec<u32> = (0..experts as u32).collect();
        for j in 0..k {
            let p = j + rng.below(experts - j);
            all.swap(j, p);
        }
        ids.extend_from_slice(&all[..k]);
    }
    ids
}

/// A routing the grouped GEMMs, permutation and combine run: label, experts, k, ids, and
/// the expert left out of the arena (if any).
pub struct Routing {
    pub label: String,
    pub experts: usize,
    pub k: usize,
    pub ids: Vec<u32>,
    pub missing: Option<usize>,
}

/// The edge cases over 6 experts: 1 token, fewer tokens than a tile, every token on one
/// expert, a spread that leaves experts 1 and 4 empty, and that spread with expert 3 not
/// resident.
pub fn edge_routings() -> Vec<Routing> {
    let mut rng = Rng::new(5);
    let spread: Vec<u32> = (0..33)
        .flat_map(|_| {
            let a = [0u32, 2, 3, 5][rng.below(4)];
            let b = [0u32, 2, 3, 5].into_iter().find(|&e| e != a).unwrap();
            [a, b]
        })
        .collect();
    let r = |label: &str, k, ids: Vec<u32>, missing| Routing {
        label: label.into(),
        experts: 6,
        k,
        ids,
        missing,
    };
    vec![
        r("T=1 k=2 E=6", 2, vec![3, 1], None),
        r("T=3 (< tile) k=1 E=6", 1, vec![4, 4, 0], None),
        r("T=70 all on expert 2 E=6", 1, vec![2; 70], None),
        r("T=33 k=2 experts 1,4 empty", 2, spread.clone(), None),
        r("T=33 k=2 expert 3 not resident", 2, spread, Some(3)),
    ]
}

/// Each real model's experts and k, `tokens` tokens routed at random.
pub fn real_routings(tokens: usize, seed: u64) -> Vec<Routing> {
    let mut rng = Rng::new(seed);
    real_models()
        .map(|m| Routing {
            label: format!("T={tokens} {}", model_label(&m)),
            experts: m.experts,
            k: m.top_k,
            ids: random_ids(&mut rng, tokens, m.experts, m.top_k),
            missing: None,
        })
        .collect()
}

pub fn grouped(t: &mut Table) {
    // (routing, hidden, inter, GLU, expert bias)
    let mut cases: Vec<(Routing, usize, usize, Glu, bool)> = edge_routings()
        .into_iter()
        .map(|r| (r, 37, 29, Glu::Silu, true))
        .collect();
    for (r, m) in real_routings(7, 7).into_iter().zip(real_models()) {
        let s = m.layer_spec(SCALE, m.top_k, ExpertFormat::uniform(WeightFormat::F32));
        cases.push((r, s.hidden, s.inter, s.glu, s.expert_bias));
    }
    for tiling in [Tiling::PREFILL, Tiling::DECODE] {
        for format in WeightFormat::ALL {
            for (i, (r, h, inter, glu, bias)) in cases.iter().enumerate() {
                let gate_up = Case {
                    n: *inter,
                    k: *h,
                    glu: *glu,
                    bias: *bias,
                    format,
                    x_stride: *h,
                };
                let down = Case {
                    n: *h,
                    k: *inter,
                    glu: Glu::None,
                    x_stride: *inter,
                    ..gate_up
                };
                for (op, c, gather) in [
                    ("grouped_gate_up", gate_up, true),
                    ("grouped_down", down, false),
                ] {
                    let shape = format!("{} h={h} i={inter} {}", r.label, tiling_name(tiling));
                    t.case(op, &shape, format.name(), || {
                        let seed = 3000 + i as u64;
                        let run = grouped_outputs(
                            ctx(),
                            tiling,
                            &c,
                            r.experts,
                            r.k,
                            &r.ids,
                            r.missing,
                            gather,
                            seed,
                        );
                        let mut m = Measured::max_scaled(&run.got, &run.want, KERNEL_TOL);
                        if !run.missing_untouched {
                            m.note = Some("rows of a non-resident expert written".into());
                        }
                        m
                    });
                }
            }
        }
    }
}
