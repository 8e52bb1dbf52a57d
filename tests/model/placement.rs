//! Where weights live changes no bit of the output.
//! - Split weights: every fixture loads on a context whose binding limit is lowered until the
//!   expert arenas, the dense MLPs and the LM head need several buffers each, and its prompt
//!   logits and decode-step logits equal those of the normal context bit for bit, with every
//!   expert resident and as an expert cache. Under the lowered limit a buffer that was not
//!   split would fail to allocate, so loading at all proves the split.
//! - A shared expert pool: every fixture under a byte budget of k experts (the least any model
//!   can run in), and of half its experts, gives the bits of the all-resident model; every MoE
//!   layer runs from the pool and no layer holds more than the pool.

use moe_gpu::kernels::expert_arena::ExpertArena;
use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::model::{ModelConfig, moe_layer_spec};
use moe_gpu::moe::budget::Placement;
use moe_gpu::moe::{CpuOptions, ExpertBudget, ResidencyOptions};
use moe_gpu::{Context, ContextOptions, Logits, Model, ModelOptions};

use crate::common::{self, fixtures};

/// Low enough to split every fixture's arenas, high enough for its activations.
const LIMIT: u64 = 16 << 10;

fn logits_bits(ctx: &Context, dir: &std::path::Path, options: &ModelOptions) -> Vec<u32> {
    let mut model = Model::load_with(ctx, dir, options).unwrap();
    run(ctx, &mut model)
}

/// Prompt logits of 7 tokens, then three decode steps'.
fn run(ctx: &Context, model: &mut Model) -> Vec<u32> {
    let prompt = [1, 5, 9, 2, 7, 3, 11];
    let mut all = model.forward(ctx, &prompt, Logits::All).unwrap();
    for token in [4, 8, 6] {
        all.extend(model.forward(ctx, &[token], Logits::Last).unwrap());
    }
    all.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn split_weights_give_the_bits_of_unsplit_ones_on_every_fixture() {
    let small = Context::with_options(&ContextOptions {
        max_binding: Some(LIMIT),
        ..ContextOptions::from_env().unwrap()
    })
    .unwrap();
    small.set_autotune(false);
    assert_eq!(small.max_binding(), LIMIT);
    let resident = ModelOptions {
        max_batch: 8,
        max_context: Some(16),
        max_logit_rows: 8,
        ..Default::default()
    };
    let cached = ModelOptions {
        residency: ResidencyOptions {
            budget: ExpertBudget::SlotsPerLayer(4),
            cpu: CpuOptions::never(),
            ..Default::default()
        },
        ..resident.clone()
    };
    for arch in fixtures::ARCHS {
        let dir = fixtures::dir("hf-tiny", arch).join("model");
        let cfg = ModelConfig::load(&dir).unwrap();
        let spec = moe_layer_spec(&cfg, ExpertFormat::uniform(WeightFormat::F32));
        let [gate_up, _] =
            ExpertArena::weight_shapes(spec.hidden, spec.inter, spec.routing.experts, spec.format);
        assert!(
            gate_up.parts(LIMIT).unwrap().len() > 1,
            "{arch}: the arena fits {LIMIT} bytes; lower the limit"
        );
        for options in [&resident, &cached] {
            let want = logits_bits(common::ctx(), &dir, options);
            let got = logits_bits(&small, &dir, options);
            assert!(got == want, "{arch}: split logits differ in bits");
        }
    }
}

#[test]
fn a_shared_expert_pool_gives_the_bits_of_all_resident_experts() {
    let ctx = common::ctx();
    let resident = ModelOptions {
        max_batch: 8,
        max_context: Some(16),
        max_logit_rows: 8,
        ..Default::default()
    };
    for arch in fixtures::ARCHS {
        let dir = fixtures::dir("hf-tiny", arch).join("model");
        let cfg = ModelConfig::load(&dir).unwrap();
        let spec = moe_layer_spec(&cfg, ExpertFormat::uniform(WeightFormat::F32));
        let (e, k) = (spec.routing.experts, spec.routing.top_k);
        let per_expert =
            ExpertArena::expert_bytes(spec.hidden, spec.inter, spec.format, spec.expert_bias);
        let want = logits_bits(ctx, &dir, &resident);
        let layers = cfg.moe_layers().len();
        for slots in [k, e * layers / 2] {
            let options = ModelOptions {
                residency: ResidencyOptions {
                    budget: ExpertBudget::Bytes(slots as u64 * per_expert),
                    cpu: CpuOptions::never(),
                    ..Default::default()
                },
                ..resident.clone()
            };
            assert_eq!(
                options.residency.placement(ctx, &spec, layers).unwrap(),
                Placement::Pool(slots),
                "{arch}"
            );
            let mut model = Model::load_with(ctx, &dir, &options).unwrap();
            let got = run(ctx, &mut model);
            assert!(
                got == want,
                "{arch}, pool of {slots}: logits differ in bits"
            );
            let stats = model.residency_stats();
            assert_eq!(stats.per_layer.len(), layers, "{arch}");
            let resident: usize = stats.per_layer.iter().map(|l| l.resident).sum();
            assert!(
                resident <= slots,
                "{arch}: {resident} resident in {slots} slots"
            );
            for l in &stats.per_layer {
                assert_eq!((l.mode, l.slots), ("pool", slots), "{arch}");
            }
            assert!(stats.misses > 0, "{arch}: the pool never missed");
        }
    }
}
