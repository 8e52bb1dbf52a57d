//! The generation API beyond the fixture match: chunked prefill, stop tokens from config.json
//! and generation_config.json, the context limit, seeded sampling, f16 weights, tied
//! embeddings, an expert cache, and clear errors for bad input.

use moe_gpu::kernels::matmul::WeightFormat;
use moe_gpu::model::generate::FinishReason;
use moe_gpu::moe::{CpuOptions, ExpertBudget, ResidencyOptions};
use moe_gpu::{GenerateOptions, Logits, Model, ModelOptions, Sampling, stop_tokens};
use serde_json::json;

use crate::common;
use crate::common::edit::edited_model;
use crate::common::fixtures::Fixture;

fn max_abs_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len());
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
}

fn load(fx: &Fixture, options: ModelOptions) -> Model {
    Model::load_with(common::ctx(), &fx.model_dir, &options).unwrap()
}

fn err_of<T>(r: moe_gpu::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn prefill_in_several_steps_matches_one_pass() {
    let ctx = common::ctx();
    for arch in ["qwen3_moe", "deepseek_v3", "gpt_oss"] {
        let fx = Fixture::open("hf-tiny-alt", arch);
        let mut model = load(
            &fx,
            ModelOptions {
                max_batch: 3,
                ..Default::default()
            },
        );
        let vocab = model.config.vocab;
        let logits = model
            .forward(ctx, &fx.ids("input_ids"), Logits::Last)
            .unwrap();
        let err = max_abs_err(&logits, &fx.f32("generate.step_logits")[..vocab]);
        assert!(err <= 1e-3, "{arch}: chunked prefill error {err:e}");
    }
}

#[test]
fn generation_stops_at_eos_from_config_or_generation_config() {
    let ctx = common::ctx();
    // Its first five new tokens are distinct and none is 0.
    let fx = Fixture::open("hf-tiny", "gpt_oss");
    let prompt = fx.ids("input_ids");
    let sequence = fx.ids("generate.sequences");
    let third = sequence[prompt.len() + 2];
    let fifth = sequence[prompt.len() + 4];
    // Config says eos = [unused, fifth]; generation_config.json adds the third new token.
    let d = edited_model(
        &fx.model_dir,
        "eos",
        |_| {},
        |c| c["eos_token_id"] = json!([0, fifth]),
    );
    std::fs::write(
        d.join("generation_config.json"),
        json!({ "eos_token_id": third }).to_string(),
    )
    .unwrap();
    let mut model = Model::load(ctx, &d).unwrap();
    let stop = stop_tokens(&d, &model.config).unwrap();
    assert!(stop.contains(&third) && stop.contains(&fifth) && stop.contains(&0));
    let options = GenerateOptions {
        max_new_tokens: 8,
        stop_tokens: stop.clone(),
        ..GenerateOptions::for_model(&model)
    };
    let mut g = model.generate(ctx, &prompt, options.clone()).unwrap();
    let got: Vec<u32> = g.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, &sequence[prompt.len()..prompt.len() + 2]);
    assert_eq!(g.finish_reason(), Some(FinishReason::Stop));
    let ignoring = GenerateOptions {
        ignore_eos: true,
        ..options
    };
    let mut g = model.generate(ctx, &prompt, ignoring).unwrap();
    let got: Vec<u32> = g.by_ref().collect::<Result<_, _>>().unwrap();
    assert_eq!(got, &sequence[prompt.len()..]);
    assert_eq!(g.finish_reason(), Some(FinishReason::Length));
}

#[test]
fn generation_ends_when_the_context_is_full() {
    let ctx = common::ctx();
    let fx = Fixture::open("hf-tiny", "olmoe");
    let prompt = fx.ids("input_ids");
    let mut model = load(
        &fx,
        ModelOptions {
            max_context: Some(prompt.len() + 3),
            ..Default::default()
        },
    );
    let options = GenerateOptions {
        max_new_tokens: 10,
        ignore_eos: true,
        ..GenerateOptions::for_model(&model)
    };
    let mut g = model.generate(ctx, &prompt, options).unwrap();
    let got: Vec<u32> = g.by_ref().collect::<Result<_, _>>().unwrap();
    // The cache holds prompt + 3 tokens; the 4th token is sampled from the last of them.
    assert_eq!(got.len(), 4);
    assert_eq!(g.finish_reason(), Some(FinishReason::Context));
}

#[test]
fn a_seed_makes_sampling_reproducible() {
    let ctx = common::ctx();
    let fx = Fixture::open("hf-tiny", "qwen2_moe");
    let prompt = fx.ids("input_ids");
    let mut model = load(&fx, ModelOptions::default());
    let mut run = |seed| -> Vec<u32> {
        let options = GenerateOptions {
            max_new_tokens: 12,
            sampling: Sampling::Random {
                temperature: 1.5,
                top_k: Some(50),
                top_p: Some(0.95),
                seed,
            },
            ignore_eos: true,
            ..GenerateOptions::for_model(&model)
        };
        model
            .generate(ctx, &prompt, options)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let a = run(11);
    assert_eq!(a, run(11));
    assert_ne!(a, run(12), "two seeds drew the same 12 tokens");
}

/// A chat's next turn: the cache keeps the tokens the new prompt starts with, and only the rest
/// is prefilled, with the tokens of a generation from an empty cache.
#[test]
fn generation_after_a_kept_prefix_matches_one_from_scratch() {
    let ctx = common::ctx();
    let fx = Fixture::open("hf-tiny", "olmoe");
    let prompt = fx.ids("input_ids");
    let mut model = load(&fx, ModelOptions::default());
    let options = GenerateOptions {
        max_new_tokens: 6,
        sampling: Sampling::Greedy,
        ignore_eos: true,
        ..GenerateOptions::for_model(&model)
    };
    let run = |model: &mut Model, keep| -> (Vec<u32>, usize) {
        let mut g = model
            .generate_after(ctx, keep, &prompt, options.clone())
            .unwrap();
        let tokens = g.by_ref().collect::<Result<Vec<_>, _>>().unwrap();
        (tokens, g.stats().cached_tokens)
    };
    model.reset();
    let (want, none) = run(&mut model, 0);
    assert_eq!(none, 0);
    // The cache now holds the prompt and the answer: keep the prompt's first 4 tokens, then
    // all of it (its last token is prefilled again, for its logits).
    for (keep, cached) in [(4, 4), (prompt.len(), prompt.len() - 1)] {
        assert_eq!(run(&mut model, keep), (want.clone(), cached));
    }
    model.reset();
    let err = err_of(model.generate_after(ctx, 1, &prompt, options));
    assert!(err.contains("cannot keep 1 tokens"), "{err}");
}

#[test]
fn f16_experts_stay_close_to_f32() {
    let ctx = common::ctx();
    let fx = Fixture::open("hf-tiny-alt", "mixtral");
    let mut model = load(
        &fx,
        ModelOptions {
            expert_format: Some(WeightFormat::F16),
            dense_format: WeightFormat::F16,
            ..Default::default()
        },
    );
    let vocab = model.config.vocab;
    let logits = model
        .forward(ctx, &fx.ids("input_ids"), Logits::Last)
        .unwrap();
    let err = max_abs_err(&logits, &fx.f32("generate.step_logits")[..vocab]);
    assert!(err <= 2e-2, "f16 weights: logit error {err:e}");
}

#[test]
fn bad_input_is_a_clear_error() {
    let ctx = common::ctx();
    let fx = Fixture::open("hf-tiny", "deepseek_v2");
    let mut model = load(&fx, ModelOptions::default());
    let vocab = model.config.vocab as u32;
    let options = GenerateOptions::for_model(&model);

    let err = err_of(model.generate(ctx, &[1, vocab], options.clone()));
    assert!(
        err.contains(&format!("{vocab}")) && err.contains("vocabulary"),
        "{err}"
    );
    let err = err_of(model.generate(ctx, &[], options.clone()));
    assert!(err.contains("empty"), "{err}");
    let err = err_of(model.forward(ctx, &[], Logits::Last));
    assert!(err.contains("empty"), "{err}");

    let max_positions = model.config.max_positions;
    let context = model.limits.context;
    let long = vec![3u32; context + 1];
    let err = err_of(model.generate(ctx, &long, options.clone()));
    assert!(
        err.contains("context") && err.contains(&context.to_string()),
        "{err}"
    );
    let err = err_of(model.forward(ctx, &[3, 4], Logits::All));
    assert!(err.contains("max_logit_rows"), "{err}");

    // A context beyond max_position_embeddings cannot be configured.
    let err = err_of(Model::load_with(
        ctx,
        &fx.model_dir,
        &ModelOptions {
            max_context: Some(max_positions + 1),
            ..Default::default()
        },
    ));
    assert!(err.contains("max_position_embeddings"), "{err}");
    let err = err_of(Model::load_with(
        ctx,
        &fx.model_dir,
        &ModelOptions {
            max_batch: 0,
            ..Default::default()
        },
    ));
    assert!(err.contains("max_batch"), "{err}");

    // A missing or misshapen attention tensor is named.
    let d = edited_model(
        &fx.model_dir,
        "no-kv-b",
        |t| {
            t.remove("model.layers.1.self_attn.kv_b_proj.weight");
        },
        |_| {},
    );
    let err = err_of(Model::load(ctx, &d));
    assert!(
        err.contains("model.layers.1.self_attn.kv_b_proj.weight"),
        "{err}"
    );
}

#[test]
fn tied_embeddings_use_the_embedding_matrix_as_lm_head() {
    let ctx = common::ctx();
    let fx = Fixture::open("hf-tiny-alt", "olmoe");
    let prompt = fx.ids("input_ids");
    // Untied, with lm_head.weight replaced by the embedding matrix ...
    let untied = edited_model(
        &fx.model_dir,
        "lm-head-is-embed",
        |t| {
            let embed = t["model.embed_tokens.weight"].clone();
            t.insert("lm_head.weight".into(), embed);
        },
        |_| {},
    );
    // ... must equal the tied model without an lm_head tensor.
    let tied = edited_model(
        &fx.model_dir,
        "tied",
        |t| {
            t.remove("lm_head.weight");
        },
        |c| c["tie_word_embeddings"] = json!(true),
    );
    let run = |d: &std::path::Path| {
        Model::load(ctx, d)
            .unwrap()
            .forward(ctx, &prompt, Logits::Last)
            .unwrap()
    };
    let (a, b) = (run(&untied), run(&tied));
    assert_eq!(a, b);
    let own = Model::load(ctx, &fx.model_dir)
        .unwrap()
        .forward(ctx, &prompt, Logits::Last)
        .unwrap();
    assert_ne!(a, own, "the edit changed nothing");
}

#[test]
fn a_model_can_move_to_a_worker_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Model>();
}

#[test]
fn an_expert_cache_of_k_slots_generates_like_full_residency() {
    let ctx = common::ctx();
    for (set, arch) in [("hf-tiny", "mixtral"), ("hf-tiny-alt", "deepseek_v3")] {
        let fx = Fixture::open(set, arch);
        let k = fx.ids("layers.1.moe.topk_ids").len() / fx.ids("input_ids").len();
        let mut model = load(
            &fx,
            ModelOptions {
                residency: ResidencyOptions {
                    budget: ExpertBudget::SlotsPerLayer(k),
                    cpu: CpuOptions::never(),
                    ..Default::default()
                },
                ..Default::default()
            },
        );
        let vocab = model.config.vocab;
        let prompt = fx.ids("input_ids");
        let sequence = fx.ids("generate.sequences");
        let steps = fx.f32("generate.step_logits");
        let first = model.forward(ctx, &prompt, Logits::Last).unwrap();
        let err = max_abs_err(&first, &steps[..vocab]);
        assert!(err <= 1e-3, "{set}/{arch}: cached prefill error {err:e}");
        let options = GenerateOptions {
            max_new_tokens: sequence.len() - prompt.len(),
            ignore_eos: true,
            ..GenerateOptions::for_model(&model)
        };
        let got: Vec<u32> = model
            .generate(ctx, &prompt, options)
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(got, &sequence[prompt.len()..], "{set}/{arch}");
        let stats = model.residency_stats();
        assert!(
            stats.misses > 0 && stats.readbacks > 0,
            "{set}/{arch}: no cache traffic"
        );
    }
}

/// Loading reports its progress after every layer, in checkpoint bytes that only grow and end at
/// the total; with the experts in a cache they are not read at load and count for nothing.
#[test]
fn loading_reports_its_progress_in_bytes() {
    let ctx = common::ctx();
    let fx = Fixture::open("hf-tiny", "mixtral");
    let load = |options: &ModelOptions| {
        let mut seen = Vec::new();
        Model::load_observed(ctx, &fx.model_dir, options, &mut |p| seen.push(p)).unwrap();
        seen
    };
    let resident = load(&ModelOptions::default());
    let cached = load(&ModelOptions {
        residency: ResidencyOptions {
            budget: ExpertBudget::SlotsPerLayer(2),
            ..Default::default()
        },
        ..Default::default()
    });
    for seen in [&resident, &cached] {
        let last = *seen.last().unwrap();
        assert_eq!(seen.len(), 2 + 2, "start, two layers, the head");
        assert!(last.total > 0 && last.done == last.total, "{seen:?}");
        assert!(seen.windows(2).all(|w| w[0].done <= w[1].done), "{seen:?}");
    }
    assert_eq!(resident[0].total - cached[0].total, expert_bytes(&fx));
}

/// Bytes of the fixture's routed expert tensors in its checkpoint.
fn expert_bytes(fx: &Fixture) -> u64 {
    let ckpt = moe_gpu::model::Checkpoint::open(&fx.model_dir).unwrap();
    ckpt.names()
        .filter(|n| n.contains(".experts."))
        .map(|n| ckpt.bytes(n).unwrap().len() as u64)
        .sum()
}
