//! `moe generate` end to end, and the tokenizer: a tokenizer.json the test writes itself
//! round-trips text, the CLI reproduces a fixture's greedy sequence and prints one JSON object
//! last, and bad input ends with a message on stderr and a non-zero exit.

use std::path::Path;
use std::process::{Command, Output};

use moe_gpu::Tokenizer;
use moe_gpu::model::TextStream;
use serde_json::{Value, json};

use crate::common::edit::temp_dir;
use crate::common::fixtures::Fixture;
use crate::common::text::{model_with_tokenizer, tokenizer_json};
use crate::run::{moe, stderr};

fn generate(model: &Path, extra: &[&str]) -> Output {
    let mut args = vec!["generate", "--model", model.to_str().unwrap()];
    args.extend_from_slice(extra);
    moe(&args)
}

/// The JSON object on the last line of stdout.
fn last_json(o: &Output) -> Value {
    let out = String::from_utf8_lossy(&o.stdout);
    let line = out.lines().last().unwrap_or_default();
    serde_json::from_str(line).unwrap_or_else(|e| panic!("last line `{line}`: {e}\n{out}"))
}

#[test]
fn tokenizer_round_trips_text_and_streams_it() {
    let d = temp_dir("tokenizer");
    std::fs::write(d.join("tokenizer.json"), tokenizer_json().to_string()).unwrap();
    let t = Tokenizer::load(&d).unwrap();
    let ids = t.encode("hello mixture of experts").unwrap();
    assert_eq!(ids, [1, 2, 4, 5, 6]);
    assert_eq!(t.decode(&ids).unwrap(), "hello mixture of experts");
    let mut stream = TextStream::new(&t);
    let pieces: Vec<String> = [3, 7, 2]
        .iter()
        .map(|id| stream.push(*id).unwrap())
        .collect();
    assert_eq!(pieces.concat(), "world é hello");
    assert_eq!(stream.text().unwrap(), "world é hello");

    let err = Tokenizer::load(&temp_dir("no-tokenizer"))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
    let bad = temp_dir("bad-tokenizer");
    std::fs::write(bad.join("tokenizer.json"), "{ not json").unwrap();
    let err = Tokenizer::load(&bad).err().unwrap().to_string();
    assert!(err.contains("tokenizer.json"), "{err}");
}

#[test]
fn cli_reproduces_the_greedy_sequence_and_ends_with_json() {
    let fx = Fixture::open("hf-tiny-alt", "qwen3_moe");
    let prompt = fx.ids("input_ids");
    let sequence = fx.ids("generate.sequences");
    let new = sequence.len() - prompt.len();
    let ids: Vec<String> = prompt.iter().map(|i| i.to_string()).collect();
    let out = generate(
        &fx.model_dir,
        &[
            "--prompt-ids",
            &ids.join(","),
            "--max-new-tokens",
            &new.to_string(),
            "--ignore-eos",
            "--greedy",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = last_json(&out);
    let got: Vec<u32> = serde_json::from_value(v["generated_ids"].clone()).unwrap();
    assert_eq!(got, &sequence[prompt.len()..]);
    assert_eq!(v["prompt_ids"], json!(prompt));
    for field in [
        "prefill_tokens_per_s",
        "decode_tokens_per_s",
        "time_to_first_token_ms",
        "load_compile_ms",
    ] {
        assert!(v["stats"][field].as_f64().unwrap() > 0.0, "{field}: {v}");
    }
    // Every kernel is built at load; the experts keep the checkpoint's own format (f32 here).
    assert_eq!(v["stats"]["compile_ms_after_load"], 0.0, "{v}");
    assert_eq!(v["stats"]["expert_format"], "f32", "{v}");
    // Without a tokenizer the ids themselves are streamed.
    let streamed = String::from_utf8_lossy(&out.stdout);
    let first = streamed.lines().next().unwrap();
    let want: Vec<String> = got.iter().map(|i| i.to_string()).collect();
    assert_eq!(first.trim(), want.join(" "));
}

#[test]
fn cli_generates_text_with_a_tokenizer() {
    let fx = Fixture::open("hf-tiny", "olmoe");
    let d = model_with_tokenizer(&fx);
    let out = generate(
        &d,
        &[
            "--prompt",
            "hello world",
            "--max-new-tokens",
            "5",
            "--ignore-eos",
            "--json",
        ],
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let v = last_json(&out);
    assert_eq!(v["prompt_ids"], json!([1, 2, 3]));
    let ids: Vec<u32> = serde_json::from_value(v["generated_ids"].clone()).unwrap();
    assert_eq!(ids.len(), 5);
    // Ids past the tokenizer's vocabulary decode to nothing; known ones to their words.
    let t = Tokenizer::load(&d).unwrap();
    assert_eq!(v["text"], json!(t.decode(&ids).unwrap()));

    // Sampling with a seed is reproducible through the CLI too.
    let sample = |seed: &str| {
        let o = generate(
            &d,
            &[
                "--prompt",
                "hello",
                "--max-new-tokens",
                "6",
                "--ignore-eos",
                "--temperature",
                "1.3",
                "--top-k",
                "40",
                "--top-p",
                "0.9",
                "--seed",
                seed,
                "--json",
            ],
        );
        assert!(o.status.success(), "{}", stderr(&o));
        last_json(&o)["generated_ids"].clone()
    };
    assert_eq!(sample("5"), sample("5"));
}

#[test]
fn cli_bad_input_fails_with_a_message() {
    let fx = Fixture::open("hf-tiny", "mixtral");
    let vocab = fx.f32("logits").len() / fx.ids("input_ids").len();
    let cases: Vec<(Vec<String>, &str)> = vec![
        // --prompt needs tokenizer.json, which the fixture does not have.
        (vec!["--prompt".into(), "hello".into()], "tokenizer.json"),
        (
            vec!["--prompt-ids".into(), format!("5,{vocab}")],
            "out of range",
        ),
        (vec!["--prompt-ids".into(), "5,x".into()], "--prompt-ids"),
        (vec!["--prompt-ids".into(), "".into()], "--prompt-ids"),
        (
            vec![
                "--prompt-ids".into(),
                "5,6,7,8,9".into(),
                "--max-context".into(),
                "4".into(),
            ],
            "context",
        ),
        (
            vec![
                "--prompt-ids".into(),
                "5".into(),
                "--max-context".into(),
                "100000".into(),
            ],
            "max_position_embeddings",
        ),
        (
            vec![
                "--prompt-ids".into(),
                "5".into(),
                "--temperature".into(),
                "0".into(),
            ],
            "temperature",
        ),
        (
            vec![
                "--prompt-ids".into(),
                "5".into(),
                "--top-p".into(),
                "1.5".into(),
            ],
            "top-p",
        ),
        (
            vec![
                "--prompt-ids".into(),
                "5".into(),
                "--greedy".into(),
                "--seed".into(),
                "1".into(),
            ],
            "--greedy",
        ),
        (vec![], "--prompt"),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = args.iter().map(|s| s.as_str()).collect();
        let out = generate(&fx.model_dir, &args);
        let err = stderr(&out);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(err.contains(needle), "{args:?}: `{needle}` not in: {err}");
    }
    // An empty prompt through the tokenizer (no BOS template) is refused before loading.
    let d = model_with_tokenizer(&fx);
    let mut t = tokenizer_json();
    t["post_processor"] = Value::Null;
    std::fs::write(d.join("tokenizer.json"), t.to_string()).unwrap();
    let out = generate(&d, &["--prompt", ""]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("empty"), "{}", stderr(&out));
}

#[test]
fn demo_runs_a_synthetic_decoder_and_prints_histograms() {
    let out = moe(&[
        "demo",
        "--layers",
        "2",
        "--hidden",
        "48",
        "--heads",
        "3",
        "--experts",
        "6",
        "--top-k",
        "2",
        "--inter",
        "20",
        "--vocab",
        "97",
        "--prompt-tokens",
        "5",
        "--decode-steps",
        "3",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = String::from_utf8_lossy(&out.stdout);
    for needle in [
        "adapter:",
        "prefill: 5 tokens",
        "decode: 3 steps",
        "layer 1:",
    ] {
        assert!(text.contains(needle), "`{needle}` missing:\n{text}");
    }
    // (5 + 3) tokens × top-2 routed in each layer.
    let routed: u64 = text
        .lines()
        .filter(|l| l.trim_start().starts_with("layer 0:"))
        .flat_map(|l| {
            l.split('[')
                .nth(1)
                .unwrap_or("")
                .trim_end_matches(']')
                .split(' ')
        })
        .map(|c| c.parse::<u64>().unwrap())
        .sum();
    assert_eq!(routed, 16);
}

#[test]
fn cli_generates_the_same_tokens_with_an_expert_cache_and_writes_statistics() {
    let fx = Fixture::open("hf-tiny", "qwen2_moe");
    let prompt = fx.ids("input_ids");
    let sequence = fx.ids("generate.sequences");
    let new = sequence.len() - prompt.len();
    let ids: Vec<String> = prompt.iter().map(|i| i.to_string()).collect();
    let ids = ids.join(",");
    let d = temp_dir("generate-stats");
    let cache = vec!["--expert-slots", "4", "--cpu-experts", "never"];
    for (extra, cached) in [(vec![], false), (cache, true)] {
        let stats = d.join(format!("stats-{cached}.json"));
        let new_tokens = new.to_string();
        let mut args = vec![
            "--prompt-ids",
            &ids,
            "--max-new-tokens",
            &new_tokens,
            "--ignore-eos",
            "--json",
            "--stats",
            stats.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = generate(&fx.model_dir, &args);
        assert!(out.status.success(), "{}", stderr(&out));
        let got: Vec<u32> =
            serde_json::from_value(last_json(&out)["generated_ids"].clone()).unwrap();
        assert_eq!(got, &sequence[prompt.len()..], "cached {cached}");
        let s: Value = serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
        // Every forward step's tokens are routed to k experts in every layer: the prompt and
        // all generated tokens but the last (which is sampled, never fed back).
        let k = fx.ids("layers.0.moe.topk_ids").len() / prompt.len();
        let routed: u64 = s["per_layer"][0]["histogram"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_u64().unwrap())
            .sum();
        assert_eq!(
            routed as usize,
            (prompt.len() + new - 1) * k,
            "cached {cached}: {s}"
        );
        assert_eq!(s["misses"].as_u64().unwrap() > 0, cached, "{s}");
    }
}

#[test]
fn cli_reads_the_prompt_from_a_file_and_from_stdin() {
    use std::io::Write as _;
    let fx = Fixture::open("hf-tiny", "olmoe");
    let d = model_with_tokenizer(&fx);
    let args = ["--max-new-tokens", "4", "--ignore-eos", "--json"];
    let ids = |o: &Output| {
        assert!(o.status.success(), "{}", stderr(o));
        (
            last_json(o)["prompt_ids"].clone(),
            last_json(o)["generated_ids"].clone(),
        )
    };
    let text = "hello mixture of experts";
    let want = ids(&generate(&d, &[&["--prompt", text][..], &args].concat()));
    assert_eq!(want.0, json!([1, 2, 4, 5, 6]));
    let file = temp_dir("prompt-file").join("prompt.txt");
    std::fs::write(&file, format!("{text}\n")).unwrap();
    let f = file.to_str().unwrap();
    assert_eq!(
        ids(&generate(&d, &[&["--prompt-file", f][..], &args].concat())),
        want
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_moe"))
        .args(
            [
                &["generate", "--model", d.to_str().unwrap(), "--prompt", "-"][..],
                &args,
            ]
            .concat(),
        )
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(format!("{text}\n").as_bytes()).unwrap();
    drop(stdin);
    assert_eq!(ids(&child.wait_with_output().unwrap()), want);

    // A missing file is named; bytes that are not UTF-8 are refused; --prompt-file conflicts
    // with --prompt and --prompt-ids.
    let missing = file.with_file_name("missing.txt");
    let o = generate(&d, &["--prompt-file", missing.to_str().unwrap()]);
    assert!(
        !o.status.success() && stderr(&o).contains("missing.txt"),
        "{}",
        stderr(&o)
    );
    std::fs::write(&file, b"hello \xff world").unwrap();
    let o = generate(&d, &["--prompt-file", f]);
    assert!(
        !o.status.success() && stderr(&o).contains("not UTF-8"),
        "{}",
        stderr(&o)
    );
    for other in [["--prompt", "hello"], ["--prompt-ids", "1,2"]] {
        let o = generate(&d, &[&["--prompt-file", f][..], &other].concat());
        assert!(
            !o.status.success() && stderr(&o).contains("cannot be used"),
            "{}",
            stderr(&o)
        );
    }
}
