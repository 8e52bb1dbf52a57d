//! One MoE layer with experts on the CPU against the same layer with every expert resident:
//! every routed expert on the CPU (`always`) and a k-slot cache whose misses the cost model
//! places (`auto`), over steps of 1, 5 and 70 tokens (the selection's permutation and the
//! scan's), odd sizes, biases and a shared expert, int4 experts, every token on the same
//! experts, and dynamic activation that drops slots. Within 1e-5 of the resident layer's
//! output (relative to its largest value); a step's dropped slots stay dropped.

use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::moe::{
    CpuOptions, CpuPolicy, DynamicActivation, ForwardOptions, LayerBuild, MoeLayer, MoeLayerSpec,
    ResidencyOptions, RoutingSpec,
};
use moe_gpu::spec::layer_spec::Glu;
use moe_gpu::synthetic::{Rng, random_moe_weights};

use crate::common;

fn spec(format: WeightFormat, bias: bool, shared: Option<usize>) -> MoeLayerSpec {
    MoeLayerSpec {
        hidden: 40,
        inter: 24,
        routing: RoutingSpec::softmax(12, 3, true),
        glu: if bias {
            Glu::ClampedSwiglu {
                limit: 7.0,
                alpha: 1.702,
            }
        } else {
            Glu::Silu
        },
        expert_bias: bias,
        shared_inter: shared,
        format: ExpertFormat::uniform(format),
    }
}

fn run(
    spec: &MoeLayerSpec,
    policy: Option<CpuPolicy>,
    x: &[f32],
    chunk: usize,
    a: &DynamicActivation,
) -> Vec<f32> {
    let ctx = common::ctx();
    let weights = random_moe_weights(spec, 5);
    let k = spec.routing.top_k;
    let residency = ResidencyOptions {
        cpu: CpuOptions {
            policy: policy.unwrap_or(CpuPolicy::Never),
            ..Default::default()
        },
        ..Default::default()
    };
    let build = LayerBuild {
        max_tokens: chunk,
        io: None,
        buffers: None,
        slots: if policy.is_some() {
            k
        } else {
            spec.routing.experts
        },
        residency: &residency,
        layer: 0,
        pool: None,
    };
    let layer = MoeLayer::build(ctx, spec.clone(), &weights, build).unwrap();
    let options = ForwardOptions {
        activation: *a,
        ..Default::default()
    };
    let out = layer.forward_with(ctx, x, &options).unwrap().output;
    if policy == Some(CpuPolicy::Always) {
        let s = layer.stats();
        assert_eq!(s.bytes_uploaded, 0, "always uploads nothing");
        assert!(s.cpu_experts > 0);
    }
    out
}

fn check(spec: &MoeLayerSpec, x: &[f32], a: &DynamicActivation, what: &str) {
    for chunk in [1, 5, 70] {
        let want = run(spec, None, x, chunk, a);
        let scale = want.iter().fold(0.0f32, |m, v| m.max(v.abs())).max(1e-3);
        for policy in [CpuPolicy::Always, CpuPolicy::Auto] {
            let got = run(spec, Some(policy), x, chunk, a);
            let err = got
                .iter()
                .zip(&want)
                .map(|(g, w)| (g - w).abs())
                .fold(0.0f32, f32::max);
            assert!(
                err <= 1e-5 * scale,
                "{what}, {policy:?}, chunks of {chunk}: max error {err:e} (scale {scale})"
            );
        }
    }
}

#[test]
fn cpu_experts_give_the_resident_output_over_step_sizes_formats_and_shapes() {
    let x = Rng::new(3).normals(70 * 40, 1.0);
    let none = DynamicActivation::default();
    check(&spec(WeightFormat::F32, false, None), &x, &none, "f32");
    check(
        &spec(WeightFormat::F32, true, Some(16)),
        &x,
        &none,
        "biases, shared",
    );
    check(&spec(WeightFormat::Int4, false, None), &x, &none, "int4");
    // Every token on the same k experts.
    let row = Rng::new(4).normals(40, 1.0);
    let same: Vec<f32> = row.iter().copied().cycle().take(70 * 40).collect();
    check(
        &spec(WeightFormat::F32, false, None),
        &same,
        &none,
        "one set of experts",
    );
    // Dynamic activation drops slots: they stay dropped on the CPU too.
    let skip = DynamicActivation {
        skip_beta: 0.6,
        ..Default::default()
    };
    check(
        &spec(WeightFormat::F32, false, None),
        &x,
        &skip,
        "skipped slots",
    );
    let top1 = DynamicActivation {
        top_k: Some(1),
        ..Default::default()
    };
    check(&spec(WeightFormat::F32, false, None), &x, &top1, "top-1");
}
