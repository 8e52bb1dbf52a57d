//! Calibration, evaluation and dynamic activation at model level: captured routing matches
//! HF, statistics are consistent, a model against itself has zero KL, perplexity is the mean
//! next-token likelihood computed here from the logits, and pruned or dynamically activated
//! students are valid and report what they save.

use std::process::Command;

use moe_gpu::calibration::CalibrationStats;
use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::model::collect_calibration::{builtin_ids, calibrate};
use moe_gpu::model::eval::{evaluate, evaluate_alone};
use moe_gpu::moe::activation_policy::{ActivationPolicy, SkipThreshold};
use moe_gpu::reference::glu_mlp;
use moe_gpu::{Logits, Model, ModelOptions};

use crate::common;
use crate::common::edit::temp_dir;
use crate::common::fixtures::{Fixture, dir};

fn moe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(args)
        .output()
        .unwrap()
}

fn options(len: usize) -> ModelOptions {
    ModelOptions {
        max_batch: len,
        max_logit_rows: len,
        max_context: Some(len),
        routing_stats: true,
        ..Default::default()
    }
}

#[test]
fn captured_routing_and_expert_norms_match_hf_and_the_reference() {
    for arch in ["deepseek_v3", "qwen2_moe", "gpt_oss"] {
        let fx = Fixture::open("hf-tiny-alt", arch);
        let ctx = common::ctx();
        let mut model = Model::load_with(ctx, &fx.model_dir, &options(16)).unwrap();
        let prompt = fx.ids("input_ids");
        let captured = model.capture_routing(ctx, &prompt).unwrap();
        let ckpt = std::sync::Arc::new(moe_gpu::model::Checkpoint::open(&fx.model_dir).unwrap());
        for r in &captured {
            let base = format!("layers.{}.moe.", r.layer);
            let want_ids = fx.ids(&format!("{base}topk_ids"));
            common::assert_same_routing(
                arch,
                r.top_k,
                &r.ids,
                &r.weights,
                &want_ids,
                &fx.f32(&format!("{base}topk_weights")),
                1e-5,
            );
            let x = fx.f32(&format!("layers.{}.mlp.input", r.layer));
            let h = model.config.hidden;
            let w = moe_gpu::model::load_moe_weights(&ckpt, &model.config, r.layer).unwrap();
            let spec = moe_gpu::model::moe_layer_spec_for(
                &model.config,
                r.layer,
                ExpertFormat::uniform(WeightFormat::F32),
            );
            let want: Vec<f32> = r
                .ids
                .iter()
                .enumerate()
                .map(|(p, &id)| {
                    let t = p / r.top_k;
                    let y = glu_mlp(
                        &x[t * h..(t + 1) * h],
                        1,
                        h,
                        spec.inter,
                        &w.experts.load(id as usize).unwrap(),
                        spec.glu,
                    );
                    y.iter().map(|v| v * v).sum::<f32>().sqrt()
                })
                .collect();
            common::assert_close(
                &format!("{arch} layer {} norms", r.layer),
                &r.output_norms,
                &want,
                1e-4,
            );
        }
    }
}

#[test]
fn calibration_statistics_are_consistent() {
    let fx = Fixture::open("hf-tiny", "olmoe");
    let ctx = common::ctx();
    let mut model = Model::load_with(ctx, &fx.model_dir, &options(24)).unwrap();
    let data = builtin_ids(model.config.vocab, 3, 24, 5);
    let stats = calibrate(ctx, &mut model, &data, "olmoe", &mut |_, _| {}).unwrap();
    assert_eq!(stats.tokens, 72);
    let k = model.config.moe.routing.top_k;
    for s in &stats.layers {
        let f: f64 = s.frequency.iter().sum();
        assert!((f - k as f64).abs() < 1e-9, "frequencies sum to k: {f}");
        assert_eq!(s.count.iter().sum::<u64>(), 72 * k as u64);
        assert!(
            s.reap
                .iter()
                .zip(&s.count)
                .all(|(r, c)| (*c == 0) == (*r == 0.0)),
            "REAP where routed"
        );
        // Co-activation: each token adds k(k-1) ordered pairs.
        let co: u64 = s.coactivation.iter().flatten().sum();
        assert_eq!(co, 72 * (k * (k - 1)) as u64);
        assert!(s.ratio_median.iter().all(|m| (0.0..=1.0).contains(m)));
        assert_eq!(s.ratio_histogram.len(), k - 1);
    }
    let path = temp_dir("calib").join("s.json");
    stats.save(&path).unwrap();
    assert_eq!(
        CalibrationStats::load(&path).unwrap().layers[0].frequency,
        stats.layers[0].frequency
    );
}

#[test]
fn a_model_against_itself_has_zero_kl_and_dynamic_activation_saves_bytes() {
    let fx = Fixture::open("hf-tiny", "deepseek_v3");
    let ctx = common::ctx();
    let mut teacher = Model::load_with(ctx, &fx.model_dir, &options(16)).unwrap();
    let mut student = Model::load_with(ctx, &fx.model_dir, &options(16)).unwrap();
    let data = builtin_ids(teacher.config.vocab, 2, 16, 9);
    let same = evaluate(ctx, &mut teacher, &mut student, &data, &mut |_, _| {}).unwrap();
    assert!(
        same.kl_per_token.abs() < 1e-9 && same.top1_agreement == 1.0,
        "{same:?}"
    );
    assert_eq!(
        same.student_expert_bytes_per_token,
        same.teacher_expert_bytes_per_token
    );
    let mut fewer = Model::load_with(ctx, &fx.model_dir, &options(16)).unwrap();
    let policy = ActivationPolicy {
        top_k: Some(2),
        skip: SkipThreshold::Fixed(0.0),
        top_p: 1.0,
    };
    fewer.set_activation(&policy, None).unwrap();
    let r = evaluate(ctx, &mut teacher, &mut fewer, &data, &mut |_, _| {}).unwrap();
    assert!(r.kl_per_token > 0.0 && r.kl_per_token.is_finite());
    let ratio = r.student_expert_bytes_per_token / r.teacher_expert_bytes_per_token;
    assert!(
        (ratio - 0.5).abs() < 1e-9,
        "top-2 of 4 reads half the expert bytes: {ratio}"
    );
    let bad = ActivationPolicy {
        top_k: Some(5),
        ..policy
    };
    assert!(
        fewer
            .set_activation(&bad, None)
            .unwrap_err()
            .to_string()
            .contains("expert top-k 5")
    );
}

/// Perplexity from `Logits::All`, with a log-sum-exp written here.
fn perplexity_here(ctx: &moe_gpu::Context, model: &mut Model, data: &[Vec<u32>]) -> f64 {
    let vocab = model.config.vocab;
    let (mut nll, mut n) = (0.0f64, 0);
    for seq in data {
        model.reset();
        let logits = model.forward(ctx, seq, Logits::All).unwrap();
        for (t, next) in seq.iter().enumerate().skip(1) {
            let row = &logits[(t - 1) * vocab..t * vocab];
            let max = row.iter().copied().fold(f32::MIN, f32::max) as f64;
            let sum: f64 = row.iter().map(|&z| (z as f64 - max).exp()).sum();
            nll += max + sum.ln() - row[*next as usize] as f64;
            n += 1;
        }
    }
    (nll / n as f64).exp()
}

#[test]
fn perplexity_is_the_mean_next_token_likelihood() {
    let fx = Fixture::open("hf-tiny", "qwen3_moe");
    let ctx = common::ctx();
    let mut model = Model::load_with(ctx, &fx.model_dir, &options(12)).unwrap();
    let data = builtin_ids(model.config.vocab, 3, 12, 4);
    let want = perplexity_here(ctx, &mut model, &data);
    let alone = evaluate_alone(ctx, &mut model, &data, &mut |_, _| {}).unwrap();
    assert!(
        (alone.perplexity / want - 1.0).abs() < 1e-9,
        "{alone:?} vs {want}"
    );
    assert_eq!((alone.tokens, alone.predicted), (36, 33));
    // A random model is close to uniform: perplexity near the vocabulary's size.
    let vocab = model.config.vocab as f64;
    assert!(
        alone.perplexity > 1.0 && alone.perplexity < 4.0 * vocab,
        "{alone:?}"
    );
    let mut student = Model::load_with(ctx, &fx.model_dir, &options(12)).unwrap();
    let r = evaluate(ctx, &mut model, &mut student, &data, &mut |_, _| {}).unwrap();
    assert_eq!(r.perplexity, alone.perplexity);
    assert_eq!(r.teacher_perplexity, alone.perplexity);
    let short = vec![vec![1u32], vec![2]];
    let err = evaluate_alone(ctx, &mut model, &short, &mut |_, _| {}).unwrap_err();
    assert!(err.to_string().contains("at least 2 tokens"), "{err}");
}

#[test]
fn calibrate_prune_eval_from_the_cli() {
    let model = dir("hf-tiny", "qwen3_moe").join("model");
    let m = model.to_str().unwrap();
    let work = temp_dir("cli-prune");
    let stats = work.join("stats.json");
    let o = moe(&[
        "calibrate",
        "--model",
        m,
        "--out",
        stats.to_str().unwrap(),
        "--seq-len",
        "16",
        "--sequences",
        "3",
        "--quiet",
    ]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (method, keep) in [
        ("frequency", "all"),
        ("frequency", "8"),
        ("reap", "8"),
        ("merge", "8"),
    ] {
        let out = work.join(format!("{method}-{keep}"));
        let o = moe(&[
            "prune",
            "--model",
            m,
            "--stats",
            stats.to_str().unwrap(),
            "--keep",
            keep,
            "--method",
            method,
            "--out",
            out.to_str().unwrap(),
        ]);
        let e = String::from_utf8_lossy(&o.stderr);
        assert!(o.status.success(), "{e}");
        assert!(
            !e.contains("pruning"),
            "no progress bar when stderr is a pipe: {e}"
        );
        // `moe eval --json` of the pruned model, with `extra` flags.
        let eval = |extra: &[&str]| -> serde_json::Value {
            let mut args = vec!["eval", "--model", out.to_str().unwrap()];
            args.extend_from_slice(extra);
            args.extend_from_slice(&["--seq-len", "16", "--sequences", "2", "--json"]);
            let o = moe(&args);
            assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
            serde_json::from_slice(&o.stdout).unwrap()
        };
        let v = eval(&["--teacher", m]);
        let kl = v["kl_per_token"].as_f64().unwrap();
        if keep == "all" {
            assert!(
                kl.abs() < 1e-9 && v["top1_agreement"] == 1.0,
                "--keep all must reproduce the teacher: {v}"
            );
            assert_eq!(v["perplexity"], v["teacher_perplexity"], "{v}");
            // Without a teacher: the perplexity alone, the same figure.
            let alone = eval(&[]);
            assert_eq!(alone["perplexity"], v["perplexity"], "{alone}");
            assert_eq!(alone["predicted"], 30, "{alone}");
        } else {
            assert!(kl.is_finite() && kl > 0.0, "{method}: {v}");
            assert_eq!(
                v["student_expert_bytes_total"].as_u64().unwrap() * 2,
                v["teacher_expert_bytes_total"].as_u64().unwrap()
            );
        }
    }
}

/// A quantised student against its f32 self: the expert bytes shrink as the format says
/// (`WeightFormat::matrix_bytes`)
/// and the KL grows as precision drops.
#[test]
fn eval_measures_quantised_experts_against_f32() {
    let model = dir("hf-tiny-alt", "olmoe").join("model");
    let m = model.to_str().unwrap();
    let config = moe_gpu::model::config::ModelConfig::load(&model).unwrap();
    let (hidden, inter) = (config.hidden, config.moe.inter);
    let mut kls = vec![];
    for dtype in ["f32", "int8", "int4"] {
        let o = moe(&[
            "eval",
            "--model",
            m,
            "--teacher",
            m,
            "--seq-len",
            "16",
            "--sequences",
            "2",
            "--dtype",
            dtype,
            "--json",
        ]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        let ratio = v["student_expert_bytes_total"].as_f64().unwrap()
            / v["teacher_expert_bytes_total"].as_f64().unwrap();
        let format = WeightFormat::parse(dtype).unwrap();
        let expert =
            |f: WeightFormat| f.matrix_bytes(2 * inter, hidden) + f.matrix_bytes(hidden, inter);
        let want = expert(format) as f64 / expert(WeightFormat::F32) as f64;
        assert!(
            (ratio - want).abs() < 1e-12,
            "{dtype} bytes ratio {ratio}, want {want}"
        );
        kls.push(v["kl_per_token"].as_f64().unwrap());
    }
    assert!(kls[0].abs() < 1e-9, "f32 student is the teacher: {kls:?}");
    assert!(
        0.0 < kls[1] && kls[1] < kls[2],
        "KL f32 < int8 < int4: {kls:?}"
    );
}

#[test]
fn generate_reports_dynamic_activation_and_threshold_zero_changes_nothing() {
    let model = dir("hf-tiny", "olmoe").join("model");
    let m = model.to_str().unwrap();
    let run = |extra: &[&str]| {
        let mut args = vec![
            "generate",
            "--model",
            m,
            "--prompt-ids",
            "5,6,7,8",
            "--max-new-tokens",
            "6",
            "--ignore-eos",
            "--json",
        ];
        args.extend_from_slice(extra);
        let o = moe(&args);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let last = String::from_utf8_lossy(&o.stdout)
            .lines()
            .last()
            .unwrap()
            .to_string();
        serde_json::from_str::<serde_json::Value>(&last).unwrap()
    };
    let plain = run(&[]);
    let zero = run(&["--skip-threshold", "0", "--expert-top-p", "1"]);
    assert_eq!(plain["generated_ids"], zero["generated_ids"]);
    assert_eq!(
        zero["activation"]["activated_experts_per_token"], 8.0,
        "4 experts × 2 layers"
    );
    let one = run(&["--expert-top-k", "1"]);
    assert_eq!(one["activation"]["activated_experts_per_token"], 2.0);
    assert!(
        one["activation"]["weight_bytes_saved_per_token"]
            .as_f64()
            .unwrap()
            > 0.0
    );
}
