//! Determinism on every fixture: greedy generation (prefill, then decode steps) gives
//! bit-identical logits and tokens across runs, and the same bits with an expert cache of k
//! slots per layer as with every expert resident; an MoE layer's output for a token does not
//! depend on the other tokens of its step; a prompt prefilled in chunks of any size gives the
//! logits of one pass. Split-KV attention is the exception to the last (RELIABILITY.md): with
//! it on, runs are still bit-identical, but chunking changes the bits.
//!
//! `MOE_GPU_DETERMINISM_RUNS` sets the number of runs (default 3).

use moe_gpu::kernels::attention::SplitKv;
use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::model::sampling::argmax;
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec_for};
use moe_gpu::moe::{CpuOptions, ExpertBudget, LayerBuild, MoeLayer, ResidencyOptions};
use moe_gpu::synthetic::Rng;
use moe_gpu::{Context, Logits, Model, ModelOptions};

use crate::common;
use crate::common::fixtures::{ARCHS, Fixture, SETS};

/// Decode steps after the prefill.
const DECODE_STEPS: usize = 6;

fn runs() -> usize {
    std::env::var("MOE_GPU_DETERMINISM_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Every fixture as (label, fixture).
fn fixtures() -> impl Iterator<Item = (String, Fixture)> {
    SETS.into_iter().flat_map(|set| {
        ARCHS
            .into_iter()
            .map(move |arch| (format!("{set}/{arch}"), Fixture::open(set, arch)))
    })
}

fn load(ctx: &Context, fx: &Fixture, options: ModelOptions) -> Model {
    Model::load_with(ctx, &fx.model_dir, &options).unwrap()
}

/// The bits of every step's logits and the tokens of a greedy generation from an empty cache.
fn greedy(ctx: &Context, model: &mut Model, prompt: &[u32]) -> (Vec<Vec<u32>>, Vec<u32>) {
    model.reset();
    let mut logits = model.forward(ctx, prompt, Logits::Last).unwrap();
    let mut steps = vec![bits(&logits)];
    let mut tokens = Vec::new();
    for _ in 0..DECODE_STEPS {
        let next = argmax(&logits);
        tokens.push(next);
        logits = model.forward(ctx, &[next], Logits::Last).unwrap();
        steps.push(bits(&logits));
    }
    (steps, tokens)
}

#[test]
fn greedy_generation_is_bit_identical_across_runs_and_with_an_expert_cache() {
    let ctx = common::ctx();
    let n = runs();
    for (what, fx) in fixtures() {
        let prompt = fx.ids("input_ids");
        let mut full = load(ctx, &fx, ModelOptions::default());
        let k = full.config.moe.routing.top_k;
        let cache = ResidencyOptions {
            budget: ExpertBudget::SlotsPerLayer(k),
            cpu: CpuOptions::never(),
            ..Default::default()
        };
        let mut cached = load(
            ctx,
            &fx,
            ModelOptions {
                residency: cache,
                ..Default::default()
            },
        );
        let want = greedy(ctx, &mut full, &prompt);
        for run in 1..n {
            assert!(greedy(ctx, &mut full, &prompt) == want, "{what}: run {run}");
        }
        // The cache starts empty, then holds what the previous run left: every run hits and
        // misses differently from the resident model, which never misses.
        for run in 0..n {
            let before = cached.residency_stats().misses;
            assert!(
                greedy(ctx, &mut cached, &prompt) == want,
                "{what}: cached run {run}"
            );
            let misses = cached.residency_stats().misses - before;
            assert!(misses > 0, "{what}: cached run {run} never missed");
        }
        assert_eq!(full.residency_stats().misses, 0, "{what}");
    }
}

/// Token rows `rows` of `x` ([_, h]) in that order.
fn gather(x: &[f32], h: usize, rows: &[usize]) -> Vec<f32> {
    rows.iter()
        .flat_map(|&r| x[r * h..(r + 1) * h].iter().copied())
        .collect()
}

/// The last MoE layer of every fixture, resident and as a cache of k slots: eight probe tokens
/// run alone (a decode step: matvec GEMMs, the selection permutes, down and combine fused)
/// give the same bits in steps of 2 to 130 tokens, first or last among random others (prefill
/// tiles; above 64 tokens the scan permutes).
#[test]
fn an_moe_layer_output_does_not_depend_on_the_other_tokens_of_the_step() {
    let ctx = common::ctx();
    let batch = 130;
    for (what, fx) in fixtures() {
        let cfg = ModelConfig::load(&fx.model_dir).unwrap();
        let ckpt = std::sync::Arc::new(Checkpoint::open(&fx.model_dir).unwrap());
        let l = cfg.layers - 1;
        let spec = moe_layer_spec_for(&cfg, l, ExpertFormat::uniform(WeightFormat::F32));
        let weights = load_moe_weights(&ckpt, &cfg, l).unwrap();
        let (h, e, k) = (spec.hidden, spec.routing.experts, spec.routing.top_k);
        assert!(
            k <= e && batch * k > e && batch > 64,
            "{what}: both step kinds"
        );
        let mut rng = Rng::new(l as u64);
        let x = rng.normals(batch * h, 1.0);
        for slots in [e, k] {
            let build = LayerBuild {
                max_tokens: batch,
                io: None,
                buffers: None,
                slots,
                residency: &ResidencyOptions {
                    cpu: CpuOptions::never(),
                    ..Default::default()
                },
                layer: l,
                pool: None,
            };
            let layer = MoeLayer::build(ctx, spec.clone(), &weights, build).unwrap();
            let alone: Vec<Vec<u32>> = (0..8)
                .map(|t| bits(&layer.forward(ctx, &x[t * h..(t + 1) * h]).unwrap()))
                .collect();
            assert!(alone.iter().all(|o| o.iter().any(|&b| b != 0)), "{what}");
            for n in [2, 5, 8, 64, 65, batch] {
                let forward: Vec<usize> = (0..n).collect();
                let backward: Vec<usize> = (0..n).rev().collect();
                for order in [forward, backward] {
                    let out = layer.forward(ctx, &gather(&x, h, &order)).unwrap();
                    for (pos, &t) in order.iter().enumerate().filter(|(_, t)| **t < 8) {
                        let got = bits(&out[pos * h..(pos + 1) * h]);
                        assert!(
                            got == alone[t],
                            "{what} slots {slots}: token {t} at {pos} of {n}"
                        );
                    }
                }
            }
        }
    }
}

/// Every token's logits for a prompt of 20 tokens, prefilled in one pass, in chunks of 3 and
/// token by token (each chunk of 1 a decode-shaped step), then the last token's logits of the
/// whole prompt given at once (which `Model::forward` cuts into chunks of `max_batch`).
fn chunked_logits(ctx: &Context, fx: &Fixture, split_kv: SplitKv) -> Vec<Vec<u32>> {
    let prompt: Vec<u32> = (0..20).map(|i| (i * 7 + 1) % 200).collect();
    [20, 3, 1]
        .into_iter()
        .map(|chunk| {
            let options = ModelOptions {
                max_batch: chunk,
                max_logit_rows: chunk,
                split_kv,
                ..Default::default()
            };
            let mut model = load(ctx, fx, options);
            let mut all = Vec::new();
            for part in prompt.chunks(chunk) {
                all.extend(bits(&model.forward(ctx, part, Logits::All).unwrap()));
            }
            model.reset();
            all.extend(bits(&model.forward(ctx, &prompt, Logits::Last).unwrap()));
            all
        })
        .collect()
}

#[test]
fn prefill_in_chunks_gives_the_logits_of_one_pass() {
    let ctx = common::ctx();
    // Below SplitKv::default().min_keys keys nothing splits.
    for (what, fx) in fixtures() {
        let got = chunked_logits(ctx, &fx, SplitKv::default());
        assert!(got[1] == got[0], "{what}: chunks of 3");
        assert!(got[2] == got[0], "{what}: token by token");
    }
}

/// With split-KV attention on from 4 keys, a one-token step (a decode step) combines partial
/// softmax sums that a prefill step adds in one pass: chunking token by token changes the
/// bits, runs do not.
#[test]
fn split_kv_attention_is_deterministic_but_not_chunk_invariant() {
    let ctx = common::ctx();
    let fx = Fixture::open("hf-tiny", "qwen3_moe");
    let split = SplitKv {
        min_keys: 4,
        min_chunk: 2,
        max_tokens: 1,
    };
    let first = chunked_logits(ctx, &fx, split);
    assert!(chunked_logits(ctx, &fx, split) == first);
    assert!(
        first[2] != first[0],
        "split-KV attention became chunk-invariant: update RELIABILITY.md and this test"
    );
}
