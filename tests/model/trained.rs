//! The trained model at tests/fixtures/trained-moe (scripts/train_tiny_moe.py: a Qwen3-MoE
//! trained on the King James Bible, stored in bf16): its tokenizer, greedy continuation and
//! held-out perplexity match what transformers computed from the same checkpoint
//! (training.json), and recovery after pruning half its experts, fit on the teacher's own
//! layer inputs, lowers every layer's calibration loss.

use std::path::PathBuf;
use std::sync::Arc;

use moe_gpu::model::collect_calibration::split;
use moe_gpu::model::eval::evaluate_alone;
use moe_gpu::model::{Checkpoint, load_moe_weights, moe_layer_spec_for};
use moe_gpu::prune::{LayerInput, LayerPlan, Replacements, layer_inputs, recover_layer};
use moe_gpu::spec::{ExpertFormat, WeightFormat};
use moe_gpu::{GenerateOptions, Model, ModelOptions, Tokenizer};
use safetensors::Dtype;
use serde_json::Value;

use crate::common;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/trained-moe")
}

fn record() -> Value {
    let text = std::fs::read_to_string(dir().join("training.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn options(rows: usize) -> ModelOptions {
    ModelOptions {
        max_batch: rows,
        max_logit_rows: rows,
        max_context: Some(rows),
        ..Default::default()
    }
}

#[test]
fn greedy_continuation_and_perplexity_match_transformers() {
    let ctx = common::ctx();
    let rec = record();
    let tok = Tokenizer::load(&dir()).unwrap();
    let prompt = ids(&rec["prompt_ids"]);
    assert_eq!(tok.encode(rec["prompt"].as_str().unwrap()).unwrap(), prompt);
    let rows = rec["heldout_eval_len"].as_u64().unwrap() as usize;
    let mut model = Model::load_with(ctx, &dir(), &options(rows)).unwrap();
    let want = ids(&rec["greedy_ids"]);
    let generate = GenerateOptions {
        max_new_tokens: want.len(),
        ignore_eos: true,
        ..GenerateOptions::for_model(&model)
    };
    let got: Vec<u32> = model
        .generate(ctx, &prompt, generate)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(got, want, "greedy continuation of {:?}", rec["prompt"]);

    let text = std::fs::read_to_string(dir().join("heldout.txt")).unwrap();
    let first = rec["first_rows"].as_u64().unwrap() as usize;
    let sequences: Vec<Vec<u32>> = split(&tok.encode(&text).unwrap(), rows)
        .into_iter()
        .take(first)
        .collect();
    let got = evaluate_alone(ctx, &mut model, &sequences, &mut |_, _| {})
        .unwrap()
        .perplexity;
    let want = rec["first_rows_perplexity"].as_f64().unwrap();
    assert!(
        (got / want - 1.0).abs() < 1e-4,
        "perplexity of the first {first} held-out rows: {got} here, {want} in transformers"
    );
}

#[test]
fn recovery_lowers_every_layers_loss_at_half_the_experts() {
    let ctx = common::ctx();
    let mut model = Model::load_with(ctx, &dir(), &options(128)).unwrap();
    let cfg = model.config.clone();
    let tok = Tokenizer::load(&dir()).unwrap();
    let text = std::fs::read_to_string(dir().join("calib.txt")).unwrap();
    let sequences = split(&tok.encode(&text).unwrap(), 128);
    let layers = cfg.moe_layers();
    let inputs = layer_inputs(ctx, &mut model, &sequences, &layers, 512).unwrap();
    let ckpt = Arc::new(Checkpoint::open(&dir()).unwrap());
    for l in layers {
        let spec = moe_layer_spec_for(&cfg, l, ExpertFormat::uniform(WeightFormat::F32));
        let teacher = load_moe_weights(&ckpt, &cfg, l).unwrap();
        let plan = LayerPlan {
            layer: l,
            keep: (0..spec.routing.experts).step_by(2).collect(),
            merges: Vec::new(),
        };
        let mut new = Replacements::default();
        let input = LayerInput {
            spec: &spec,
            teacher: &teacher,
            plan: &plan,
            x: &inputs[&l],
            router_dtype: Dtype::BF16,
            expert_dtype: Dtype::BF16,
        };
        let r = recover_layer(&input, &mut new).unwrap();
        assert_eq!(r.tokens, 512);
        assert!(
            r.router_refit && r.loss_after < r.loss_before,
            "layer {l}: {r:?}"
        );
    }
}
