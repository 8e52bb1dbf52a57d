//! Prefetch: layer L+1's router applied to layer L's hidden state predicts L+1's experts, which
//! are uploaded while L computes. Outputs stay bit-identical; the prediction statistics match
//! an independent replay of the routing; a perfect prediction removes every miss.

use moe_gpu::ForwardOptions;
use moe_gpu::gpu::{Recorder, Staging};
use moe_gpu::kernels::INVALID;
use moe_gpu::kernels::matmul::{ExpertFormat, Glu, WeightFormat};
use moe_gpu::moe::{
    CpuOptions, DynamicActivation, ExpertBudget, LayerBuild, MoeLayer, MoeLayerSpec, MoeStack,
    MoeStep, MoeWeights, Policy, ResidencyOptions, ResidencyStats, RoutingSpec,
};
use moe_gpu::synthetic::{Rng, random_moe_weights};

use crate::common;

const HIDDEN: usize = 40;

fn spec(experts: usize, k: usize) -> MoeLayerSpec {
    MoeLayerSpec {
        hidden: HIDDEN,
        inter: 24,
        routing: RoutingSpec::softmax(experts, k, false),
        glu: Glu::Silu,
        expert_bias: false,
        shared_inter: None,
        format: ExpertFormat::uniform(WeightFormat::F32),
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

fn residency(budget: ExpertBudget, prefetch: bool) -> ResidencyOptions {
    ResidencyOptions {
        budget,
        policy: Policy::Lru,
        prefetch,
        record_trace: false,
        cpu: CpuOptions::never(),
    }
}

/// Per step of `chunk` tokens, the distinct experts `w` routes `x` to.
fn routed_sets(spec: &MoeLayerSpec, w: &MoeWeights, x: &[f32], chunk: usize) -> Vec<Vec<bool>> {
    let ctx = common::ctx();
    let layer = MoeLayer::new(ctx, spec.clone(), w, chunk).unwrap();
    let out = layer
        .forward_with(
            ctx,
            x,
            &ForwardOptions {
                capture_routing: true,
                ..Default::default()
            },
        )
        .unwrap();
    let ids = out.topk_ids.unwrap();
    ids.chunks(chunk * spec.routing.top_k)
        .map(|step| {
            let mut used = vec![false; spec.routing.experts];
            step.iter()
                .filter(|&&id| id != INVALID)
                .for_each(|&id| used[id as usize] = true);
            used
        })
        .collect()
}

#[test]
fn prefetch_in_a_stack_keeps_outputs_and_predicts_as_replayed() {
    let ctx = common::ctx();
    let (e, k, layers, tokens) = (16, 2, 3, 24);
    let spec = spec(e, k);
    let weights: Vec<MoeWeights> = (0..layers)
        .map(|l| random_moe_weights(&spec, 40 + l as u64))
        .collect();
    let x = Rng::new(8).normals(tokens * HIDDEN, 1.0);
    let act = DynamicActivation::default();
    for chunk in [1, 3] {
        let run = |options: ResidencyOptions| {
            let stack = MoeStack::new(ctx, &spec, &weights, chunk, &options).unwrap();
            (stack.forward(ctx, &x, &act).unwrap(), stack.stats())
        };
        let (full, full_stats) = run(residency(ExpertBudget::Auto, true));
        let (plain, plain_stats) = run(residency(ExpertBudget::SlotsPerLayer(6), false));
        let (pre, pre_stats) = run(residency(ExpertBudget::SlotsPerLayer(6), true));
        assert_eq!(
            bits(&plain),
            bits(&full),
            "{chunk}-token steps, no prefetch"
        );
        assert_eq!(bits(&pre), bits(&full), "{chunk}-token steps, prefetch");

        assert_eq!((full_stats.readbacks, full_stats.prefetch_uploads), (0, 0));
        let eb = plain_stats.per_layer[0].expert_bytes;
        assert_eq!(plain_stats.prefetch_uploads, 0);
        assert_eq!(plain_stats.prefetch_precision, None);
        assert_eq!(
            plain_stats.experts_ever_uploaded,
            plain_stats.experts_ever_activated
        );
        assert_eq!(plain_stats.bytes_uploaded, plain_stats.misses * eb);

        let s: &ResidencyStats = &pre_stats;
        assert_eq!(s.bytes_uploaded, (s.misses + s.prefetch_uploads) * eb);
        assert_eq!(s.hits + s.misses, plain_stats.hits + plain_stats.misses);
        assert!(s.prefetch_hits <= s.hits && s.prefetch_hits <= s.prefetch_uploads);
        assert!(s.prefetch_uploads > 0);
        assert!(s.experts_ever_uploaded >= s.experts_ever_activated);
        assert_eq!(
            s.per_layer[0].predicted, 0,
            "nothing predicts the first layer"
        );

        // Replay: layer l+1's routing of layer l's input (predicted) against its own input.
        let mut inputs = vec![x.clone()];
        for w in &weights {
            let layer = MoeLayer::new(ctx, spec.clone(), w, chunk).unwrap();
            let next = layer.forward(ctx, inputs.last().unwrap()).unwrap();
            inputs.push(next);
        }
        for l in 1..layers {
            let predicted = routed_sets(&spec, &weights[l], &inputs[l - 1], chunk);
            let actual = routed_sets(&spec, &weights[l], &inputs[l], chunk);
            let count = |f: &dyn Fn(usize, usize) -> bool| -> u64 {
                (0..predicted.len())
                    .map(|s| (0..e).filter(|&x| f(s, x)).count() as u64)
                    .sum()
            };
            let got = &s.per_layer[l];
            assert_eq!(got.predicted, count(&|s, x| predicted[s][x]), "layer {l}");
            assert_eq!(
                got.predicted_and_activated,
                count(&|s, x| predicted[s][x] && actual[s][x]),
                "layer {l}"
            );
            assert_eq!(got.activated_when_predicted, count(&|s, x| actual[s][x]));
        }
        let (p, r) = (s.prefetch_precision.unwrap(), s.prefetch_recall.unwrap());
        assert!((0.0..=1.0).contains(&p) && (0.0..=1.0).contains(&r));
    }
}

#[test]
fn a_perfect_prediction_leaves_no_misses() {
    // Layer B predicts from its own input buffer, so the prediction is exact: every expert B
    // needs is uploaded during A's step and B's own steps only hit.
    let ctx = common::ctx();
    let (e, k, chunk, slots) = (16, 2, 2, 4);
    let spec = spec(e, k);
    let (wa, wb) = (random_moe_weights(&spec, 3), random_moe_weights(&spec, 4));
    let bytes = (chunk * HIDDEN * 4) as u64;
    let x = ctx.storage("shared input", bytes).unwrap();
    let options = residency(ExpertBudget::SlotsPerLayer(slots), true);
    let build = |io: (wgpu::Buffer, wgpu::Buffer), slots| LayerBuild {
        max_tokens: chunk,
        io: Some(io),
        buffers: None,
        slots,
        residency: &options,
        layer: 0,
        pool: None,
    };
    let out = |label| ctx.storage(label, bytes).unwrap();
    let a = MoeLayer::build(ctx, spec.clone(), &wa, build((x.clone(), out("a")), slots)).unwrap();
    let mut b =
        MoeLayer::build(ctx, spec.clone(), &wb, build((x.clone(), out("b")), slots)).unwrap();
    assert!(b.attach_predictor(ctx, &x).unwrap());
    let full = MoeLayer::build(ctx, spec.clone(), &wb, build((x.clone(), out("f")), e)).unwrap();
    assert!(!full.is_cached());
    let staging = Staging::new(ctx, "outputs", 2 * bytes).unwrap();
    let act = DynamicActivation::default();
    let mut rng = Rng::new(12);
    for step in 0..12 {
        let input = rng.normals(chunk * HIDDEN, 1.0);
        ctx.queue.write_buffer(&x, 0, bytemuck::cast_slice(&input));
        let mut rec = Recorder::new(ctx);
        let plain = MoeStep::new(chunk, &act);
        let with_next = MoeStep {
            next: Some((&b, &act)),
            ..plain
        };
        a.record(ctx, &mut rec, &with_next).unwrap();
        b.record(ctx, &mut rec, &plain).unwrap();
        full.record(ctx, &mut rec, &plain).unwrap();
        rec.copy(&b.out, 0, &staging, 0, bytes);
        rec.copy(&full.out, 0, &staging, bytes, bytes);
        rec.submit().unwrap();
        let got: Vec<f32> = staging.read(ctx, 2 * chunk * HIDDEN).unwrap();
        let (cached, resident) = got.split_at(chunk * HIDDEN);
        assert_eq!(bits(cached), bits(resident), "step {step}");
    }
    let s = b.stats();
    assert_eq!(s.misses, 0, "every needed expert was prefetched");
    assert!(s.prefetch_uploads > 0);
    assert_eq!(
        s.prefetch_hits, s.prefetch_uploads,
        "every prefetched expert was used"
    );
    assert_eq!(s.predicted, s.predicted_and_activated);
    assert_eq!(s.activated_when_predicted, s.predicted_and_activated);
    assert_eq!(s.bytes_uploaded, s.prefetch_uploads * s.expert_bytes);
}

#[test]
fn prefetch_needs_a_large_enough_hidden_buffer() {
    let ctx = common::ctx();
    let spec = spec(8, 2);
    let w = random_moe_weights(&spec, 1);
    let options = residency(ExpertBudget::SlotsPerLayer(2), true);
    let build = LayerBuild {
        max_tokens: 4,
        io: None,
        buffers: None,
        slots: 2,
        residency: &options,
        layer: 1,
        pool: None,
    };
    let mut layer = MoeLayer::build(ctx, spec, &w, build).unwrap();
    let small = ctx.storage("small", 16).unwrap();
    let err = layer.attach_predictor(ctx, &small).unwrap_err().to_string();
    assert!(err.contains("prefetch hidden-state buffer"), "{err}");
    let resident = MoeLayer::new(ctx, self::spec(8, 2), &w, 4).unwrap();
    let mut resident = resident;
    assert!(
        !resident.attach_predictor(ctx, &small).unwrap(),
        "nothing to prefetch"
    );
}
