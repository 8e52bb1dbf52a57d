//! The residency options of the `moe` command line: `block` with an expert budget (every
//! expert on the GPU) gives the same output as with every expert resident and writes
//! statistics and a trace; `cache-sim` replays that trace to the same misses; bad budgets fail
//! with a clear message. `generate` with experts on the CPU gives the same tokens and says so
//! in its statistics.

use std::path::{Path, PathBuf};

use moe_gpu::model::Checkpoint;

use crate::common::fixtures;
use crate::run::{moe, stderr};

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("moe-cli-residency-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

/// The fixture's block input of layer 0 as a file `moe block` reads.
fn block_input(arch: &str) -> (PathBuf, PathBuf) {
    let dir = fixtures::dir("hf-tiny-alt", arch);
    let fx = fixtures::Fixture::open("hf-tiny-alt", arch);
    let x = fx.f32("block.layers.0.input");
    let path = tmp(&format!("{arch}-input.safetensors"));
    let hidden = fx
        .expected
        .shape("block.layers.0.input")
        .unwrap()
        .last()
        .copied()
        .unwrap();
    let view = safetensors::tensor::TensorView::new(
        safetensors::Dtype::F32,
        vec![x.len() / hidden, hidden],
        bytemuck::cast_slice(&x),
    )
    .unwrap();
    safetensors::serialize_to_file([("input", view)], None, &path).unwrap();
    (dir.join("model"), path)
}

fn output_bits(path: &Path) -> Vec<u32> {
    let f = Checkpoint::open_file(path).unwrap();
    f.f32_any("output")
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect()
}

#[test]
fn block_with_a_budget_matches_full_residency_and_its_trace_replays() {
    let (model, input) = block_input("olmoe");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (full_out, small_out) = (tmp("full.safetensors"), tmp("small.safetensors"));
    let (stats, trace) = (tmp("stats.json"), tmp("trace.json"));
    let base = [
        "block",
        "--model",
        &s(&model),
        "--layer",
        "0",
        "--input",
        &s(&input),
        "--chunk-tokens",
        "3",
    ];
    let o = moe(&[&base[..], &["--output", &s(&full_out)]].concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stderr(&o).contains("all resident"), "{}", stderr(&o));
    let o = moe(&[
        &base[..],
        &[
            "--output",
            &s(&small_out),
            "--expert-slots",
            "4",
            "--cpu-experts",
            "never",
            "--stats",
            &s(&stats),
            "--trace-out",
            &s(&trace),
        ],
    ]
    .concat());
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(output_bits(&small_out), output_bits(&full_out));

    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    for field in [
        "hits",
        "misses",
        "bytes_uploaded",
        "expert_bytes_total",
        "experts_ever_activated",
        "experts_ever_uploaded",
        "experts_resident_max",
        "prefetch_hits",
        "prefetch_precision",
        "prefetch_recall",
        "per_layer",
    ] {
        assert!(st.get(field).is_some(), "stats lack {field}: {st}");
    }
    assert_eq!(st["experts_resident_max"], 4);
    assert_eq!(st["experts_ever_activated"], st["experts_ever_uploaded"]);
    assert!(st["per_layer"][0]["histogram"].is_array());

    let o = moe(&["cache-sim", "--trace", &s(&trace), "--slots", "4", "--json"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let sim: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let lru = &sim[0]["policies"][0];
    assert_eq!(lru["policy"], "lru");
    assert_eq!(lru["misses"], st["misses"], "replay agrees with the run");
    assert!(sim[0]["optimal"]["hits"].as_u64() >= lru["hits"].as_u64());
    for f in [&input, &full_out, &small_out, &stats, &trace] {
        std::fs::remove_file(f).ok();
    }
}

#[test]
fn budgets_below_k_experts_fail_clearly() {
    let (model, input) = block_input("mixtral");
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let out = tmp("never.safetensors");
    let base = [
        "block",
        "--model",
        &s(&model),
        "--layer",
        "0",
        "--input",
        &s(&input),
        "--output",
        &s(&out),
    ];
    let o = moe(&[&base[..], &["--expert-slots", "1"]].concat());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("below k = 2"), "{}", stderr(&o));
    let o = moe(&[&base[..], &["--expert-budget", "1K"]].concat());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("k = 2 slots"), "{}", stderr(&o));
    let o = moe(&[&base[..], &["--expert-budget", "12X"]].concat());
    assert!(!o.status.success());
    assert!(stderr(&o).contains("not a byte count"), "{}", stderr(&o));
    let o = moe(&["cache-sim", "--zipf", "1", "--top-k", "4", "--slots", "2"]);
    assert!(!o.status.success());
    assert!(stderr(&o).contains("below k = 4"), "{}", stderr(&o));
    std::fs::remove_file(&input).ok();
}

/// `generate --max-batch 1` prefills the prompt token by token: the same tokens as in one
/// step, and a routing trace of one token per step (a trace of real text for `cache-sim`).
#[test]
fn generate_token_by_token_traces_every_token() {
    let fx = fixtures::Fixture::open("hf-tiny-alt", "qwen3_moe");
    let m = fx.model_dir.to_str().unwrap().to_string();
    let prompt: Vec<String> = fx.ids("input_ids").iter().map(|i| i.to_string()).collect();
    let prompt = prompt.join(",");
    let trace = tmp("token-by-token-trace.json");
    let run = |extra: &[&str]| {
        let args = ["generate", "--model", &m, "--prompt-ids", &prompt, "--json"];
        let o = moe(&[&args[..], &["--max-new-tokens", "4", "--ignore-eos"], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        v["generated_ids"].clone()
    };
    let each = run(&["--max-batch", "1", "--trace-out", trace.to_str().unwrap()]);
    assert_eq!(run(&[]), each);
    let t: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&trace).unwrap()).unwrap();
    let steps = t["steps"].as_array().unwrap();
    // Every prompt token, then each generated token but the last.
    assert_eq!(steps.len(), prompt.split(',').count() + 3);
    assert!(steps.iter().all(|s| s["tokens"] == 1), "{steps:?}");
}

/// `--cpu-experts always` and `--n-cpu-moe 1` give the greedy tokens of every expert resident
/// and report the CPU's share per layer; bad values of the CPU options fail clearly.
#[test]
fn generate_with_experts_on_the_cpu_reports_them_per_layer() {
    let fx = fixtures::Fixture::open("hf-tiny", "olmoe");
    let m = fx.model_dir.to_str().unwrap().to_string();
    let stats = tmp("cpu-stats.json");
    let s = stats.to_str().unwrap();
    let run = |extra: &[&str]| {
        let args = [
            "generate",
            "--model",
            &m,
            "--prompt-ids",
            "3,1,4,1,5",
            "--json",
        ];
        let o = moe(&[&args[..], &["--max-new-tokens", "4", "--ignore-eos"], extra].concat());
        assert!(o.status.success(), "{}", stderr(&o));
        let out = String::from_utf8_lossy(&o.stdout).to_string();
        let v: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        (v["generated_ids"].clone(), stderr(&o))
    };
    let (want, _) = run(&[]);
    let (got, err) = run(&[
        "--cpu-experts",
        "always",
        "--cpu-threads",
        "2",
        "--stats",
        s,
    ]);
    assert_eq!(got, want);
    assert!(
        err.contains("every expert on the CPU") && err.contains("CPU: "),
        "{err}"
    );
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    assert_eq!(st["bytes_uploaded"], 0);
    for layer in st["per_layer"].as_array().unwrap() {
        assert_eq!(layer["mode"], "cpu");
        assert!(layer["cpu_experts"].as_u64().unwrap() > 0, "{layer}");
        assert!(layer["cpu_ms"].as_f64().unwrap() > 0.0, "{layer}");
        assert!(
            layer["cpu_bytes_not_uploaded"].as_u64().unwrap() > 0,
            "{layer}"
        );
    }
    let (got, _) = run(&["--n-cpu-moe", "1", "--stats", s]);
    assert_eq!(got, want);
    let st: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    let modes: Vec<&str> = (st["per_layer"].as_array().unwrap().iter())
        .map(|l| l["mode"].as_str().unwrap())
        .collect();
    assert_eq!(modes, ["cpu", "resident"]);
    for (flag, value, says) in [
        ("--cpu-experts", "sometimes", "possible values"),
        ("--cpu-cache", "12X", "not a byte count"),
        ("--cpu-threads", "-1", "invalid value"),
    ] {
        let args = ["generate", "--model", &m, "--prompt-ids", "1", flag, value];
        let o = moe(&args);
        assert!(!o.status.success(), "{flag} {value}");
        assert!(stderr(&o).contains(says), "{flag} {value}: {}", stderr(&o));
    }
    std::fs::remove_file(&stats).ok();
}
