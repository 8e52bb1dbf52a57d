//! The tokenizer built from GGUF metadata against llama.cpp: for the byte-level BPE of the
//! trained Qwen3-MoE and one trained with merges across pre-tokenizer splits (each under several
//! `tokenizer.ggml.pre` values) and a SentencePiece BPE with byte fallback, `GgufVocab::tokenizer` must give exactly the ids `llama-tokenize` gave on a
//! text sample (ASCII, punctuation, digits, runs of spaces and newlines, accents, CJK, emoji,
//! special tokens), and decode text without special tokens back to itself. The fixtures in
//! tests/fixtures/gguf-vocab were made by scripts/gguf_vocab_fixtures.sh. Bad metadata is an
//! error that names the key.

use std::path::PathBuf;

use moe_gpu::gguf::GgufVocab;
use serde_json::Value;

/// The vocab and llama.cpp's cases of fixture `name`.
pub(crate) fn fixture(name: &str) -> (GgufVocab, Vec<Value>) {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf-vocab")
        .join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let json: Value = serde_json::from_str(&text).unwrap();
    let v = &json["vocab"];
    let strings = |k: &str| -> Vec<String> {
        v[k].as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_str().unwrap().to_string())
            .collect()
    };
    let id = |k: &str| v[k].as_u64().map(|x| x as u32);
    let flag = |k: &str| v[k].as_bool();
    let vocab = GgufVocab {
        model: v["model"].as_str().unwrap().into(),
        pre: v["pre"].as_str().map(String::from),
        tokens: strings("tokens"),
        token_types: v["token_types"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t.as_i64().unwrap() as i32)
            .collect(),
        scores: v["scores"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_f64().unwrap() as f32)
            .collect(),
        merges: strings("merges"),
        bos: id("bos"),
        eos: id("eos"),
        unk: id("unk"),
        pad: id("pad"),
        add_bos: flag("add_bos"),
        add_eos: flag("add_eos"),
        add_space_prefix: flag("add_space_prefix"),
        chat_template: v["chat_template"].as_str().map(String::from),
    };
    (vocab, json["cases"].as_array().unwrap().clone())
}

/// Each case's mismatch with llama.cpp, one line each: ids, then the round trip of text
/// without special tokens.
fn mismatches(name: &str) -> (usize, Vec<String>) {
    let (base, cases) = fixture(name);
    let mut bad = Vec::new();
    for case in &cases {
        let mut vocab = base.clone();
        let overrides = &case["overrides"];
        if let Some(pre) = overrides["pre"].as_str() {
            vocab.pre = Some(pre.into());
        }
        vocab.add_bos = overrides["add_bos"].as_bool().or(vocab.add_bos);
        vocab.add_eos = overrides["add_eos"].as_bool().or(vocab.add_eos);
        vocab.add_space_prefix = overrides["add_space_prefix"]
            .as_bool()
            .or(vocab.add_space_prefix);
        let tokenizer = vocab.tokenizer().unwrap();
        let text = case["text"].as_str().unwrap();
        let want: Vec<u32> = case["ids"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i.as_u64().unwrap() as u32)
            .collect();
        // llama-tokenize adds special tokens (BOS, and EOS where add_eos) only where the vocab
        // adds BOS.
        let got = tokenizer
            .encode(text, vocab.adds_bos())
            .unwrap()
            .get_ids()
            .to_vec();
        let label = format!("{name} {overrides} {text:?}");
        if got != want {
            bad.push(format!("{label}: ids {got:?}, llama.cpp {want:?}"));
            continue;
        }
        if !case["special"].as_bool().unwrap() {
            // llama.cpp's BOS or EOS for a gpt2 vocab may be an ordinary token, which
            // decoding keeps.
            let adds_eos = vocab.adds_bos() && vocab.add_eos == Some(true);
            let body = &got[usize::from(vocab.adds_bos())..got.len() - usize::from(adds_eos)];
            let back = tokenizer.decode(body, true).unwrap();
            if back != text {
                bad.push(format!("{label}: decodes to {back:?}"));
            }
        }
    }
    (cases.len(), bad)
}

#[test]
fn gguf_vocab_bpe_matches_llama_cpp_for_every_pre_tokenizer() {
    // The converter carried the checkpoint's chat template into tokenizer.chat_template.
    let template =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/chat/qwen_like.jinja");
    let template = std::fs::read_to_string(template).unwrap();
    assert_eq!(
        fixture("bpe").0.chat_template.as_deref(),
        Some(template.as_str())
    );
    let (n, bad) = mismatches("bpe");
    assert!(n >= 80, "{n} cases");
    assert!(
        bad.is_empty(),
        "{} of {n} cases differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// A BPE trained without a pre-tokenizer regex has merges across every boundary, so a
/// pre-tokenizer that splits differently from llama.cpp's gives different ids.
#[test]
fn gguf_vocab_bpe_with_merges_across_splits_matches_llama_cpp_for_every_pre_tokenizer() {
    let (n, bad) = mismatches("bpe-cross");
    assert!(n >= 80, "{n} cases");
    assert!(
        bad.is_empty(),
        "{} of {n} cases differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

#[test]
fn gguf_vocab_spm_matches_llama_cpp() {
    let (n, bad) = mismatches("spm");
    assert!(n >= 30, "{n} cases");
    assert!(
        bad.is_empty(),
        "{} of {n} cases differ:\n{}",
        bad.len(),
        bad.join("\n")
    );
}

/// A four-token gpt2 vocab: `h`, `i`, `hi` and a control token.
fn tiny() -> GgufVocab {
    GgufVocab {
        model: "gpt2".into(),
        pre: Some("qwen2".into()),
        tokens: ["h", "i", "hi", "<|end|>"].map(String::from).to_vec(),
        token_types: vec![1, 1, 1, 3],
        merges: vec!["h i".into()],
        eos: Some(3),
        ..GgufVocab::default()
    }
}

/// `vocab.tokenizer()`'s error, which must contain each of `needles`.
fn error_names(vocab: GgufVocab, needles: &[&str]) {
    let err = match vocab.tokenizer() {
        Ok(_) => panic!("expected an error naming {needles:?}"),
        Err(e) => e.to_string(),
    };
    for needle in needles {
        assert!(err.contains(needle), "{err:?} does not name {needle:?}");
    }
}

#[test]
fn gguf_vocab_tiny_encodes_and_decodes() {
    let tokenizer = tiny().tokenizer().unwrap();
    let ids = tokenizer
        .encode("hih<|end|>", true)
        .unwrap()
        .get_ids()
        .to_vec();
    assert_eq!(ids, [2, 0, 3]);
    assert_eq!(tokenizer.decode(&ids, true).unwrap(), "hih");
}

/// An empty token (llama.cpp loads it as `[EMPTY_<id>]`) is neither matched nor a panic,
/// even as a control token.
#[test]
fn gguf_vocab_empty_token_is_named_as_llama_cpp_names_it() {
    let mut vocab = tiny();
    vocab.tokens.push(String::new());
    vocab.token_types.push(3);
    let tokenizer = vocab.tokenizer().unwrap();
    let ids = tokenizer.encode("hi", true).unwrap().get_ids().to_vec();
    assert_eq!(ids, [2]);
    assert_eq!(tokenizer.token_to_id("[EMPTY_4]"), Some(4));
}

#[test]
fn gguf_vocab_bad_metadata_is_an_error_naming_the_key() {
    error_names(
        GgufVocab {
            token_types: vec![1, 1, 1],
            ..tiny()
        },
        &["token_type", "3 entries", "tokens 4"],
    );
    error_names(
        GgufVocab {
            token_types: vec![1, 1, 9, 3],
            ..tiny()
        },
        &["token_type[2] = 9"],
    );
    error_names(
        GgufVocab {
            tokens: vec![],
            token_types: vec![],
            ..tiny()
        },
        &["tokens is empty"],
    );
    error_names(
        GgufVocab {
            bos: Some(4),
            ..tiny()
        },
        &["bos_token_id = 4", "4 tokens"],
    );
    error_names(
        GgufVocab {
            pad: Some(99),
            ..tiny()
        },
        &["padding_token_id = 99"],
    );
    error_names(
        GgufVocab {
            merges: vec!["hi".into()],
            ..tiny()
        },
        &["merges[0]", "\"hi\""],
    );
    error_names(
        GgufVocab {
            merges: vec!["h x".into()],
            ..tiny()
        },
        &["tokenizer.ggml.merges"],
    );
    error_names(
        GgufVocab {
            model: "bert".into(),
            ..tiny()
        },
        &["\"bert\"", "gpt2, llama"],
    );
    error_names(
        GgufVocab {
            pre: Some("made-up".into()),
            ..tiny()
        },
        &["\"made-up\"", "qwen2", "deepseek-v3", "gpt-4o"],
    );
    // llama.cpp's default BOS for gpt2 is id 11, which this vocab lacks.
    error_names(
        GgufVocab {
            add_bos: Some(true),
            ..tiny()
        },
        &["adds BOS", "bos_token_id"],
    );
    error_names(
        GgufVocab {
            add_eos: Some(true),
            eos: None,
            ..tiny()
        },
        &["adds EOS"],
    );
    let spm = GgufVocab {
        model: "llama".into(),
        pre: None,
        merges: vec![],
        scores: vec![0.0; 4],
        ..tiny()
    };
    spm.tokenizer().unwrap();
    error_names(
        GgufVocab {
            scores: vec![0.0; 3],
            ..spm.clone()
        },
        &["scores has 3 entries"],
    );
    error_names(
        GgufVocab {
            scores: vec![0.0, f32::NAN, 0.0, 0.0],
            ..spm
        },
        &["scores[1] is NaN"],
    );
}

/// Random metadata (tokens from a small alphabet with spaces, `▁`, byte tokens and empty ones;
/// every token type; merges of random pairs; now and then a bad type code, a NaN score, an id
/// out of range or a malformed merge) and random text: building, encoding and decoding end in
/// `Ok` or `Err`, never a panic.
#[test]
fn gguf_vocab_random_metadata_never_panics() {
    use moe_gpu::synthetic::Rng;
    use std::panic::{AssertUnwindSafe, catch_unwind};

    const PIECES: [&str; 12] = [
        "a", "b", "ab", " ", "\u{2581}", "<0x41>", "<s>", "", "é", "日", "Ġ", "<|x|>",
    ];
    const PRES: [&str; 5] = ["qwen2", "llama-bpe", "deepseek-llm", "gpt-4o", "default"];
    let pick = |rng: &mut Rng| PIECES[rng.below(PIECES.len())].to_string();
    let rare = |rng: &mut Rng| rng.below(60) == 0;
    let mut built = 0;
    for i in 0..400 {
        let mut rng = Rng::new(1000 + i);
        let n = 1 + rng.below(16);
        let tokens: Vec<String> = (0..n).map(|_| pick(&mut rng) + &pick(&mut rng)).collect();
        let types = (0..n)
            .map(|_| {
                if rare(&mut rng) {
                    9
                } else {
                    rng.below(7) as i32
                }
            })
            .collect();
        let scores = (0..n)
            .map(|_| match rare(&mut rng) {
                true => f32::NAN,
                false => [0.0, -1.5, -3.0, f32::NEG_INFINITY][rng.below(4)],
            })
            .collect();
        let merges = (0..rng.below(8))
            .map(|_| {
                let sep = if rare(&mut rng) { "" } else { " " };
                format!("{}{sep}{}", tokens[rng.below(n)], tokens[rng.below(n)])
            })
            .collect();
        let id = |rng: &mut Rng| match rng.below(4) {
            0 => None,
            _ if rare(rng) => Some((n + rng.below(3)) as u32),
            _ => Some(rng.below(n) as u32),
        };
        let flag = |rng: &mut Rng| [None, Some(true), Some(false)][rng.below(3)];
        let vocab = GgufVocab {
            model: ["gpt2", "llama"][rng.below(2)].into(),
            pre: Some(PRES[rng.below(PRES.len())].into()),
            token_types: types,
            scores,
            merges,
            bos: id(&mut rng),
            eos: id(&mut rng),
            unk: id(&mut rng),
            add_bos: flag(&mut rng),
            add_eos: flag(&mut rng),
            add_space_prefix: flag(&mut rng),
            tokens,
            ..GgufVocab::default()
        };
        let text: String = (0..rng.below(12)).map(|_| pick(&mut rng)).collect();
        let run = catch_unwind(AssertUnwindSafe(|| match vocab.tokenizer() {
            Ok(tokenizer) => {
                if let Ok(enc) = tokenizer.encode(text.as_str(), true) {
                    let _ = tokenizer.decode(enc.get_ids(), true);
                }
                true
            }
            Err(_) => false,
        }));
        match run {
            Ok(ok) => built += usize::from(ok),
            Err(_) => panic!("iteration {i} panicked: {vocab:?}, text {text:?}"),
        }
    }
    // Many inputs must get as far as encoding for the test to mean anything (149 do).
    assert!(built >= 120, "only {built} of 400 random vocabs built");
}
