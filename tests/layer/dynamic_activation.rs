//! Dynamic activation on fixtures: threshold 0 and top-p 1 equal plain top-k, runtime top-k
//! and thresholds reduce activated experts and match the reference, `auto` needs calibration.

use moe_gpu::calibration::{CalibrationStats, LayerStats};
use moe_gpu::kernels::INVALID;
use moe_gpu::model::ModelConfig;
use moe_gpu::moe::DynamicActivation;
use moe_gpu::moe::activation_policy::{ActivationPolicy, ActivationSummary, SkipThreshold};
use moe_gpu::reference::moe_block;

use crate::common;
use crate::common::fixtures::{BlockRun, Fixture, run_block};

fn run(arch: &str, act: DynamicActivation) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    let fx = Fixture::open("hf-tiny", arch);
    let layer = fx.layers_with("block.layers.", ".input")[0];
    let x = fx.f32(&format!("block.layers.{layer}.input"));
    let BlockRun {
        spec, weights, out, ..
    } = run_block(&fx.model_dir, layer, &x, act, |_, _| {});
    let want = moe_block(&x, &spec, &weights, &act).unwrap();
    let k = spec.routing.top_k;
    let (ids, wts) = (out.topk_ids.unwrap(), out.topk_weights.unwrap());
    common::assert_same_routing(
        arch,
        k,
        &ids,
        &wts,
        &want.topk_ids,
        &want.topk_weights,
        1e-5,
    );
    common::assert_close(arch, &out.output, &want.output, 1e-4);
    (ids, wts, out.output)
}

#[test]
fn threshold_zero_and_top_p_one_are_plain_top_k() {
    for arch in ["mixtral", "deepseek_v3", "gpt_oss", "qwen2_moe"] {
        let plain = run(arch, DynamicActivation::default());
        let same = run(
            arch,
            DynamicActivation {
                top_k: None,
                skip_beta: 0.0,
                top_p: 1.0,
            },
        );
        assert!(
            plain
                .2
                .iter()
                .zip(&same.2)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{arch}"
        );
        assert!(plain.0.iter().all(|&i| i != INVALID));
    }
}

#[test]
fn fewer_experts_with_runtime_top_k_threshold_and_top_p() {
    for arch in ["olmoe", "deepseek_v3", "qwen3_moe"] {
        let k = ModelConfig::load(&Fixture::open("hf-tiny", arch).model_dir)
            .unwrap()
            .moe
            .routing
            .top_k;
        for act in [
            DynamicActivation {
                top_k: Some(k - 1),
                ..Default::default()
            },
            DynamicActivation {
                skip_beta: 0.5,
                ..Default::default()
            },
            DynamicActivation {
                top_p: 0.25,
                ..Default::default()
            },
        ] {
            let (ids, _, _) = run(arch, act);
            let s = ActivationSummary::from_ids(&ids, k, 1000);
            assert!(
                s.activated_experts_per_token < k as f64,
                "{arch} {act:?}: {s:?}"
            );
            assert!(s.weight_bytes_saved_per_token > 0.0);
        }
    }
}

#[test]
fn auto_threshold_uses_the_calibrated_median_per_layer() {
    let mut s = LayerStats::new(3, 4, 3);
    // w2/w1 = 0.5, 0.25, 0.75 over three tokens: median 0.5.
    s.observe(
        &[0, 1, 2, 1, 2, 3, 2, 3, 0],
        &[0.4, 0.2, 0.1, 0.8, 0.2, 0.0, 0.4, 0.3, 0.3],
        None,
    );
    let stats = CalibrationStats {
        model: "m".into(),
        architecture: "a".into(),
        tokens: 3,
        layers: vec![s],
    };
    let policy = ActivationPolicy {
        skip: SkipThreshold::Auto,
        ..Default::default()
    };
    assert_eq!(policy.for_layer(3, Some(&stats)).unwrap().skip_beta, 0.5);
    let e = policy.for_layer(3, None).unwrap_err().to_string();
    assert!(e.contains("calibration"), "{e}");
    let e = policy.for_layer(7, Some(&stats)).unwrap_err().to_string();
    assert!(e.contains("layer 7"), "{e}");
    assert!(SkipThreshold::parse("1.5").is_err() && SkipThreshold::parse("auto").is_ok());
}
