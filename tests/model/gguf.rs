//! GGUF files made and run by llama.cpp (scripts/gguf_oracle.sh: tests/fixtures/gguf-models),
//! loaded here with their experts in the file's own types and their own tokenizer (which must
//! give llama.cpp's prompt ids), against two references:
//!
//! - **transformers on the same file** (Qwen3-MoE and Qwen2-MoE: transformers dequantises the
//!   GGUF with gguf-py and runs in f32, as we do): logits within [`EXACT`] at every position of
//!   the prompt and llama.cpp's greedy continuation, and the same argmax at each.
//! - **llama.cpp** (every architecture and type). Its CPU backend rounds activations before
//!   its quantised dot products (to Q8 blocks, or to f16 for F16 weights); we keep them in f32.
//!   That rounding sometimes flips a router's choice between the k-th and the next expert, and
//!   the flipped token's output then reaches every later position through attention, so
//!   llama.cpp's own Vulkan and CPU backends differ by up to 1 on these files. Per type we
//!   bound what such flips cannot move much: the mean KL divergence over positions and the
//!   median position's largest logit difference; and llama.cpp's greedy tokens must be our
//!   argmax (teacher-forced) at [`AGREEMENT`] of the steps at least. A decoding or mapping error
//!   moves all three at every position.

use std::path::{Path, PathBuf};

use moe_gpu::model::Logits;
use moe_gpu::spec::{ExpertFormat, WeightFormat};
use moe_gpu::{Model, ModelOptions, Tokenizer};
use serde_json::Value;

use crate::common;

/// Largest logit difference from transformers on the same GGUF file.
const EXACT: f32 = 1e-3;

/// Share of llama.cpp's greedy tokens (teacher-forced) that must be our argmax.
const AGREEMENT: f64 = 0.75;

struct Oracle {
    text: String,
    prompt: Vec<u32>,
    greedy: Vec<u32>,
    vocab: usize,
    llama: Vec<f32>,
    transformers: Option<Vec<f32>>,
}

fn dir(arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf-models")
        .join(arch)
}

fn ids(v: &Value) -> Vec<u32> {
    let list = v.as_array().expect("an id list");
    list.iter().map(|x| x.as_u64().unwrap() as u32).collect()
}

fn f32s(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn oracle(arch: &str, ty: &str) -> Oracle {
    let d = dir(arch);
    let text = std::fs::read_to_string(d.join(format!("{ty}.json"))).unwrap();
    let rec: Value = serde_json::from_str(&text).unwrap();
    let transformers = rec
        .get("transformers_logits")
        .map(|f| f32s(&d.join(f.as_str().unwrap())));
    Oracle {
        text: rec["prompt"].as_str().unwrap().to_string(),
        prompt: ids(&rec["prompt_ids"]),
        greedy: ids(&rec["greedy_ids"]),
        vocab: rec["vocab"].as_u64().unwrap() as usize,
        llama: f32s(&d.join(format!("{ty}.logits"))),
        transformers,
    }
}

/// Our logits for the prompt and llama.cpp's greedy continuation (teacher-forced), one row per
/// token.
fn ours(arch: &str, ty: &str, o: &Oracle) -> Vec<f32> {
    let mut seq = o.prompt.clone();
    seq.extend(&o.greedy[..o.greedy.len() - 1]);
    let options = ModelOptions {
        max_batch: seq.len(),
        max_logit_rows: seq.len(),
        max_context: Some(seq.len()),
        ..Default::default()
    };
    let ctx = common::ctx();
    let path = dir(arch).join(format!("{ty}.gguf"));
    let mut model = Model::load_with(ctx, &path, &options)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let got = model.forward(ctx, &seq, Logits::All).unwrap();
    assert_eq!(got.len(), seq.len() * o.vocab);
    got
}

fn argmax(row: &[f32]) -> usize {
    (0..row.len()).fold(0, |b, i| if row[i] > row[b] { i } else { b })
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0.0, |m, (x, y)| m.max((x - y).abs()))
}

/// KL(p || q) of the softmaxes of two logit rows, in f64.
fn kl(p: &[f32], q: &[f32]) -> f64 {
    let log_softmax = |r: &[f32]| {
        let m = r.iter().fold(f32::MIN, |a, &b| a.max(b)) as f64;
        let z = r.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln() + m;
        r.iter().map(move |&v| v as f64 - z).collect::<Vec<_>>()
    };
    let (lp, lq) = (log_softmax(p), log_softmax(q));
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
}

/// Checks `arch`'s `ty` file against both references; `kl_limit` and `median_limit` bound the
/// comparison with llama.cpp.
fn check(arch: &str, ty: &str, kl_limit: f64, median_limit: f32) {
    let o = oracle(arch, ty);
    let path = dir(arch).join(format!("{ty}.gguf"));
    let tokens = Tokenizer::load(&path).unwrap().encode(&o.text).unwrap();
    assert_eq!(
        tokens, o.prompt,
        "{arch} {ty}: the prompt's ids from the file's tokenizer"
    );
    let got = ours(arch, ty, &o);
    let v = o.vocab;
    let rows = |l: &[f32]| l.chunks(v).map(<[f32]>::to_vec).collect::<Vec<_>>();
    if let Some(tf) = &o.transformers {
        let diff = max_diff(&got, tf);
        assert!(
            diff <= EXACT,
            "{arch} {ty}: logits differ from transformers' by {diff}"
        );
        for (i, (g, t)) in got.chunks(v).zip(tf.chunks(v)).enumerate() {
            assert_eq!(argmax(g), argmax(t), "{arch} {ty}: argmax of row {i}");
        }
    }
    let (ours, llama) = (rows(&got[..o.llama.len()]), rows(&o.llama));
    let mean_kl = ours.iter().zip(&llama).map(|(g, l)| kl(l, g)).sum::<f64>() / llama.len() as f64;
    let mut diffs: Vec<f32> = ours
        .iter()
        .zip(&llama)
        .map(|(g, l)| max_diff(g, l))
        .collect();
    diffs.sort_by(f32::total_cmp);
    let median = diffs[diffs.len() / 2];
    let first = o.prompt.len() - 1;
    let agree = o.greedy.iter().enumerate();
    let agree = agree.filter(|(i, t)| argmax(&got[(first + i) * v..][..v]) == **t as usize);
    let agreement = agree.count() as f64 / o.greedy.len() as f64;
    eprintln!(
        "{arch} {ty}: vs llama.cpp mean KL {mean_kl:.2e}, median max|diff| {median:.4}, \
         largest {:.4}, greedy agreement {agreement:.3}",
        diffs[diffs.len() - 1]
    );
    assert!(
        mean_kl <= kl_limit,
        "{arch} {ty}: mean KL {mean_kl:.3e} > {kl_limit:.0e}"
    );
    assert!(
        median <= median_limit,
        "{arch} {ty}: median {median} > {median_limit}"
    );
    assert!(
        agreement >= AGREEMENT,
        "{arch} {ty}: greedy agreement {agreement}"
    );
}

#[test]
fn qwen3_moe_every_type_matches_transformers_and_llama_cpp() {
    for (ty, kl, median) in [
        ("F16", 5e-3, 0.01),
        ("Q8_0", 5e-3, 0.1),
        ("Q4_0", 1e-2, 0.2),
        ("Q4_1", 1e-2, 0.2),
        ("Q5_0", 1e-2, 0.2),
        ("Q5_1", 1e-2, 0.2),
        ("Q4_K_M", 1e-2, 0.2),
        ("Q5_K_M", 1e-2, 0.2),
    ] {
        check("qwen3_moe", ty, kl, median);
    }
}

#[test]
fn experts_stay_in_the_files_types_on_the_gpu() {
    let path = dir("qwen3_moe").join("Q4_K_M.gguf");
    let model = Model::load(common::ctx(), &path).unwrap();
    let f = |gate_up, down| ExpertFormat { gate_up, down };
    // llama-quantize's Q4_K_M: Q4_K everywhere but layer 1's down experts, which are Q6_K.
    assert_eq!(
        model.expert_formats[0],
        f(WeightFormat::Q4K, WeightFormat::Q4K)
    );
    assert_eq!(
        model.expert_formats[1],
        f(WeightFormat::Q4K, WeightFormat::Q6K)
    );
    let path = dir("gpt_oss").join("MXFP4_MOE.gguf");
    let model = Model::load(common::ctx(), &path).unwrap();
    let mxfp4 = ExpertFormat::uniform(WeightFormat::Mxfp4);
    assert!(model.expert_formats.iter().all(|&x| x == mxfp4));
}

#[test]
fn every_architecture_matches_llama_cpp() {
    check("olmoe", "F16", 5e-3, 0.01);
    for arch in ["qwen2_moe", "olmoe", "mixtral", "deepseek_v2"] {
        check(arch, "Q8_0", 5e-3, 0.1);
        check(arch, "Q4_K_M", 1e-2, 0.2);
    }
    check("deepseek_v3", "Q8_0", 5e-3, 0.1);
    check("gpt_oss", "MXFP4_MOE", 5e-3, 0.1);
}
