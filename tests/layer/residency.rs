//! The VRAM expert cache on the GPU: the smallest budget (k slots) gives the same output bit
//! for bit as full residency on every fixture, with f32 and with int4 experts; uploads happen only for activated experts and
//! are counted exactly; eviction never removes an expert the step uses; bad budgets are errors.

use std::sync::Arc;

use moe_gpu::kernels::INVALID;
use moe_gpu::kernels::matmul::{ExpertFormat, Glu, WeightFormat};
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec};
use moe_gpu::moe::budget::Placement;
use moe_gpu::moe::residency::ExpertCache;
use moe_gpu::moe::{
    ExpertBudget, LayerBuild, MoeLayer, MoeLayerSpec, MoeWeights, Policy, ResidencyOptions,
    RoutingSpec,
};
use moe_gpu::synthetic::{Rng, random_moe_weights};

use crate::common;
use crate::common::fixtures::{ARCHS, Fixture, SETS};
use crate::common::residency::{bits, naive_lru_misses, options, run, step_sets, upload_bytes};

/// The step sizes and policies of the bit-for-bit comparison: one-token steps, small steps
/// under LRU and LFU, and 33-token steps served in rounds.
const STEPS: [(usize, Policy); 4] = [
    (1, Policy::Lru),
    (4, Policy::Lru),
    (4, Policy::Lfu { half_life: 8.0 }),
    (33, Policy::Lru),
];

fn check_fixture(set: &str, arch: &str, format: WeightFormat, steps: &[(usize, Policy)]) {
    let fx = Fixture::open(set, arch);
    let cfg = ModelConfig::load(&fx.model_dir).unwrap();
    let ckpt = Arc::new(Checkpoint::open(&fx.model_dir).unwrap());
    let spec = moe_layer_spec(&cfg, ExpertFormat::uniform(format));
    let (e, k) = (cfg.moe.routing.experts, cfg.moe.routing.top_k);
    for l in cfg.moe_layers() {
        let what = format!("{set}/{arch} {format} layer {l}");
        let weights = load_moe_weights(&ckpt, &cfg, l).unwrap();
        let x = fx.f32(&format!("block.layers.{l}.input"));
        let hf_ids = fx.ids(&format!("block.layers.{l}.topk_ids"));
        let bytes = upload_bytes(&weights.experts.load(0).unwrap(), &spec);
        for &(chunk, policy) in steps {
            let what = format!("{what}, {chunk}-token steps, {policy:?}");
            let (full, _) = run(&spec, &weights, &x, chunk, e, policy);
            let (small, stats) = run(&spec, &weights, &x, chunk, k, policy);
            assert_eq!(bits(&small), bits(&full), "{what}: output differs");

            assert_eq!(stats.mode, "cache");
            assert_eq!(
                stats.experts_ever_uploaded(),
                stats.experts_ever_activated(),
                "{what}: uploads without prefetch"
            );
            assert_eq!(stats.bytes_uploaded, stats.misses * bytes, "{what}: bytes");
            assert_eq!(stats.resident_max, k);
            let sets = step_sets(&hf_ids, k, chunk, e);
            let accesses: usize = sets.iter().map(Vec::len).sum();
            assert_eq!((stats.hits + stats.misses) as usize, accesses, "{what}");
            let mut cache = ExpertCache::new(e, k, policy).unwrap();
            let replayed: usize = sets
                .iter()
                .map(|s| cache.plan_step(s).unwrap().misses())
                .sum();
            assert_eq!(stats.misses as usize, replayed, "{what}: misses vs replay");
            if chunk == 1 && policy == Policy::Lru {
                assert_eq!(
                    stats.misses,
                    naive_lru_misses(&sets, k),
                    "{what}: naive LRU"
                );
                assert_eq!(stats.extra_rounds, 0);
            }
            if chunk == 33 {
                assert!(stats.extra_rounds > 0, "{what}: 33 tokens need rounds");
            }
            let mut hist = vec![0u64; e];
            hf_ids
                .iter()
                .filter(|&&id| id != INVALID)
                .for_each(|&id| hist[id as usize] += 1);
            assert_eq!(stats.histogram, hist, "{what}: histogram");
        }
    }
}

#[test]
fn smallest_budget_matches_full_residency_bit_for_bit_on_every_fixture() {
    for set in SETS {
        for arch in ARCHS {
            check_fixture(set, arch, WeightFormat::F32, &STEPS);
        }
    }
}

/// The cache uploads the quantised form, scales included (the byte count checks it), and its
/// rounds compute exactly what full residency does.
#[test]
fn smallest_budget_matches_full_residency_bit_for_bit_with_int4_experts() {
    for set in SETS {
        for arch in ARCHS {
            check_fixture(set, arch, WeightFormat::Int4, &[STEPS[0], STEPS[3]]);
        }
    }
}

fn synthetic_spec(experts: usize, k: usize) -> MoeLayerSpec {
    MoeLayerSpec {
        hidden: 40,
        inter: 24,
        routing: RoutingSpec::softmax(experts, k, true),
        glu: Glu::Silu,
        expert_bias: false,
        shared_inter: None,
        format: ExpertFormat::uniform(WeightFormat::F32),
    }
}

#[test]
fn cache_mode_uploads_nothing_before_first_use() {
    let ctx = common::ctx();
    let spec = synthetic_spec(12, 3);
    let w = random_moe_weights(&spec, 5);
    let build = LayerBuild {
        max_tokens: 4,
        io: None,
        buffers: None,
        slots: 3,
        residency: &options(Policy::Lru),
        layer: 0,
        pool: None,
    };
    let layer = MoeLayer::build(ctx, spec, &w, build).unwrap();
    assert!(layer.is_cached());
    let s = layer.stats();
    assert_eq!((s.bytes_uploaded, s.experts_ever_uploaded()), (0, 0));
    let table: Vec<u32> = ctx.read_back(&layer.table, 12).unwrap();
    assert!(table.iter().all(|&t| t == INVALID), "{table:?}");
}

#[test]
fn full_residency_reads_nothing_back() {
    let ctx = common::ctx();
    let spec = synthetic_spec(12, 3);
    let w = random_moe_weights(&spec, 6);
    let placement = ResidencyOptions::default()
        .placement(ctx, &spec, 4)
        .unwrap();
    assert_eq!(
        placement,
        Placement::PerLayer(12),
        "a tiny model is all resident by default"
    );
    let layer = MoeLayer::new(ctx, spec, &w, 8).unwrap();
    assert!(!layer.is_cached());
    layer
        .forward(ctx, &Rng::new(1).normals(16 * 40, 1.0))
        .unwrap();
    let s = layer.stats();
    assert_eq!((s.mode, s.readbacks, s.misses), ("resident", 0, 0));
    assert_eq!(s.experts_ever_uploaded(), 12);
}

#[test]
fn budget_smaller_than_k_experts_is_a_clear_error() {
    let ctx = common::ctx();
    let spec = synthetic_spec(12, 3);
    let per_expert = moe_gpu::kernels::expert_arena::ExpertArena::expert_bytes(
        40,
        24,
        ExpertFormat::uniform(WeightFormat::F32),
        false,
    );
    let with = |budget| ResidencyOptions {
        budget,
        ..Default::default()
    };
    // The MoE layers share one pool: k experts of one layer run a model of any depth.
    let err = with(ExpertBudget::Bytes(3 * per_expert - 1))
        .placement(ctx, &spec, 16)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("k = 3 slots") && err.contains("16 MoE layers share"),
        "{err}"
    );
    let pool = |bytes, layers| with(ExpertBudget::Bytes(bytes)).placement(ctx, &spec, layers);
    assert_eq!(pool(3 * per_expert, 16).unwrap(), Placement::Pool(3));
    assert_eq!(pool(20 * per_expert, 2).unwrap(), Placement::Pool(20));
    assert_eq!(pool(24 * per_expert, 2).unwrap(), Placement::PerLayer(12));
    let err = with(ExpertBudget::SlotsPerLayer(2))
        .placement(ctx, &spec, 1)
        .unwrap_err()
        .to_string();
    assert!(err.contains("below k = 3"), "{err}");
    assert_eq!(
        with(ExpertBudget::SlotsPerLayer(50))
            .placement(ctx, &spec, 1)
            .unwrap(),
        Placement::PerLayer(12)
    );
    let w = random_moe_weights(&spec, 1);
    let build = LayerBuild {
        max_tokens: 4,
        io: None,
        buffers: None,
        slots: 2,
        residency: &ResidencyOptions::default(),
        layer: 0,
        pool: None,
    };
    let err = MoeLayer::build(ctx, spec, &w, build)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("below k = 3"), "{err}");
}

/// A byte budget buys slots at the quantised size of an expert, scales included: the bytes of
/// 3 f32 experts hold 6 bf16, 8 int8 or 13 int4 or mxfp4 experts of this shape (rows padded to 16 and 32 values), and the layer reports the
/// quantised size in its statistics.
#[test]
fn byte_budgets_buy_quantised_experts_at_their_packed_size() {
    let ctx = common::ctx();
    let f32_bytes = moe_gpu::kernels::expert_arena::ExpertArena::expert_bytes(
        40,
        24,
        ExpertFormat::uniform(WeightFormat::F32),
        false,
    );
    for (format, slots) in [
        (WeightFormat::F32, 3),
        (WeightFormat::Int8, 8),
        (WeightFormat::Int4, 13),
        (WeightFormat::Mxfp4, 13),
        (WeightFormat::Bf16, 6),
    ] {
        let spec = MoeLayerSpec {
            format: ExpertFormat::uniform(format),
            ..synthetic_spec(16, 3)
        };
        let options = ResidencyOptions {
            budget: ExpertBudget::Bytes(3 * f32_bytes),
            ..options(Policy::Lru)
        };
        assert_eq!(
            options.placement(ctx, &spec, 1).unwrap().slots(),
            slots,
            "{format}"
        );
        let w = random_moe_weights(&spec, 2);
        let x = Rng::new(3).normals(4 * 40, 1.0);
        let (_, stats) = run(&spec, &w, &x, 4, slots, Policy::Lru);
        let packed = upload_bytes(&w.experts.load(0).unwrap(), &spec);
        assert_eq!(stats.expert_bytes, packed, "{format}");
        assert_eq!(stats.bytes_uploaded, stats.misses * packed, "{format}");
    }
}

/// Per-token expert sets of `x` under `spec`/`w`, as the GPU routes them.
fn token_sets(spec: &MoeLayerSpec, w: &MoeWeights, x: &[f32]) -> Vec<Vec<usize>> {
    let ctx = common::ctx();
    let tokens = x.len() / spec.hidden;
    let layer = MoeLayer::new(ctx, spec.clone(), w, tokens).unwrap();
    let out = layer
        .forward_with(
            ctx,
            x,
            &moe_gpu::ForwardOptions {
                capture_routing: true,
                ..Default::default()
            },
        )
        .unwrap();
    step_sets(
        &out.topk_ids.unwrap(),
        spec.routing.top_k,
        1,
        spec.routing.experts,
    )
}

#[test]
fn a_step_needing_exactly_slots_experts_evicts_none_of_them() {
    let ctx = common::ctx();
    let (e, k, slots) = (12, 3, 5);
    let spec = synthetic_spec(e, k);
    let w = random_moe_weights(&spec, 9);
    let h = spec.hidden;
    let x = Rng::new(4).normals(64 * h, 1.0);
    let sets = token_sets(&spec, &w, &x);
    let union = |a: &[usize], b: &[usize]| {
        let mut u: Vec<usize> = a.iter().chain(b).copied().collect();
        u.sort();
        u.dedup();
        u
    };
    // Two tokens that need exactly `slots` experts together, and a warm-up token that shares
    // one expert with them, so the step must evict stale experts around the ones it keeps.
    let (a, b) = (0..64)
        .flat_map(|a| (a + 1..64).map(move |b| (a, b)))
        .find(|&(a, b)| union(&sets[a], &sets[b]).len() == slots)
        .expect("two tokens with 5 experts between them");
    let target = union(&sets[a], &sets[b]);
    let warm = (0..64)
        .find(|&t| sets[t].iter().filter(|e| target.contains(e)).count() == 1)
        .expect("a warm-up token sharing one expert");
    let rows = |ts: &[usize]| -> Vec<f32> {
        ts.iter()
            .flat_map(|&t| x[t * h..(t + 1) * h].to_vec())
            .collect()
    };
    let opts = options(Policy::Lru);
    let build = |slots| LayerBuild {
        max_tokens: 2,
        io: None,
        buffers: None,
        slots,
        residency: &opts,
        layer: 0,
        pool: None,
    };
    let cached = MoeLayer::build(ctx, spec.clone(), &w, build(slots)).unwrap();
    let full = MoeLayer::build(ctx, spec.clone(), &w, build(e)).unwrap();
    for warmup in [rows(&[warm]), rows(&[(warm + 1) % 64, warm])] {
        cached.forward(ctx, &warmup).unwrap();
    }
    let before = cached.stats();
    let step = rows(&[a, b]);
    let got = cached.forward(ctx, &step).unwrap();
    let want = full.forward(ctx, &step).unwrap();
    assert_eq!(
        bits(&got),
        bits(&want),
        "tokens {a}, {b} needing {target:?}"
    );
    let after = cached.stats();
    assert_eq!(after.extra_rounds, 0, "one round holds the whole step");
    assert_eq!(
        after.hits - before.hits + after.misses - before.misses,
        slots as u64
    );
    assert!(
        after.hits > before.hits,
        "the shared expert stayed resident"
    );
}

#[test]
fn recorded_trace_is_the_routing_of_each_step() {
    let fx = Fixture::open("hf-tiny-alt", "qwen3_moe");
    let cfg = ModelConfig::load(&fx.model_dir).unwrap();
    let ckpt = Arc::new(Checkpoint::open(&fx.model_dir).unwrap());
    let spec = moe_layer_spec(&cfg, ExpertFormat::uniform(WeightFormat::F32));
    let (e, k) = (cfg.moe.routing.experts, cfg.moe.routing.top_k);
    let l = cfg.moe_layers()[0];
    let weights = load_moe_weights(&ckpt, &cfg, l).unwrap();
    let x = fx.f32(&format!("block.layers.{l}.input"));
    let (_, stats) = run(&spec, &weights, &x, 5, k + 1, Policy::Lru);
    let trace = moe_gpu::moe::ResidencyStats::from_layers(vec![stats])
        .trace(k)
        .unwrap();
    let want = step_sets(&fx.ids(&format!("block.layers.{l}.topk_ids")), k, 5, e);
    let got: Vec<Vec<usize>> = trace.steps.iter().map(|s| s.experts[0].clone()).collect();
    assert_eq!(got, want);
    assert_eq!(
        trace.steps.iter().map(|s| s.tokens).sum::<usize>(),
        x.len() / cfg.hidden
    );
}
