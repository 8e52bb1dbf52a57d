//! A word-level tokenizer.json written by the tests, and fixture models that carry it.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::edit::temp_dir;
use super::fixtures::Fixture;

pub const WORDS: [&str; 6] = ["hello", "world", "mixture", "of", "experts", "é"];

/// A word-level tokenizer: <unk> = 0, <s> = 1 (added in front as BOS), then WORDS from 2.
pub fn tokenizer_json() -> Value {
    let mut vocab = serde_json::Map::new();
    vocab.insert("<unk>".into(), json!(0));
    vocab.insert("<s>".into(), json!(1));
    for (i, w) in WORDS.iter().enumerate() {
        vocab.insert((*w).into(), json!(i + 2));
    }
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>")],
        "normalizer": null,
        "pre_tokenizer": {"type": "Whitespace"},
        "post_processor": {
            "type": "TemplateProcessing",
            "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                       {"Sequence": {"id": "A", "type_id": 0}}],
            "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}},
                     {"Sequence": {"id": "A", "type_id": 0}},
                     {"Sequence": {"id": "B", "type_id": 1}}],
            "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
        },
        "decoder": null,
        "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"}
    })
}

/// A copy of a fixture model directory with the test tokenizer beside it.
pub fn model_with_tokenizer(fx: &Fixture) -> PathBuf {
    let d = temp_dir("tokenizer-model");
    for f in ["config.json", "generation_config.json", "model.safetensors"] {
        std::fs::copy(fx.model_dir.join(f), d.join(f)).unwrap();
    }
    std::fs::write(d.join("tokenizer.json"), tokenizer_json().to_string()).unwrap();
    d
}
