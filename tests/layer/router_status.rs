//! A router whose logits overflow f32 (finite weights of 3e38) fails the step with an error
//! that names the layer, for every routing family, at decode and prefill sizes, in cache mode
//! and in a stack; the status word is cleared per forward, so a finite step afterwards runs.

use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec_for};
use moe_gpu::moe::{DynamicActivation, LayerBuild, MoeLayer, MoeStack, ResidencyOptions};
use moe_gpu::{MoeLayerSpec, MoeWeights};

use crate::common;
use crate::common::fixtures;

/// f32 holds up to 3.4e38: one product of 3e38 with an input above 1.14, or two such terms
/// summed, overflows to infinity.
const HUGE: f32 = 3e38;

fn fixture_layer(arch: &str, layer: usize) -> (MoeLayerSpec, MoeWeights) {
    let dir = fixtures::dir("hf-tiny", arch).join("model");
    let cfg = ModelConfig::load(&dir).unwrap();
    let ckpt = std::sync::Arc::new(Checkpoint::open(&dir).unwrap());
    let spec = moe_layer_spec_for(&cfg, layer, ExpertFormat::uniform(WeightFormat::F32));
    (spec, load_moe_weights(&ckpt, &cfg, layer).unwrap())
}

fn build(spec: &MoeLayerSpec, w: &MoeWeights, layer: usize, slots: usize) -> MoeLayer {
    let build = LayerBuild {
        max_tokens: 80,
        io: None,
        buffers: None,
        slots,
        residency: &ResidencyOptions::default(),
        layer,
        pool: None,
    };
    MoeLayer::build(common::ctx(), spec.clone(), w, build).unwrap()
}

fn error_of(r: moe_gpu::Result<Vec<f32>>) -> String {
    r.err().map(|e| e.to_string()).unwrap_or_default()
}

#[test]
fn overflowing_router_logits_fail_the_forward_naming_the_layer() {
    let ctx = common::ctx();
    // Softmax, softmax with a shared expert, sigmoid with correction and groups, top-k softmax.
    for arch in ["mixtral", "qwen2_moe", "deepseek_v3", "gpt_oss"] {
        let (spec, mut w) = fixture_layer(arch, if arch == "deepseek_v3" { 1 } else { 0 });
        let h = spec.hidden;
        w.router[..h].fill(HUGE);
        for (slots, mode) in [
            (spec.routing.experts, "resident"),
            (spec.routing.top_k, "cache"),
        ] {
            let layer = build(&spec, &w, 7, slots);
            for tokens in [1, 5, 80] {
                let what = format!("{arch} {mode} T={tokens}");
                let ones = vec![1.0f32; tokens * h];
                let err = error_of(layer.forward(ctx, &ones));
                assert!(
                    err.contains("layer 7: router logits are not finite (NaN or Inf)"),
                    "{what}: {err:?}"
                );
                // Zero input gives finite logits (the bias): the flag of the failed step is gone.
                let zeros = vec![0.0f32; tokens * h];
                let out = layer.forward(ctx, &zeros).unwrap();
                assert!(out.iter().all(|v| v.is_finite()), "{what}");
                // One overflowing token among finite ones is enough.
                let mut mixed = zeros.clone();
                mixed[(tokens - 1) * h..].fill(1.0);
                let err = error_of(layer.forward(ctx, &mixed));
                assert!(err.contains("layer 7: router logits"), "{what}: {err:?}");
            }
        }
    }
}

#[test]
fn an_overflowing_shared_expert_gate_is_flagged_too() {
    let ctx = common::ctx();
    let (spec, mut w) = fixture_layer("qwen2_moe", 0);
    assert!(spec.routing.shared_gate);
    let shared = w.shared.as_mut().unwrap();
    shared.gate.as_mut().unwrap().fill(HUGE);
    let layer = build(&spec, &w, 2, spec.routing.experts);
    let err = error_of(layer.forward(ctx, &vec![1.0; 3 * spec.hidden]));
    assert!(err.contains("layer 2: router logits"), "{err:?}");
}

/// The first layer that overflows is named, though its NaN output makes the next layer's
/// logits NaN too (a flag written by every layer would name the last).
#[test]
fn a_stack_names_the_first_layer_that_overflowed() {
    let ctx = common::ctx();
    let bad = || {
        let (spec, mut w) = fixture_layer("mixtral", 0);
        w.router[..spec.hidden].fill(HUGE);
        (spec, w)
    };
    let (spec, first) = bad();
    let residency = ResidencyOptions::default();
    let stack = MoeStack::new(ctx, &spec, &[first, bad().1], 4, &residency).unwrap();
    let ones = vec![1.0f32; 4 * spec.hidden];
    let act = DynamicActivation::default();
    let err = error_of(stack.forward(ctx, &ones, &act));
    assert!(err.contains("layer 0: router logits"), "{err:?}");
    let out = stack
        .forward(ctx, &vec![0.0; 4 * spec.hidden], &act)
        .unwrap();
    assert!(out.iter().all(|v| v.is_finite()));
}
