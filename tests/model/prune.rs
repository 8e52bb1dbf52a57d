//! Structured pruning writes a standard HF checkpoint that loads and runs here: `--keep all`
//! reproduces the original exactly, pruned routers never pick removed experts, grouped routing
//! stays valid, and frequency, REAP and merge all give valid models.

use std::path::{Path, PathBuf};

use moe_gpu::calibration::{CalibrationStats, LayerStats};
use moe_gpu::kernels::INVALID;
use moe_gpu::model::ModelConfig;
use moe_gpu::reference::glu_mlp;

use crate::common::edit::{read_config, read_tensors, temp_dir};
use crate::common::fixtures::{BlockRun, Fixture, dir, run_block};

/// Calibration statistics of every MoE layer on the fixture's block inputs.
fn stats_for(arch: &str) -> PathBuf {
    let fx = Fixture::open("hf-tiny", arch);
    let mut layers = Vec::new();
    for l in fx.layers_with("block.layers.", ".input") {
        let x = fx.f32(&format!("block.layers.{l}.input"));
        let BlockRun {
            cfg,
            spec,
            weights,
            out,
        } = run_block(&fx.model_dir, l, &x, Default::default(), |_, _| {});
        let h = cfg.hidden;
        let (ids, wts) = (out.topk_ids.unwrap(), out.topk_weights.unwrap());
        let k = spec.routing.top_k;
        let norms: Vec<f32> = ids
            .iter()
            .enumerate()
            .map(|(p, &id)| {
                if id == INVALID {
                    return 0.0;
                }
                let t = p / k;
                let e = weights.experts.load(id as usize).unwrap();
                let y = glu_mlp(&x[t * h..(t + 1) * h], 1, h, spec.inter, &e, spec.glu);
                y.iter().map(|v| v * v).sum::<f32>().sqrt()
            })
            .collect();
        let mut s = LayerStats::new(l, spec.routing.experts, k);
        s.observe(&ids, &wts, Some(&norms));
        layers.push(s);
    }
    let stats = CalibrationStats {
        model: arch.into(),
        architecture: arch.into(),
        tokens: 0,
        layers,
    };
    let path = temp_dir("stats").join("stats.json");
    stats.save(&path).unwrap();
    path
}

/// Runs `moe prune`; returns the output directory and the process output.
fn prune_cmd(
    model: &Path,
    stats: &Path,
    keep: &str,
    method: &str,
    extra: &[&str],
) -> (PathBuf, std::process::Output) {
    let out = temp_dir("pruned");
    let mut args = vec![
        "prune",
        "--model",
        model.to_str().unwrap(),
        "--stats",
        stats.to_str().unwrap(),
        "--keep",
        keep,
        "--method",
        method,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(&args)
        .output()
        .unwrap();
    (out, o)
}

fn prune(model: &Path, stats: &Path, keep: &str, method: &str, extra: &[&str]) -> PathBuf {
    let (out, o) = prune_cmd(model, stats, keep, method, extra);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    out
}

/// Runs every MoE layer of `model` on the fixture block inputs: (ids, outputs) per layer.
fn run_blocks(model: &Path, fx: &Fixture) -> Vec<(Vec<u32>, Vec<f32>)> {
    let cfg = ModelConfig::load(model).unwrap();
    cfg.moe_layers()
        .into_iter()
        .map(|l| {
            let x = fx.f32(&format!("block.layers.{l}.input"));
            let out = run_block(model, l, &x, Default::default(), |_, _| {}).out;
            (out.topk_ids.unwrap(), out.output)
        })
        .collect()
}

/// `--keep all`, and `--keep all --recover` (whose refit has nothing to recover), write the
/// original back bit for bit.
#[test]
fn keep_all_reproduces_the_original_exactly() {
    for (arch, recover) in [
        ("qwen2_moe", false),
        ("gpt_oss", false),
        ("deepseek_v3", false),
        ("qwen3_moe", true),
        ("gpt_oss", true),
        ("deepseek_v3", true),
    ] {
        let model = dir("hf-tiny", arch).join("model");
        let stats = stats_for(arch);
        let data = temp_dir("recover-data").join("ids.txt");
        let ids = Fixture::open("hf-tiny", arch).ids("input_ids");
        std::fs::write(&data, format!("{ids:?}").trim_matches(['[', ']'])).unwrap();
        let extra = [
            "--recover",
            "--data",
            data.to_str().unwrap(),
            "--seq-len",
            "16",
        ];
        let out = prune(
            &model,
            &stats,
            "all",
            "frequency",
            if recover { &extra } else { &[] },
        );
        let (a, b) = (read_tensors(&model), read_tensors(&out));
        assert_eq!(
            a.keys().collect::<Vec<_>>(),
            b.keys().collect::<Vec<_>>(),
            "{arch}: tensor names"
        );
        for (name, r) in &a {
            assert!(
                r.data == b[name].data && r.shape == b[name].shape && r.dtype == b[name].dtype,
                "{arch}: {name}"
            );
        }
        let fx = Fixture::open("hf-tiny", arch);
        for ((_, x), (_, y)) in run_blocks(&model, &fx).iter().zip(run_blocks(&out, &fx)) {
            assert!(
                x.iter().zip(&y).all(|(p, q)| p.to_bits() == q.to_bits()),
                "{arch}"
            );
        }
    }
}

#[test]
fn pruned_checkpoint_has_hf_names_and_never_routes_to_removed_experts() {
    for (arch, keep, want) in [
        ("mixtral", "5", 5usize),
        ("olmoe", "0.5", 8),
        ("gpt_oss", "3", 3),
        ("qwen3_moe", "7", 7),
    ] {
        let model = dir("hf-tiny", arch).join("model");
        let stats = stats_for(arch);
        for method in ["frequency", "reap", "merge"] {
            let out = prune(&model, &stats, keep, method, &[]);
            let cfg = ModelConfig::load(&out).unwrap();
            assert_eq!(cfg.moe.routing.experts, want, "{arch} {method}");
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(out.join("model.safetensors")).unwrap();
                assert_eq!(
                    mode.permissions().mode() & 0o777,
                    0o644,
                    "readable like config.json"
                );
            }
            let key = ["num_local_experts", "num_experts", "n_routed_experts"]
                .into_iter()
                .find(|k| read_config(&model).get(*k).is_some())
                .unwrap();
            assert_eq!(read_config(&out)[key], want, "{arch}: config field {key}");
            let before = read_tensors(&model);
            let after = read_tensors(&out);
            for (name, r) in &before {
                let expert_tensor = name.contains(".experts.")
                    || name.contains(".gate.")
                    || name.contains(".router.");
                if !expert_tensor {
                    assert!(
                        after[name].data == r.data,
                        "{arch}: {name} must be unchanged"
                    );
                }
            }
            for l in cfg.moe_layers() {
                let p = cfg.arch.mlp_prefix(l);
                let router = if arch == "gpt_oss" { "router" } else { "gate" };
                assert_eq!(
                    after[&format!("{p}{router}.weight")].shape,
                    vec![want, cfg.hidden]
                );
                if arch != "gpt_oss" {
                    let proj = if arch == "mixtral" { "w1" } else { "gate_proj" };
                    assert!(after.contains_key(&format!("{p}experts.{}.{proj}.weight", want - 1)));
                    assert!(!after.contains_key(&format!("{p}experts.{want}.{proj}.weight")));
                }
            }
            let fx = Fixture::open("hf-tiny", arch);
            for (ids, y) in run_blocks(&out, &fx) {
                assert!(
                    ids.iter().all(|&i| (i as usize) < want),
                    "{arch} {method}: routed to a removed expert"
                );
                assert!(y.iter().all(|v| v.is_finite()));
            }
        }
    }
}

#[test]
fn grouped_routing_keeps_valid_counts_per_group() {
    let model = dir("hf-tiny", "deepseek_v3").join("model");
    let stats = stats_for("deepseek_v3");
    let (out, o) = prune_cmd(&model, &stats, "6", "reap", &[]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // 16 experts in 4 groups, k = 4 over topk_group = 2: at least 2 per group, a multiple of 4.
    assert!(String::from_utf8_lossy(&o.stderr).contains("kept 8 experts per layer instead of 6"));
    let cfg = ModelConfig::load(&out).unwrap();
    assert_eq!(cfg.moe.routing.experts, 8);
    let t = read_tensors(&out);
    assert_eq!(
        t["model.layers.1.mlp.gate.e_score_correction_bias"].shape,
        vec![8]
    );
    let fx = Fixture::open("hf-tiny", "deepseek_v3");
    for (ids, _) in run_blocks(&out, &fx) {
        assert!(ids.iter().all(|&i| i < 8));
    }
}

#[test]
fn adaptive_per_layer_counts_load_and_run() {
    let model = dir("hf-tiny", "qwen3_moe").join("model");
    let stats = stats_for("qwen3_moe");
    let out = prune(
        &model,
        &stats,
        "8",
        "frequency",
        &["--per-layer", "adaptive"],
    );
    let cfg = ModelConfig::load(&out).unwrap();
    let counts: Vec<usize> = cfg
        .moe_layers()
        .iter()
        .map(|&l| cfg.experts_in(l))
        .collect();
    assert!(counts.iter().all(|c| (4..=16).contains(c)), "{counts:?}");
    let fx = Fixture::open("hf-tiny", "qwen3_moe");
    for ((ids, _), n) in run_blocks(&out, &fx).iter().zip(&counts) {
        assert!(ids.iter().all(|&i| (i as usize) < *n));
    }
}

#[test]
fn bad_keep_values_are_clear_errors() {
    let model = dir("hf-tiny", "mixtral").join("model");
    let stats = stats_for("mixtral");
    for (keep, msg) in [
        ("1", "fewer than the k = 2"),
        ("9", "more than the 8 experts"),
        ("1.5", "--keep `1.5`"),
    ] {
        let (_, o) = prune_cmd(&model, &stats, keep, "frequency", &[]);
        assert!(!o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(msg),
            "{keep}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}
