//! Inputs a user can give that must end in a clean exit or a clear error, never a panic or an
//! abort: a closed stdout, absurd `moe demo` sizes, statistics of another model for
//! `moe prune`, and `moe block` input or weights large enough to overflow the router.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use moe_gpu::calibration::{CalibrationStats, LayerStats};

use crate::common::edit::{Raw, edited_model, temp_dir, write_tensors};
use crate::common::fixtures::dir;

fn moe(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(args)
        .output()
        .unwrap()
}

/// Runs `moe args` with its stdout a pipe whose read end is closed at once, as `| head -0`
/// would, and returns the exit status and stderr.
fn with_stdout_closed(args: &[&str]) -> (std::process::ExitStatus, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn a_closed_stdout_ends_each_printing_command_quietly() {
    let olmoe = dir("hf-tiny", "olmoe").join("model");
    let olmoe = olmoe.to_str().unwrap();
    let cases: Vec<Vec<&str>> = vec![
        vec!["inspect", "--model", olmoe, "--json"],
        vec!["inspect", "--model", olmoe],
        vec!["demo", "--layers", "1", "--decode-steps", "1"],
        vec![
            "generate",
            "--model",
            olmoe,
            "--prompt-ids",
            "1,2,3",
            "--max-new-tokens",
            "4",
        ],
    ];
    for args in cases {
        let (status, err) = with_stdout_closed(&args);
        assert!(!err.contains("panicked"), "{args:?}: {err}");
        assert_eq!(status.code(), Some(0), "{args:?}: {status}: {err}");
    }
}

#[test]
fn absurd_demo_sizes_fail_fast_naming_the_flag() {
    let cases: &[(&[&str], &str)] = &[
        (&["--hidden", "1000000000"], "--hidden"),
        (&["--vocab", "100000000000"], "--vocab"),
        (&["--experts", "1000000000"], "--experts"),
        (&["--inter", "100000000000"], "--inter"),
        (&["--layers", "100000000"], "--layers"),
        (&["--prompt-tokens", "100000000000"], "--prompt-tokens"),
        (&["--decode-steps", "100000000000"], "--decode-steps"),
        (
            &["--decode-steps", "18446744073709551615"],
            "--decode-steps",
        ),
        (&["--hidden", "18446744073709551615"], "--hidden"),
        (&["--heads", "0"], "--heads"),
        (&["--heads", "3"], "--heads"),
        (&["--top-k", "0"], "--top-k"),
        (&["--top-k", "65"], "--top-k"),
        (&["--layers", "0"], "--layers"),
        (&["--vocab", "0"], "--vocab"),
        (&["--experts", "0"], "--experts"),
        (&["--inter", "0"], "--inter"),
    ];
    for (flags, needle) in cases {
        let mut args = vec!["demo"];
        args.extend_from_slice(flags);
        let t0 = Instant::now();
        let out = moe(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{flags:?}: {err}");
        assert!(err.contains(needle), "{flags:?}: `{needle}` not in: {err}");
        assert!(!err.contains("panicked"), "{flags:?}: {err}");
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{flags:?} took {:?}",
            t0.elapsed()
        );
    }
}

/// Statistics shaped like `model`'s MoE layers with `experts` and `top_k`, under
/// `architecture`, written to `path`.
fn write_stats(path: &Path, architecture: &str, layers: &[usize], experts: usize, top_k: usize) {
    let stats = CalibrationStats {
        model: "elsewhere".into(),
        architecture: architecture.into(),
        tokens: 0,
        layers: layers
            .iter()
            .map(|&l| LayerStats::new(l, experts, top_k))
            .collect(),
    };
    stats.save(path).unwrap();
}

#[test]
fn prune_refuses_statistics_of_another_model() {
    // hf-tiny olmoe: 2 MoE layers of 16 experts, top-4.
    let model = dir("hf-tiny", "olmoe").join("model");
    let d = temp_dir("cli-prune-mismatch");
    let cases: &[(&str, &[usize], usize, &str)] = &[
        ("qwen2_moe", &[0, 1], 4, "qwen2_moe"),
        ("olmoe", &[0, 1, 2], 4, "layer"),
        ("olmoe", &[0, 1], 3, "top"),
    ];
    let prune = |stats: &Path, out_dir: &Path| {
        moe(&[
            "prune",
            "--model",
            model.to_str().unwrap(),
            "--stats",
            stats.to_str().unwrap(),
            "--keep",
            "8",
            "--out",
            out_dir.to_str().unwrap(),
        ])
    };
    for (i, (arch, layers, k, needle)) in cases.iter().enumerate() {
        let stats = d.join(format!("stats{i}.json"));
        write_stats(&stats, arch, layers, 16, *k);
        let out_dir = d.join(format!("out{i}"));
        let out = prune(&stats, &out_dir);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{arch} {layers:?} k={k}: {err}");
        assert!(err.contains(needle), "`{needle}` not in: {err}");
        assert!(
            !out_dir.join("config.json").exists(),
            "{i}: wrote a checkpoint"
        );
    }
    // Statistics of the model itself still prune it.
    let stats = d.join("own.json");
    write_stats(&stats, "olmoe", &[0, 1], 16, 4);
    let out = prune(&stats, &d.join("own"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn block_refuses_input_that_would_overflow_the_router() {
    let model = dir("hf-tiny", "olmoe").join("model");
    let d = temp_dir("cli-block-huge");
    let input = d.join("in.safetensors");
    let output = d.join("out.safetensors");
    let t = [("input".to_string(), Raw::f32(vec![2, 64], &[3e38; 128]))]
        .into_iter()
        .collect();
    write_tensors(&input, &t);
    let out = moe(&[
        "block",
        "--model",
        model.to_str().unwrap(),
        "--layer",
        "0",
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("token 0, column 0"), "{err}");
    assert!(!output.exists(), "wrote {}", output.display());
}

/// Finite input and weights whose product overflows: the router's status word fails the block
/// naming the layer, and nothing is written.
#[test]
fn block_names_the_layer_whose_router_overflowed() {
    let gate = "model.layers.1.mlp.gate.weight";
    let model = edited_model(
        &dir("hf-tiny", "olmoe").join("model"),
        "cli-block-router",
        |t| {
            let n = t[gate].data.len() / 4;
            t.insert(gate.into(), Raw::f32(t[gate].shape.clone(), &vec![3e38; n]));
        },
        |_| {},
    );
    let d = temp_dir("cli-block-router-io");
    let (input, output) = (d.join("in.safetensors"), d.join("out.safetensors"));
    let t = [("input".to_string(), Raw::f32(vec![2, 64], &[1.0; 128]))]
        .into_iter()
        .collect();
    write_tensors(&input, &t);
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let out = moe(&[
        "block",
        "--model",
        &path(&model),
        "--layer",
        "1",
        "--input",
        &path(&input),
        "--output",
        &path(&output),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("layer 1: router logits are not finite (NaN or Inf)"),
        "{err}"
    );
    assert!(!output.exists(), "wrote {}", output.display());
}
