//! `MemoryPlan` against what loading a model really allocates: on every fixture, with every
//! expert resident and as an expert cache, the planned bytes match the context's count of
//! storage and staging buffers, also under a binding limit low enough to split the weights.

use moe_gpu::kernels::expert_arena::ExpertArena;
use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::model::memory::MemoryPlan;
use moe_gpu::model::{Checkpoint, Model, ModelConfig, ModelOptions, moe_layer_spec};
use moe_gpu::moe::budget::ArenaLimits;
use moe_gpu::moe::{ExpertBudget, ResidencyOptions};
use moe_gpu::{Context, format_bytes};

use crate::common::{self, fixtures};

/// A context of its own (so its allocation count is this model's alone), without tuning,
/// whose candidate timings would allocate buffers of their own; with `max_binding`, under
/// that binding limit.
fn fresh_context(max_binding: Option<u64>) -> Context {
    common::ctx();
    let ctx = Context::new().expect("an adapter");
    ctx.set_autotune(false);
    if let Some(limit) = max_binding {
        ctx.lower_max_binding(limit).unwrap();
    }
    ctx
}

fn check(set: &str, arch: &str, options: &ModelOptions) {
    check_within(set, arch, options, None);
}

fn check_within(set: &str, arch: &str, options: &ModelOptions, max_binding: Option<u64>) {
    let dir = fixtures::dir(set, arch).join("model");
    let ctx = fresh_context(max_binding);
    let cfg = ModelConfig::load(&dir).unwrap();
    let ckpt = Checkpoint::open(&dir).unwrap();
    let plan = MemoryPlan::new(&cfg, &ckpt, options, ArenaLimits::of(&ctx)).unwrap();
    let before = ctx.allocated_bytes();
    let model = Model::load_with(&ctx, &dir, options).unwrap();
    let real = ctx.allocated_bytes() - before;
    drop(model);
    // Placeholder bindings of 16 bytes (a kernel's unused slot, tile or bias buffer) are not
    // planned: at most 1 KiB of them per layer and for the head.
    let slack = 1024 * (cfg.layers as u64 + 1);
    assert!(
        plan.total <= real && real - plan.total <= slack,
        "{set}/{arch}: planned {} bytes ({plan:?}), allocated {real}",
        plan.total
    );
}

#[test]
fn the_memory_plan_matches_what_loading_allocates() {
    let resident = ModelOptions {
        max_batch: 16,
        max_context: Some(64),
        ..Default::default()
    };
    let cached = ModelOptions {
        residency: ResidencyOptions {
            budget: ExpertBudget::SlotsPerLayer(4),
            ..Default::default()
        },
        ..resident.clone()
    };
    for set in fixtures::SETS {
        for arch in fixtures::ARCHS {
            check(set, arch, &resident);
            check(set, arch, &cached);
            check(set, arch, &pooled(set, arch, &resident));
        }
    }
    for arch in ["mixtral", "deepseek_v3"] {
        check_within("hf-tiny", arch, &cached, Some(32 << 10));
    }
}

/// `options` with a byte budget of k + 1 experts: one pool shared by the MoE layers.
fn pooled(set: &str, arch: &str, options: &ModelOptions) -> ModelOptions {
    let dir = fixtures::dir(set, arch).join("model");
    let cfg = ModelConfig::load(&dir).unwrap();
    let spec = moe_layer_spec(&cfg, ExpertFormat::uniform(WeightFormat::F32));
    let per_expert =
        ExpertArena::expert_bytes(spec.hidden, spec.inter, spec.format, spec.expert_bias);
    let slots = spec.routing.top_k as u64 + 1;
    ModelOptions {
        residency: ResidencyOptions {
            budget: ExpertBudget::Bytes(slots * per_expert),
            ..Default::default()
        },
        ..options.clone()
    }
}

#[test]
fn activations_are_planned_once_for_all_layers() {
    let dir = fixtures::dir("hf-tiny", "qwen3_moe").join("model");
    let cfg = ModelConfig::load(&dir).unwrap();
    let ckpt = Checkpoint::open(&dir).unwrap();
    let limits = ArenaLimits {
        max_binding: 128 << 20,
        auto_budget: 1 << 30,
        device_memory: None,
    };
    let plan = |max_batch| {
        let options = ModelOptions {
            max_batch,
            ..Default::default()
        };
        MemoryPlan::new(&cfg, &ckpt, &options, limits).unwrap()
    };
    let (small, large) = (plan(8), plan(64));
    let step = |p: &MemoryPlan| p.activation_parts["moe step buffers"];
    assert!(step(&large) > step(&small));
    assert_eq!(small.expert_slots, large.expert_slots);
    assert_eq!(
        small.total,
        small.expert_slots
            + small.other_weights
            + small.kv_cache
            + small.activations
            + small.staging
    );
}

/// With the adapter's memory stated: a model whose smallest plan exceeds it is refused with the
/// sizes; at exactly that least, the default expert budget shrinks to a pool that fits, and
/// loading allocates no more than the memory.
#[test]
fn loading_fits_the_adapters_memory() {
    let dir = fixtures::dir("hf-tiny", "mixtral").join("model");
    let options = ModelOptions {
        max_batch: 16,
        max_context: Some(64),
        ..Default::default()
    };
    let ctx = fresh_context(None);
    let (cfg, ckpt) = (
        ModelConfig::load(&dir).unwrap(),
        Checkpoint::open(&dir).unwrap(),
    );
    let plan_at = |memory: u64| {
        ctx.set_device_memory(memory);
        MemoryPlan::new(&cfg, &ckpt, &options, ArenaLimits::of(&ctx)).unwrap()
    };
    let roomy = plan_at(1 << 40);
    assert_eq!(roomy.fits, Some(true));
    assert!(roomy.least < roomy.total, "{roomy:?}");
    let least = roomy.least;

    let tight = plan_at(least - 1);
    assert_eq!(tight.fits, Some(false));
    let err = Model::load_with(&ctx, &dir, &options)
        .err()
        .expect("a model over the memory is refused")
        .to_string();
    for part in [
        "does not fit",
        "KV cache",
        "64 positions",
        &format_bytes(least),
    ] {
        assert!(err.contains(part), "{part}: {err}");
    }

    let exact = plan_at(least);
    assert_eq!(exact.fits, Some(false), "every expert does not fit");
    let before = ctx.allocated_bytes();
    let model = Model::load_with(&ctx, &dir, &options).unwrap();
    let real = ctx.allocated_bytes() - before;
    let slack = 1024 * (cfg.layers as u64 + 1);
    assert!(real <= least + slack, "allocated {real} of {least}");
    assert!(real < roomy.total, "the default budget shrank");
    let stats = model.residency_stats();
    assert!(
        stats.experts_resident_max < stats.experts_total,
        "{stats:?}"
    );
}

/// MoE layers in different expert formats, gate/up and down apart: every expert resident, and
/// under a budget of half their bytes (a pool per format), the plan matches what loading
/// allocates.
#[test]
fn per_layer_expert_formats_plan_what_loading_allocates() {
    use WeightFormat::{F16, Int4, Int8};
    let mixed = ExpertFormat {
        gate_up: Int4,
        down: Int8,
    };
    let resident = ModelOptions {
        max_batch: 16,
        max_context: Some(64),
        expert_formats: Some(vec![mixed, ExpertFormat::uniform(F16), mixed]),
        ..Default::default()
    };
    let dir = fixtures::dir("hf-tiny", "qwen3_moe").join("model");
    let (cfg, ckpt) = (
        ModelConfig::load(&dir).unwrap(),
        Checkpoint::open(&dir).unwrap(),
    );
    let limits = ArenaLimits::of(common::ctx());
    let plan = MemoryPlan::new(&cfg, &ckpt, &resident, limits).unwrap();
    assert_eq!(plan.expert_format, "int4+int8 (layers 0, 2), f16 (layer 1)");
    let pooled = ModelOptions {
        residency: ResidencyOptions {
            budget: ExpertBudget::Bytes(plan.expert_slots / 2),
            ..Default::default()
        },
        ..resident.clone()
    };
    assert!(
        MemoryPlan::new(&cfg, &ckpt, &pooled, limits)
            .unwrap()
            .shared_pool
    );
    check("hf-tiny", "qwen3_moe", &resident);
    check("hf-tiny", "qwen3_moe", &pooled);
}
