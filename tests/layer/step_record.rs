//! What `MoeLayer::record` says it ran: the permutation by the selection for steps of up to 64
//! tokens with every expert resident, the scan above, the fused down + combine at decode, and
//! in cache mode the rounds, uploads and prefetches of the step.

use moe_gpu::gpu::Recorder;
use moe_gpu::kernels::matmul::{ExpertFormat, Glu, WeightFormat};
use moe_gpu::kernels::tiling::TileKind;
use moe_gpu::moe::layer::{CacheRounds, Permutation};
use moe_gpu::moe::{
    CpuOptions, DynamicActivation, ExpertBudget, LayerBuild, MoeLayer, MoeLayerSpec, MoeStep,
    ResidencyOptions, RoutingSpec, StepRecord,
};
use moe_gpu::synthetic::random_moe_weights;

use crate::common;

fn spec(experts: usize, top_k: usize) -> MoeLayerSpec {
    MoeLayerSpec {
        hidden: 32,
        inter: 24,
        routing: RoutingSpec::softmax(experts, top_k, true),
        glu: Glu::Silu,
        expert_bias: false,
        shared_inter: None,
        format: ExpertFormat::uniform(WeightFormat::F32),
    }
}

/// Records and submits one step of `tokens` tokens on whatever the input holds.
fn step(layer: &MoeLayer, tokens: usize) -> StepRecord {
    let ctx = common::ctx();
    let act = DynamicActivation::default();
    let mut rec = Recorder::new(ctx);
    let plan = layer.record(ctx, &mut rec, &MoeStep::new(tokens, &act));
    rec.submit().unwrap();
    plan.unwrap()
}

#[test]
fn a_resident_step_records_what_it_runs() {
    let ctx = common::ctx();
    let s = spec(16, 2);
    let layer = MoeLayer::new(ctx, s.clone(), &random_moe_weights(&s, 1), 130).unwrap();
    let decode = step(&layer, 1);
    assert_eq!(decode.kind, TileKind::Decode);
    assert_eq!(decode.permutation, Permutation::Selection);
    assert!(decode.fused_down_combine, "f32 decode fuses down + combine");
    assert_eq!(decode.cache, None);
    let small = step(&layer, 64);
    assert_eq!(
        (small.kind, small.permutation),
        (TileKind::Prefill, Permutation::Selection)
    );
    assert!(!small.fused_down_combine);
    let large = step(&layer, 65);
    assert_eq!(large.permutation, Permutation::Scan);
    let err = layer
        .record(
            ctx,
            &mut Recorder::new(ctx),
            &MoeStep::new(131, &DynamicActivation::default()),
        )
        .unwrap_err();
    assert!(err.to_string().contains("1 to 130"), "{err}");
}

#[test]
fn a_cached_step_records_its_rounds_and_uploads() {
    let ctx = common::ctx();
    let s = spec(8, 2);
    let w = random_moe_weights(&s, 2);
    let options = ResidencyOptions {
        budget: ExpertBudget::SlotsPerLayer(2),
        prefetch: false,
        cpu: CpuOptions::never(),
        ..Default::default()
    };
    let build = LayerBuild {
        max_tokens: 33,
        io: None,
        buffers: None,
        slots: 2,
        residency: &options,
        layer: 0,
        pool: None,
    };
    let layer = MoeLayer::build(ctx, s, &w, build).unwrap();
    let x: Vec<f32> = (0..33 * 32)
        .map(|i| ((i * 7919) % 97) as f32 / 48.0 - 1.0)
        .collect();
    ctx.queue
        .write_buffer(&layer.x, 0, bytemuck::cast_slice(&x));
    // 33 tokens over 8 experts need more than 2 slots: rounds, every expert uploaded once.
    let many = step(&layer, 33);
    let cache = many.cache.expect("a cached layer reports its cache step");
    assert_eq!(many.permutation, Permutation::CacheRounds);
    assert!(cache.rounds > 1, "{cache:?}");
    assert_eq!(cache.prefetched, 0);
    let stats = layer.stats();
    assert_eq!(cache.uploads as u64, stats.misses);
    assert!(!many.fused_down_combine);
    // One token needs its 2 experts, which fit in one round.
    let one = step(&layer, 1);
    assert_eq!(one.permutation, Permutation::Scan);
    assert!(matches!(one.cache, Some(CacheRounds { rounds: 1, .. })));
    assert!(one.fused_down_combine);
}
