//! The `moe` binary: block and inspect on fixtures, and errors on stderr with a non-zero exit.

use std::path::Path;
use std::process::Command;

use moe_gpu::model::Checkpoint;

use crate::common;
use crate::common::edit::{Raw, temp_dir, write_tensors};
use crate::common::fixtures::{Fixture, dir};

fn moe(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(args)
        .output()
        .unwrap()
}

/// `moe block` on one layer of `model`, from `input` to `output`, with `extra` options.
fn block(
    model: &Path,
    layer: usize,
    input: &Path,
    output: &Path,
    extra: &[&str],
) -> std::process::Output {
    let layer = layer.to_string();
    let mut args = vec![
        "block",
        "--model",
        model.to_str().unwrap(),
        "--layer",
        &layer,
        "--input",
        input.to_str().unwrap(),
        "--output",
        output.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    moe(&args)
}

#[test]
fn block_writes_outputs_that_match_hf() {
    for arch in ["mixtral", "deepseek_v3", "gpt_oss"] {
        let fx = Fixture::open("hf-tiny-alt", arch);
        let layer = fx.layers_with("block.layers.", ".input")[0];
        let x = fx.f32(&format!("block.layers.{layer}.input"));
        let hidden = fx
            .expected
            .shape(&format!("block.layers.{layer}.input"))
            .unwrap()[1];
        let d = temp_dir("cli-block");
        let input = d.join("in.safetensors");
        let output = d.join("out.safetensors");
        let t = [(
            "input".to_string(),
            Raw::f32(vec![x.len() / hidden, hidden], &x),
        )]
        .into_iter()
        .collect();
        write_tensors(&input, &t);
        let model = dir("hf-tiny-alt", arch).join("model");
        let out = block(&model, layer, &input, &output, &[]);
        assert!(
            out.status.success(),
            "{arch}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = Checkpoint::open_file(&output).unwrap();
        let b = format!("block.layers.{layer}.");
        common::assert_close(
            arch,
            &got.f32_any("output").unwrap(),
            &fx.f32(&format!("{b}output")),
            1e-4,
        );
        common::assert_close(
            arch,
            &got.f32_any("router_logits").unwrap(),
            &fx.f32(&format!("{b}router_logits")),
            1e-4,
        );
        let ids: Vec<u32> = got
            .i64_any("topk_ids")
            .unwrap()
            .iter()
            .map(|v| *v as u32)
            .collect();
        let k = got.shape("topk_ids").unwrap()[1];
        common::assert_same_routing(
            arch,
            k,
            &ids,
            &got.f32_any("topk_weights").unwrap(),
            &fx.ids(&format!("{b}topk_ids")),
            &fx.f32(&format!("{b}topk_weights")),
            1e-5,
        );
    }
}

#[test]
fn block_runs_quantised_experts_within_their_error() {
    let fx = Fixture::open("hf-tiny-alt", "mixtral");
    let layer = fx.layers_with("block.layers.", ".input")[0];
    let b = format!("block.layers.{layer}.");
    let x = fx.f32(&format!("{b}input"));
    let hidden = fx.expected.shape(&format!("{b}input")).unwrap()[1];
    let d = temp_dir("cli-block-dtype");
    let input = d.join("in.safetensors");
    let t = [(
        "input".to_string(),
        Raw::f32(vec![x.len() / hidden, hidden], &x),
    )]
    .into_iter()
    .collect();
    write_tensors(&input, &t);
    let model = dir("hf-tiny-alt", "mixtral").join("model");
    let want = fx.f32(&format!("{b}output"));
    for (dtype, bound) in [("int8", 2e-2), ("int4", 2.5e-1)] {
        let output = d.join(format!("{dtype}.safetensors"));
        let out = block(&model, layer, &input, &output, &["--dtype", dtype]);
        assert!(
            out.status.success(),
            "{dtype}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = Checkpoint::open_file(&output)
            .unwrap()
            .f32_any("output")
            .unwrap();
        let (num, den) = got
            .iter()
            .zip(&want)
            .fold((0.0f64, 0.0f64), |(n, d), (g, w)| {
                (n + (*g as f64 - *w as f64).powi(2), d + (*w as f64).powi(2))
            });
        let nrmse = (num / den).sqrt();
        assert!(nrmse <= bound, "{dtype}: nrmse {nrmse:e} > {bound:e}");
    }
    let out = block(
        &model,
        layer,
        &input,
        &d.join("q4.safetensors"),
        &["--dtype", "q4"],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("int8") && err.contains("int4"), "{err}");
}

#[test]
fn block_errors_go_to_stderr_with_a_nonzero_exit() {
    let model = dir("hf-tiny", "olmoe").join("model");
    let d = temp_dir("cli-bad");
    let input = d.join("in.safetensors");
    let t = [("input".to_string(), Raw::f32(vec![2, 63], &[0.0; 126]))]
        .into_iter()
        .collect();
    write_tensors(&input, &t);
    let out = block(&model, 0, &input, &d.join("o.safetensors"), &[]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[2, 63]") && err.contains("[tokens, 64]"),
        "{err}"
    );
    let out = block(
        Path::new("/nonexistent"),
        0,
        Path::new("x"),
        Path::new("y"),
        &[],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("config.json"));
}

#[test]
fn inspect_reports_layers_experts_and_parameters() {
    let model = dir("hf-tiny", "deepseek_v2_dense1").join("model");
    let out = moe(&["inspect", "--model", model.to_str().unwrap(), "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["architecture"], "deepseek_v2");
    assert_eq!(v["moe_layers"], serde_json::json!([1, 2]));
    assert_eq!(v["dense_layers"], serde_json::json!([0]));
    assert_eq!(v["experts"], 8);
    assert_eq!(v["top_k"], 2);
    // Routed experts: 2 MoE layers × 8 experts × 3 matrices of 32×64.
    assert_eq!(v["routed_expert_params"], 2 * 8 * 3 * 32 * 64);
    assert_eq!(v["params_per_expert"], 3 * 32 * 64);
    let total = v["total_params"].as_u64().unwrap();
    assert_eq!(
        v["activated_params_per_token"].as_u64().unwrap(),
        total - 2 * 6 * 3 * 32 * 64
    );
    assert_eq!(v["bytes_per_expert_checkpoint"], 3 * 32 * 64 * 4);
    // 128 weight rows (gate/up: 64 of 64 values, down: 64 of 32); int8: a byte per weight and
    // an f32 scale per row; int4: half a byte per weight and a word of bf16 scales per row
    // (two groups of 32 for gate/up, one group and a zero half for down).
    assert_eq!(v["bytes_per_expert_gpu_int8"], 3 * 32 * 64 + 128 * 4);
    assert_eq!(v["bytes_per_expert_gpu_int4"], 3 * 32 * 64 / 2 + 128 * 4);
    assert_eq!(
        v["bytes_per_expert_gpu_bf16"],
        v["bytes_per_expert_gpu_f16"]
    );
    // mxfp4: half a byte per weight and a word of e8m0 scales per row (four groups a word, so
    // at rows this short as much as int4; 4.25 bits a weight from 128 values a row on).
    assert_eq!(v["bytes_per_expert_gpu_mxfp4"], 3 * 32 * 64 / 2 + 128 * 4);
    let text = moe(&["inspect", "--model", model.to_str().unwrap()]);
    let s = String::from_utf8_lossy(&text.stdout);
    assert!(s.contains("routing") && s.contains("top-2 of 8"), "{s}");
}
