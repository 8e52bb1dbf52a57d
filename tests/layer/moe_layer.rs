//! The whole MoE layer (router, select, permutation, grouped GEMMs, shared expert, combine)
//! against `reference::moe_block` over shape sweeps and edge cases, plus determinism and
//! batch invariance.

use moe_gpu::gpu::Recorder;
use moe_gpu::kernels::matmul::{ExpertFormat, Glu, WeightFormat};
use moe_gpu::moe::{
    DynamicActivation, ForwardOptions, GroupScore, MoeLayer, MoeLayerSpec, MoeStep, MoeWeights,
    RoutingSpec, Scoring,
};
use moe_gpu::reference::moe_block;
use moe_gpu::synthetic::{Rng, random_moe_weights};

use crate::common;

fn spec(hidden: usize, inter: usize, routing: RoutingSpec) -> MoeLayerSpec {
    MoeLayerSpec {
        hidden,
        inter,
        routing,
        glu: Glu::Silu,
        expert_bias: false,
        shared_inter: None,
        format: ExpertFormat::uniform(WeightFormat::F32),
    }
}

fn check(spec: &MoeLayerSpec, w: &MoeWeights, x: &[f32], max_tokens: usize, what: &str) {
    let ctx = common::ctx();
    let layer = MoeLayer::new(ctx, spec.clone(), w, max_tokens).unwrap();
    let opts = ForwardOptions {
        capture_routing: true,
        ..Default::default()
    };
    let got = layer.forward_with(ctx, x, &opts).unwrap();
    let want = moe_block(x, spec, w, &DynamicActivation::default()).unwrap();
    let k = spec.routing.top_k;
    common::assert_close(
        &format!("{what} logits"),
        got.router_logits.as_ref().unwrap(),
        &want.router_logits,
        1e-5,
    );
    common::assert_same_routing(
        what,
        k,
        got.topk_ids.as_ref().unwrap(),
        got.topk_weights.as_ref().unwrap(),
        &want.topk_ids,
        &want.topk_weights,
        1e-5,
    );
    common::assert_close(&format!("{what} output"), &got.output, &want.output, 1e-4);
}

/// Shapes not multiples of any tile, cycled through the sweep.
const SIZES: [(usize, usize); 3] = [(37, 29), (64, 48), (20, 70)];

#[test]
fn layer_matches_reference_over_tokens_experts_and_k() {
    let mut n = 0;
    for tokens in [1usize, 2, 7, 33, 130] {
        for e in [4usize, 6, 8, 16, 60] {
            for k in [1usize, 2, 4, 8].into_iter().filter(|k| *k <= e) {
                let (h, i) = SIZES[n % SIZES.len()];
                n += 1;
                let s = spec(h, i, RoutingSpec::softmax(e, k, n % 2 == 0));
                let w = random_moe_weights(&s, n as u64);
                let x = Rng::new(n as u64).normals(tokens * h, 1.0);
                check(
                    &s,
                    &w,
                    &x,
                    tokens,
                    &format!("T={tokens} E={e} k={k} H={h} I={i}"),
                );
            }
        }
    }
}

#[test]
fn every_family_with_shared_experts_and_biases() {
    let gated = RoutingSpec {
        shared_gate: true,
        ..RoutingSpec::softmax(12, 3, false)
    };
    let v3 = RoutingSpec {
        scoring: Scoring::Sigmoid,
        correction_bias: true,
        group: GroupScore::TopTwoSum,
        n_group: 4,
        topk_group: 2,
        renormalize: true,
        renorm_eps: 1e-20,
        scale: 2.5,
        ..RoutingSpec::softmax(12, 3, false)
    };
    let v2 = RoutingSpec {
        group: GroupScore::Max,
        n_group: 3,
        topk_group: 2,
        scale: 4.0,
        ..RoutingSpec::softmax(12, 3, false)
    };
    let oss = RoutingSpec {
        scoring: Scoring::TopKThenSoftmax,
        router_bias: true,
        ..RoutingSpec::softmax(6, 2, false)
    };
    let cases = [
        MoeLayerSpec {
            shared_inter: Some(44),
            ..spec(37, 29, gated.clone())
        },
        MoeLayerSpec {
            shared_inter: Some(58),
            ..spec(37, 29, v3)
        },
        MoeLayerSpec {
            shared_inter: Some(29),
            ..spec(40, 29, v2)
        },
        MoeLayerSpec {
            glu: Glu::ClampedSwiglu {
                limit: 1.25,
                alpha: 1.702,
            },
            expert_bias: true,
            ..spec(37, 21, oss)
        },
    ];
    for (c, s) in cases.iter().enumerate() {
        let w = random_moe_weights(s, 40 + c as u64);
        for tokens in [1usize, 7, 45] {
            let x = Rng::new(tokens as u64).normals(tokens * s.hidden, 1.0);
            check(
                s,
                &w,
                &x,
                tokens,
                &format!("{} T={tokens}", s.routing.describe()),
            );
        }
    }
}

#[test]
fn all_tokens_on_one_expert_and_empty_experts() {
    // A router with one dominant row sends every token to expert 5 (and k-1 others).
    let s = spec(37, 29, RoutingSpec::softmax(16, 2, true));
    let mut w = random_moe_weights(&s, 7);
    for c in 0..37 {
        w.router[5 * 37 + c] = 0.0;
    }
    w.router[5 * 37] = 50.0;
    let mut x = Rng::new(2).normals(130 * 37, 0.1);
    for t in 0..130 {
        x[t * 37] = 1.0;
    }
    check(&s, &w, &x, 130, "one hot expert");
}

#[test]
fn more_tokens_than_max_tokens_run_in_chunks() {
    let s = spec(37, 29, RoutingSpec::softmax(8, 2, true));
    let w = random_moe_weights(&s, 3);
    let x = Rng::new(3).normals(45 * 37, 1.0);
    check(&s, &w, &x, 16, "chunked");
}

#[test]
fn f16_experts_stay_within_stated_error_of_f32() {
    let ctx = common::ctx();
    let s32 = spec(64, 48, RoutingSpec::softmax(16, 4, true));
    let s16 = MoeLayerSpec {
        format: ExpertFormat::uniform(WeightFormat::F16),
        ..s32.clone()
    };
    let w = random_moe_weights(&s32, 5);
    let x = Rng::new(5).normals(33 * 64, 1.0);
    let a = MoeLayer::new(ctx, s32, &w, 33)
        .unwrap()
        .forward(ctx, &x)
        .unwrap();
    let b = MoeLayer::new(ctx, s16, &w, 33)
        .unwrap()
        .forward(ctx, &x)
        .unwrap();
    // f16 weights: relative error ~2^-11 per weight; stated bound 5e-3 scaled by max(1, |ref|).
    common::assert_close("f16 vs f32 layer", &b, &a, 5e-3);
}

#[test]
fn output_is_bit_identical_across_repeated_runs() {
    let ctx = common::ctx();
    let s = spec(37, 29, RoutingSpec::softmax(16, 4, true));
    let w = random_moe_weights(&s, 9);
    let layer = MoeLayer::new(ctx, s, &w, 130).unwrap();
    let x = Rng::new(9).normals(130 * 37, 1.0);
    let first = layer.forward(ctx, &x).unwrap();
    for run in 1..10 {
        let again = layer.forward(ctx, &x).unwrap();
        assert!(
            first
                .iter()
                .zip(&again)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "run {run} differs"
        );
    }
}

#[test]
fn a_token_gives_the_same_bits_whatever_its_neighbours() {
    let ctx = common::ctx();
    let s = spec(37, 29, RoutingSpec::softmax(16, 4, true));
    let w = random_moe_weights(&s, 10);
    let layer = MoeLayer::new(ctx, s, &w, 33).unwrap();
    let probe = Rng::new(100).normals(37, 1.0);
    let mut outs = Vec::new();
    for seed in 0..3u64 {
        let mut x = Rng::new(seed).normals(33 * 37, 1.0);
        let at = (seed as usize * 11) % 33;
        x[at * 37..(at + 1) * 37].copy_from_slice(&probe);
        let y = layer.forward(ctx, &x).unwrap();
        outs.push(y[at * 37..(at + 1) * 37].to_vec());
    }
    // Alone (a decode-sized step) as well as inside batches of 33.
    outs.push(layer.forward(ctx, &probe).unwrap());
    for o in &outs[1..] {
        assert!(
            o.iter()
                .zip(&outs[0])
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "batch invariance broken"
        );
    }
}

/// A decode step (one token: the matvec, with the down projection fused into the combine)
/// gives the bits of the same token inside a prefill batch (register tiles, separate down GEMM
/// and combine), with a gated shared expert, expert biases and every format the fused path
/// takes (all but int8).
#[test]
fn fused_decode_down_and_combine_give_the_bits_of_the_batched_path() {
    let ctx = common::ctx();
    let gated = RoutingSpec {
        shared_gate: true,
        ..RoutingSpec::softmax(16, 4, true)
    };
    for format in WeightFormat::ALL
        .into_iter()
        .filter(|&f| f != WeightFormat::Int8)
    {
        let s = MoeLayerSpec {
            shared_inter: Some(44),
            expert_bias: true,
            format: ExpertFormat::uniform(format),
            ..spec(37, 29, gated.clone())
        };
        let w = random_moe_weights(&s, 11);
        let layer = MoeLayer::new(ctx, s, &w, 33).unwrap();
        let probe = Rng::new(101).normals(37, 1.0);
        let mut x = Rng::new(5).normals(33 * 37, 1.0);
        x[20 * 37..21 * 37].copy_from_slice(&probe);
        let batched = layer.forward(ctx, &x).unwrap()[20 * 37..21 * 37].to_vec();
        let alone = layer.forward(ctx, &probe).unwrap();
        assert!(
            alone
                .iter()
                .zip(&batched)
                .all(|(a, b)| a.to_bits() == b.to_bits()),
            "{format:?}: decode step differs from the batched token"
        );
    }
}

/// A dispatch reads its parameter block when its submission runs, so recording a layer twice
/// for one submission with different token counts would run both with the second's: the
/// kernels refuse it (debug builds), and allow it once the first recording was submitted or
/// discarded. (Its own context: other tests' submits would advance the shared one's epoch.)
#[cfg(debug_assertions)]
#[test]
fn parameters_may_not_change_under_a_recorded_dispatch() {
    common::ctx();
    let own = moe_gpu::Context::new().unwrap();
    own.set_autotune(false);
    let ctx = &own;
    let s = spec(24, 16, RoutingSpec::softmax(6, 2, true));
    let layer = MoeLayer::new(ctx, s.clone(), &random_moe_weights(&s, 3), 4).unwrap();
    let act = DynamicActivation::default();
    let record = |rec: &mut Recorder, tokens: usize| {
        layer
            .record(ctx, rec, &MoeStep::new(tokens, &act))
            .map(|_| ())
    };
    let steps = |tokens: &[usize]| {
        let mut rec = Recorder::new(ctx);
        for &t in tokens {
            record(&mut rec, t)?;
        }
        Ok::<_, moe_gpu::Error>(rec.into_encoder().finish())
    };
    ctx.submit([steps(&[2]).unwrap()]).unwrap();
    ctx.discard(steps(&[3]).unwrap());
    ctx.submit([steps(&[1]).unwrap()]).unwrap();
    let twice = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| steps(&[2, 3])));
    let message = twice
        .err()
        .and_then(|p| p.downcast_ref::<String>().cloned())
        .unwrap_or_default();
    assert!(
        message.contains("parameters changed after a dispatch was recorded"),
        "`{message}`"
    );
    ctx.wait().unwrap();
}
