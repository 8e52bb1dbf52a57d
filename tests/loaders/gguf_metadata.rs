//! A GGUF file's `tokenizer.*` keys as the model's tokenizer and chat template: written with
//! the test writer from the llama.cpp-checked vocabulary (tests/fixtures/gguf-vocab/bpe.json),
//! `GgufVocab::read` gives back what was written, and `Tokenizer::load` / `ChatTemplate::load`
//! on the file's path give llama.cpp's ids and the template's text. A file without
//! `attention.key_length` (llama.cpp's converter leaves it out when config.json has no
//! `head_dim`, as OLMoE's has not) gets llama.cpp's hidden / heads.

use moe_gpu::Tokenizer;
use moe_gpu::gguf::{GgufFile, GgufVocab, Value};
use moe_gpu::model::{ChatMessage, ChatTemplate, ModelConfig};

use crate::common::edit::temp_dir;
use crate::common::gguf::{Writer, patch};

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().map(|s| Value::String(s.clone())).collect())
}

/// A metadata-only GGUF file holding `vocab`.
fn write(vocab: &GgufVocab, name: &str) -> std::path::PathBuf {
    let path = temp_dir("gguf-metadata").join(name);
    let types = vocab.token_types.iter().map(|&t| Value::I32(t)).collect();
    let mut w = Writer::default()
        .kv("general.architecture", Value::String("qwen3moe".into()))
        .kv("tokenizer.ggml.model", Value::String(vocab.model.clone()))
        .kv("tokenizer.ggml.tokens", strings(&vocab.tokens))
        .kv("tokenizer.ggml.token_type", Value::Array(types))
        .kv("tokenizer.ggml.merges", strings(&vocab.merges));
    if let Some(pre) = &vocab.pre {
        w = w.kv("tokenizer.ggml.pre", Value::String(pre.clone()));
    }
    if let Some(eos) = vocab.eos {
        w = w.kv("tokenizer.ggml.eos_token_id", Value::U32(eos));
    }
    if let Some(t) = &vocab.chat_template {
        w = w.kv("tokenizer.chat_template", Value::String(t.clone()));
    }
    w.write(&path);
    path
}

#[test]
fn tokenizer_and_chat_template_load_from_a_gguf_file() {
    let (vocab, cases) = super::gguf_vocab::fixture("bpe");
    let path = write(&vocab, "bpe.gguf");
    let read = GgufVocab::read(&GgufFile::open(&path).unwrap()).unwrap();
    assert_eq!(
        (&read.tokens, &read.token_types, &read.merges),
        (&vocab.tokens, &vocab.token_types, &vocab.merges)
    );
    assert_eq!((&read.pre, read.eos), (&vocab.pre, vocab.eos));
    assert_eq!(read.chat_template, vocab.chat_template);

    let tok = Tokenizer::load(&path).unwrap();
    let case = cases
        .iter()
        .find(|c| c["overrides"].as_object().unwrap().is_empty())
        .unwrap();
    let want: Vec<u32> = case["ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i.as_u64().unwrap() as u32)
        .collect();
    assert_eq!(tok.encode(case["text"].as_str().unwrap()).unwrap(), want);

    let template = ChatTemplate::load(&path)
        .unwrap()
        .expect("the file's chat template");
    let text = template
        .render(&[ChatMessage::new("user", "Hi")], true)
        .unwrap();
    assert_eq!(
        text,
        "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
    let ids = tok.encode_raw(&text).unwrap();
    let start = vocab
        .tokens
        .iter()
        .position(|t| t == "<|im_start|>")
        .unwrap() as u32;
    assert_eq!(
        (ids[0], ids.iter().filter(|&&i| i == start).count()),
        (start, 2)
    );
}

#[test]
fn a_gguf_file_without_tokenizer_keys_has_no_tokenizer() {
    let path = temp_dir("gguf-metadata").join("bare.gguf");
    Writer::default()
        .kv("general.architecture", Value::String("qwen3moe".into()))
        .write(&path);
    assert!(!Tokenizer::exists(&path));
    let Err(e) = Tokenizer::load(&path) else {
        panic!("a tokenizer from no tokenizer keys");
    };
    let e = e.to_string();
    assert!(e.contains("tokenizer.ggml.model"), "{e}");
    assert!(ChatTemplate::load(&path).unwrap().is_none());
}

#[test]
fn a_gguf_file_without_a_key_length_takes_hidden_over_heads() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf-models");
    let file = dir.join("olmoe/Q8_0.gguf");
    let want = ModelConfig::load(&file).unwrap();
    assert_eq!(
        want.attention.head_dim * want.attention.heads,
        want.hidden,
        "the fixture's key length is hidden / heads"
    );
    let mut bytes = std::fs::read(&file).unwrap();
    patch(
        &mut bytes,
        b"olmoe.attention.key_length",
        b"olmoe.attention.kex_length",
    );
    let path = temp_dir("gguf-no-key-length").join("olmoe.gguf");
    std::fs::write(&path, bytes).unwrap();
    let got = ModelConfig::load(&path).unwrap();
    assert_eq!(got.attention.head_dim, want.attention.head_dim);
}
