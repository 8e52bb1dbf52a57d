//! The f16 and bf16 weight paths against the f32 reference (unrounded weights), so the figures
//! below are the error of storing experts in 16 bits, as users see it:
//! - a matmul output, with every tiling the autotuner may pick, is within the rounding bound
//!   u · Σₖ |x||w| (u = 2⁻¹¹ for f16, 2⁻⁸ for bf16; plus 1e-5 of max(1, |ref|) for f32
//!   accumulation) of the reference, element by element;
//! - a whole MoE layer (gated experts, a shared expert, both tilings: decode for T·k ≤ E,
//!   prefill above) stays within a normalised RMS error of 1e-3 (f16) and 1e-2 (bf16), and
//!   5e-3 and 4e-2 of max(1, |ref|) per element (measured nrmse: f16 3.5e-4 to 4.0e-4, bf16
//!   2.8e-3 to 4.4e-3), with the same experts chosen (the router stays f32).
//!
//! Swept over T ∈ {1, 2, 7, 33, 130} tokens and odd hidden / intermediate sizes.

use moe_gpu::kernels::matmul::{ExpertFormat, Glu, MatmulSpec, WeightFormat};
use moe_gpu::moe::RoutingSpec;
use moe_gpu::reference::linear;
use moe_gpu::spec::MoeLayerSpec;
use moe_gpu::synthetic::Rng;

use crate::common;
use crate::common::layer::outputs_against_reference;
use crate::common::matmul::{all_tilings, gpu_dense};
use crate::common::nrmse;

const TOKENS: [usize; 5] = [1, 2, 7, 33, 130];
/// Unit roundoff of f16 and bf16: the largest relative error of rounding one weight.
const ROUNDING: [(WeightFormat, f64); 2] = [
    (WeightFormat::F16, 1.0 / 2048.0),
    (WeightFormat::Bf16, 1.0 / 256.0),
];

/// Layer limits per format: normalised RMS error and error per element of max(1, |ref|).
const LAYER_LIMITS: [(WeightFormat, f64, f64); 2] = [
    (WeightFormat::F16, 1e-3, 5e-3),
    (WeightFormat::Bf16, 1e-2, 4e-2),
];

#[test]
fn f16_matmul_stays_within_the_rounding_bound_of_the_f32_reference() {
    let (n, k) = (37, 45);
    let mut rng = Rng::new(21);
    let w = rng.normals(n * k, 1.0 / (k as f32).sqrt());
    for (tiling, (format, unit)) in all_tilings()
        .into_iter()
        .flat_map(|t| ROUNDING.map(|r| (t, r)))
    {
        for t in TOKENS {
            let x = rng.normals(t * k, 1.0);
            let spec = MatmulSpec {
                format,
                tiling,
                ..MatmulSpec::dense(n, k)
            };
            let got = gpu_dense(spec, &x, t, &w, &[0.0]);
            let want = linear(&x, t, k, &w, n, None);
            for r in 0..t {
                for c in 0..n {
                    let mag: f64 = (0..k)
                        .map(|i| (x[r * k + i] as f64 * w[c * k + i] as f64).abs())
                        .sum();
                    let (g, e) = (got[r * n + c] as f64, want[r * n + c] as f64);
                    let bound = unit * mag + 1e-5 * e.abs().max(1.0);
                    assert!(
                        (g - e).abs() <= bound,
                        "{format} {tiling:?} T={t} ({r}, {c}): {g} vs {e}, bound {bound:e}"
                    );
                }
            }
        }
    }
}

fn check_layer(spec: MoeLayerSpec, seed: u64) {
    for (format, limit, per_element) in LAYER_LIMITS {
        let mut worst = 0.0f64;
        for (what, got, want) in outputs_against_reference(&spec, format, seed, &TOKENS) {
            let e = nrmse(&got, &want);
            worst = worst.max(e);
            assert!(e <= limit, "{what}: normalised RMS error {e:e} > {limit:e}");
            common::assert_close(&what, &got, &want, per_element as f32);
        }
        eprintln!(
            "{format} layer {:?}: normalised RMS error {worst:.2e}",
            spec.glu
        );
    }
}

#[test]
fn f16_moe_layer_stays_within_the_stated_error_of_the_f32_reference() {
    // Odd sizes, a shared expert, renormalised softmax routing.
    check_layer(
        MoeLayerSpec {
            hidden: 45,
            inter: 27,
            routing: RoutingSpec::softmax(8, 2, true),
            glu: Glu::Silu,
            expert_bias: false,
            shared_inter: Some(19),
            format: ExpertFormat::uniform(WeightFormat::F32),
        },
        31,
    );
    // gpt-oss style: router bias, top-k then softmax, clamped SwiGLU with biases.
    let mut routing = RoutingSpec::softmax(6, 3, false);
    routing.scoring = moe_gpu::moe::Scoring::TopKThenSoftmax;
    routing.router_bias = true;
    check_layer(
        MoeLayerSpec {
            hidden: 33,
            inter: 21,
            routing,
            glu: Glu::ClampedSwiglu {
                limit: 7.0,
                alpha: 1.702,
            },
            expert_bias: true,
            shared_inter: None,
            format: ExpertFormat::uniform(WeightFormat::F32),
        },
        41,
    );
}
