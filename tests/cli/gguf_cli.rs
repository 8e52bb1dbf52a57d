//! The CLI on GGUF files: `moe generate --model FILE.gguf --prompt TEXT` tokenizes with the
//! file's tokenizer and continues as llama.cpp does (tests/fixtures/gguf-models), `moe inspect`
//! reports the file's tensor types, `moe eval` and `moe calibrate` read it with its tokenizer,
//! and a damaged file is a clear error.

use std::path::PathBuf;

use serde_json::Value;

use crate::common::edit::temp_dir;
use crate::run::{moe, stderr};

fn fixture(name: &str) -> (PathBuf, Value) {
    let dir =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf-models/qwen3_moe");
    let rec = std::fs::read_to_string(dir.join(format!("{name}.json"))).unwrap();
    (
        dir.join(format!("{name}.gguf")),
        serde_json::from_str(&rec).unwrap(),
    )
}

#[test]
fn generate_continues_a_gguf_file_as_llama_cpp_does() {
    let (path, rec) = fixture("Q8_0");
    let want = rec["greedy_ids"].as_array().unwrap();
    let n = want.len().to_string();
    let out = moe(&[
        "generate",
        "--model",
        path.to_str().unwrap(),
        "--prompt",
        rec["prompt"].as_str().unwrap(),
        "--max-new-tokens",
        &n,
        "--ignore-eos",
        "--json",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(json["prompt_ids"], rec["prompt_ids"]);
    assert_eq!(json["generated_ids"].as_array().unwrap(), want);
    assert_eq!(json["stats"]["expert_format"], "q8_0");
}

#[test]
fn inspect_reports_the_gguf_types() {
    let (path, _) = fixture("Q4_K_M");
    let out = moe(&["inspect", "--model", path.to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("qwen3_moe") && text.contains("Q4_K") && text.contains("Q6_K"),
        "{text}"
    );
}

#[test]
fn a_truncated_gguf_file_is_a_clear_error() {
    let (path, _) = fixture("Q4_0");
    let bytes = std::fs::read(&path).unwrap();
    let cut = temp_dir("gguf-cut").join("cut.gguf");
    std::fs::write(&cut, &bytes[..bytes.len() / 2]).unwrap();
    let out = moe(&[
        "generate",
        "--model",
        cut.to_str().unwrap(),
        "--prompt-ids",
        "1,2",
    ]);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("cut.gguf") && !err.contains("panicked"),
        "{err}"
    );
}

#[test]
fn eval_and_calibrate_read_a_gguf_file_and_its_tokenizer() {
    let (path, teacher) = (fixture("Q4_K_M").0, fixture("Q8_0").0);
    let dir = temp_dir("gguf-eval");
    let data = dir.join("text.txt");
    std::fs::write(
        &data,
        "And God said, Let there be light: and there was light.\n".repeat(8),
    )
    .unwrap();
    let out = moe(&[
        "eval",
        "--model",
        path.to_str().unwrap(),
        "--teacher",
        teacher.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--seq-len",
        "32",
        "--json",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    let json: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    let ppl = json["perplexity"].as_f64().unwrap();
    assert!(ppl.is_finite() && ppl > 1.0, "{json}");
    let stats = dir.join("calibration.json");
    let out = moe(&[
        "calibrate",
        "--model",
        path.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--out",
        stats.to_str().unwrap(),
        "--seq-len",
        "32",
        "--quiet",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(std::fs::metadata(&stats).unwrap().len() > 0);
}
