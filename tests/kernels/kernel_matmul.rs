//! The matmul kernel against `reference::linear` / `reference::glu_mlp`: dense and grouped
//! modes, both tilings, f32 and f16 weights, biases and every GLU, over odd shapes.

use moe_gpu::kernels::matmul::{Glu, MatmulSpec, Tiling, WeightFormat};
use moe_gpu::reference::linear;
use moe_gpu::reference::linear::activate;
use moe_gpu::synthetic::Rng;

use crate::common::matmul::gpu_dense;

/// Normalised error ‖got − want‖² / ‖want‖², the metric for matmuls.
fn nmse(got: &[f32], want: &[f32]) -> f64 {
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(g, w)| ((g - w) as f64).powi(2))
        .sum();
    let den: f64 = want
        .iter()
        .map(|w| (*w as f64).powi(2))
        .sum::<f64>()
        .max(1e-30);
    num / den
}

/// CPU: act(x·Wgᵀ + bg, x·Wuᵀ + bu) or x·Wᵀ + b, with weights as the storage format holds them.
pub(crate) fn cpu(spec: &MatmulSpec, x: &[f32], m: usize, w: &[f32], bias: &[f32]) -> Vec<f32> {
    let w = spec.format.dequantize(w, spec.weight_rows(), spec.k);
    let (n, k) = (spec.n, spec.k);
    let b = spec.bias.then_some(bias);
    if spec.glu == Glu::None {
        return linear(x, m, k, &w, n, b);
    }
    let g = linear(x, m, k, &w[..n * k], n, b.map(|b| &b[..n]));
    let u = linear(x, m, k, &w[n * k..], n, b.map(|b| &b[n..]));
    g.iter()
        .zip(&u)
        .map(|(g, u)| activate(spec.glu, *g as f64, *u as f64) as f32)
        .collect()
}

#[test]
fn dense_matmul_matches_reference_over_odd_shapes() {
    let mut rng = Rng::new(1);
    let glus = [
        Glu::None,
        Glu::Silu,
        Glu::ClampedSwiglu {
            limit: 1.25,
            alpha: 1.702,
        },
    ];
    for m in [1usize, 2, 7, 33, 130] {
        for (k, n) in [(1usize, 1usize), (5, 3), (37, 29), (64, 260), (29, 37)] {
            for (i, glu) in glus.iter().enumerate() {
                for tiling in [Tiling::PREFILL, Tiling::DECODE] {
                    let spec = MatmulSpec {
                        glu: *glu,
                        bias: i != 1,
                        tiling,
                        ..MatmulSpec::dense(n, k)
                    };
                    let rows = spec.weight_rows();
                    let x = rng.normals(m * k, 1.0);
                    let w = rng.normals(rows * k, 1.0 / (k as f32).sqrt());
                    let b = rng.normals(rows, 0.1);
                    let got = gpu_dense(spec, &x, m, &w, &b);
                    let want = cpu(&spec, &x, m, &w, &b);
                    let err = nmse(&got, &want);
                    assert!(
                        err < 1e-10,
                        "m={m} k={k} n={n} {glu:?} {tiling:?}: nmse {err:e}"
                    );
                }
            }
        }
    }
}

/// f16 storage: the GPU must match the f16-rounded weights exactly as f32 math would, and the
/// f32 weights within the stated f16 error (normalised MSE < 1e-5).
#[test]
fn f16_weights_stay_within_stated_error_of_f32() {
    let mut rng = Rng::new(2);
    for m in [1usize, 2, 7, 33, 130] {
        for (k, n) in [(37usize, 29usize), (64, 96), (5, 260)] {
            let spec = MatmulSpec {
                format: WeightFormat::F16,
                ..MatmulSpec::dense(n, k)
            };
            let x = rng.normals(m * k, 1.0);
            let w = rng.normals(n * k, 1.0 / (k as f32).sqrt());
            let got = gpu_dense(spec, &x, m, &w, &[0.0]);
            let rounded = cpu(&spec, &x, m, &w, &[0.0]);
            assert!(
                nmse(&got, &rounded) < 1e-10,
                "f16 kernel vs f16-rounded reference"
            );
            let exact = cpu(&MatmulSpec::dense(n, k), &x, m, &w, &[0.0]);
            let err = nmse(&got, &exact);
            assert!(
                err < 1e-5,
                "m={m} k={k} n={n}: f16 vs f32 nmse {err:e} over the stated 1e-5"
            );
        }
    }
}

/// The decode, few-rows and prefill tilings compute each output element with the same
/// arithmetic.
#[test]
fn tilings_give_bit_identical_results() {
    let mut rng = Rng::new(4);
    let (m, k, n) = (33, 37, 29);
    let x = rng.normals(m * k, 1.0);
    let w = rng.normals(2 * n * k, 0.2);
    let spec = |tiling| MatmulSpec {
        glu: Glu::Silu,
        tiling,
        ..MatmulSpec::dense(n, k)
    };
    let a = gpu_dense(spec(Tiling::PREFILL), &x, m, &w, &[0.0]);
    // The decode matvec, and the eight-row blocks of a batched decode step.
    for tiling in [Tiling::DECODE, Tiling::registers(1, 64, 8, 4)] {
        let b = gpu_dense(spec(tiling), &x, m, &w, &[0.0]);
        assert!(
            a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()),
            "{tiling:?}"
        );
    }
}
