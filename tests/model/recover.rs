//! Recovery after pruning (`moe prune --recover`): on every fixture architecture of both shape
//! sets, with half the experts dropped or merged away, the least-squares refit never raises a
//! layer's calibration loss (what it fits: the routed output against the unpruned layer's), and
//! lowers it on most layers; what it reports refit is what the writer gets.

use std::sync::Arc;

use moe_gpu::calibration::LayerStats;
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec_for};
use moe_gpu::prune::merge::merge_layer;
use moe_gpu::prune::{LayerInput, LayerPlan, LayerRecovery, Replacements, recover_layer};
use moe_gpu::spec::{ExpertFormat, MoeLayerSpec, MoeWeights, WeightFormat};
use safetensors::Dtype;

use crate::common::fixtures::{ARCHS, Fixture, SETS};

/// Calls `each(fixture, layer, spec, teacher, inputs)` for every MoE layer of a fixture, with
/// the fixture's own MoE-layer inputs.
fn for_each_layer(
    set: &str,
    arch: &str,
    mut each: impl FnMut(&Fixture, usize, &MoeLayerSpec, &MoeWeights, &[f32]),
) {
    let fx = Fixture::open(set, arch);
    let cfg = ModelConfig::load(&fx.model_dir).unwrap();
    let ckpt = Arc::new(Checkpoint::open(&fx.model_dir).unwrap());
    for l in cfg.moe_layers() {
        let spec = moe_layer_spec_for(&cfg, l, ExpertFormat::uniform(WeightFormat::F32));
        let teacher = load_moe_weights(&ckpt, &cfg, l).unwrap();
        each(
            &fx,
            l,
            &spec,
            &teacher,
            &fx.f32(&format!("layers.{l}.mlp.input")),
        );
    }
}

/// `recover_layer` of one layer, writing as `dtype`.
fn recover(
    (spec, teacher, x): (&MoeLayerSpec, &MoeWeights, &[f32]),
    plan: &LayerPlan,
    dtype: Dtype,
    new: &mut Replacements,
) -> LayerRecovery {
    let input = LayerInput {
        spec,
        teacher,
        plan,
        x,
        router_dtype: dtype,
        expert_dtype: dtype,
    };
    recover_layer(&input, new).unwrap()
}

/// Recovers every MoE layer of a fixture pruned to every other expert of each expert group.
fn recover_fixture(set: &str, arch: &str, merge: bool, dtype: Dtype) -> Vec<LayerRecovery> {
    let mut done = Vec::new();
    for_each_layer(set, arch, |fx, l, spec, teacher, x| {
        let e = spec.routing.experts;
        let group = e / spec.routing.n_group;
        let mut plan = LayerPlan {
            layer: l,
            keep: (0..e).filter(|x| (x % group).is_multiple_of(2)).collect(),
            merges: Vec::new(),
        };
        let mut new = Replacements::default();
        if merge {
            let mut stats = LayerStats::new(l, e, spec.routing.top_k);
            stats.observe(
                &fx.ids(&format!("layers.{l}.moe.topk_ids")),
                &fx.f32(&format!("layers.{l}.moe.topk_weights")),
                None,
            );
            let merged = merge_layer(&mut plan, &stats, teacher.experts.as_ref()).unwrap();
            new.experts.insert(l, merged);
        }
        let r = recover((spec, teacher, x), &plan, dtype, &mut new);
        let what = format!("{set}/{arch} layer {l} (merge {merge}): {r:?}");
        assert!(r.loss_before.is_finite() && r.loss_before > 0.0, "{what}");
        assert!(r.loss_after <= r.loss_before, "{what}");
        assert_eq!(r.router_refit, new.routers.contains_key(&l), "{what}");
        if let Some(rows) = new.routers.get(&l) {
            assert_eq!(rows.len(), plan.keep.len() * spec.hidden, "{what}");
            let round = |v: f32| half::bf16::from_f32(v).to_f32();
            if dtype == Dtype::BF16 {
                assert!(
                    rows.iter().all(|v| round(*v) == *v),
                    "{what}: not bf16 values"
                );
            }
        }
        assert!(r.experts_refit <= plan.keep.len(), "{what}");
        done.push(r);
    });
    done
}

#[test]
fn recovery_never_raises_the_calibration_loss() {
    let mut lowered = 0;
    let mut layers = 0;
    for set in SETS {
        for arch in ARCHS {
            for merge in [false, true] {
                for r in recover_fixture(set, arch, merge, Dtype::F32) {
                    layers += 1;
                    lowered += usize::from(r.loss_after < 0.9 * r.loss_before);
                }
            }
        }
    }
    assert!(
        lowered * 4 >= layers * 3,
        "recovery lowered the loss by 10% on only {lowered} of {layers} layers"
    );
}

#[test]
fn recovered_weights_are_what_the_checkpoint_dtype_stores() {
    for arch in ["qwen3_moe", "olmoe", "deepseek_v3"] {
        let done = recover_fixture("hf-tiny", arch, true, Dtype::BF16);
        assert!(done.iter().any(|r| r.router_refit), "{arch}: {done:?}");
    }
}

/// With every expert kept the student is the teacher, summed alike: the loss is exactly zero
/// and nothing is refit, on every fixture (the inputs' backend cannot matter).
#[test]
fn keeping_every_expert_leaves_nothing_to_recover() {
    for set in SETS {
        for arch in ARCHS {
            for_each_layer(set, arch, |_, l, spec, teacher, x| {
                let plan = LayerPlan {
                    layer: l,
                    keep: (0..spec.routing.experts).collect(),
                    merges: Vec::new(),
                };
                let mut new = Replacements::default();
                let r = recover((spec, teacher, x), &plan, Dtype::F32, &mut new);
                assert_eq!(
                    (r.loss_before, r.loss_after),
                    (0.0, 0.0),
                    "{set}/{arch}: {r:?}"
                );
                assert!(
                    new.routers.is_empty() && new.experts.is_empty(),
                    "{set}/{arch}"
                );
            });
        }
    }
}
