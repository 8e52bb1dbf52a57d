//! The fuzz targets: their seed inputs (taken from the fixtures) and what loading one means.

use std::path::Path;
use std::sync::OnceLock;

use moe_gpu::model::{Checkpoint, ModelConfig, Tokenizer};
use moe_gpu::{ChatMessage, ChatTemplate};
use safetensors::Dtype;
use serde_json::{Value, json};

use super::{Target, mutate};
use crate::common::edit::{Raw, Tensors, read_tensors, temp_dir, write_tensors};
use crate::common::fixtures::{ARCHS, dir};
use crate::common::text::tokenizer_json;

/// Every target, for the replay of kept inputs.
pub fn all() -> Vec<Target> {
    vec![
        safetensors(),
        config(),
        sharded_index(),
        tokenizer(),
        chat_template(),
        chat_tokenizer_config(),
        block_input(),
    ]
}

fn file_bytes(t: &Tensors) -> Vec<u8> {
    let d = temp_dir("fuzz-seed");
    let p = d.join("x.safetensors");
    write_tensors(&p, t);
    let b = std::fs::read(&p).unwrap();
    let _ = std::fs::remove_dir_all(&d);
    b
}

/// Small safetensors files: a few tensors of three fixtures each, plus one with every dtype the
/// f32 accessors convert (and one they refuse).
fn small_checkpoints() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds: Vec<Vec<u8>> = ["qwen3_moe", "deepseek_v3", "gpt_oss"]
            .iter()
            .map(|a| {
                let all = read_tensors(&dir("hf-tiny", a).join("model"));
                let some: Tensors = all.into_iter().step_by(17).take(6).collect();
                file_bytes(&some)
            })
            .collect();
        let raw = |dtype, shape: Vec<usize>, n: usize| Raw {
            dtype,
            shape,
            data: (0..n).map(|i| (i * 37 % 251) as u8).collect(),
        };
        let mut mixed = Tensors::new();
        mixed.insert("a.f16".into(), raw(Dtype::F16, vec![2, 3], 12));
        mixed.insert("b.bf16".into(), raw(Dtype::BF16, vec![3, 2], 12));
        mixed.insert("c.i64".into(), raw(Dtype::I64, vec![2], 16));
        mixed.insert("d.u8".into(), raw(Dtype::U8, vec![4, 2], 8));
        mixed.insert("e.scalar".into(), raw(Dtype::F32, vec![], 4));
        mixed.insert("f.empty".into(), raw(Dtype::F32, vec![0, 4], 0));
        seeds.push(file_bytes(&mixed));
        seeds
    })
}

/// Reads every tensor through each accessor; errors are fine.
fn read_all(ck: &Checkpoint) {
    let names: Vec<String> = ck.names().map(str::to_string).collect();
    for n in &names {
        let _ = ck.f32_any(n);
        let _ = ck.i64_any(n);
        if let Ok(shape) = ck.shape(n) {
            let shape = shape.to_vec();
            let _ = ck.f32(n, &shape);
            let _ = ck.f32(n, &[1, 2]);
            let _ = ck.f32_slice(n, 0);
            let _ = ck.f32_slice(n, usize::MAX);
            let _ = ck.u8_slice(n, 1);
        }
        let _ = ck.bytes(n);
        let _ = ck.file_of(n);
    }
    let _ = ck.shard_metadata(0);
}

fn nothing(_: &Path) {}

/// 1. One safetensors file, opened as the model directory's `model.safetensors`.
pub fn safetensors() -> Target {
    Target {
        name: "safetensors",
        file: "model.safetensors",
        seeds: small_checkpoints().to_vec(),
        mutate: mutate::safetensors,
        setup: nothing,
        run: |d| {
            if let Ok(ck) = Checkpoint::open(d) {
                read_all(&ck);
            }
        },
    }
}

/// 2. config.json, every fixture architecture's.
pub fn config() -> Target {
    Target {
        name: "config",
        file: "config.json",
        seeds: ARCHS
            .iter()
            .map(|a| std::fs::read(dir("hf-tiny", a).join("model/config.json")).unwrap())
            .collect(),
        mutate: mutate::json,
        setup: nothing,
        run: |d| {
            if let Ok(c) = ModelConfig::load(d) {
                for l in c.moe_layers() {
                    let _ = c.experts_in(l);
                    let _ = c.routing_of(l);
                }
                let _ = c.dense_layers();
            }
        },
    }
}

const SHARDS: [&str; 2] = [
    "model-00001-of-00002.safetensors",
    "model-00002-of-00002.safetensors",
];

/// 3. A sharded index beside two valid shards (the first two small checkpoints).
pub fn sharded_index() -> Target {
    let mut seeds = Vec::new();
    let mut map = serde_json::Map::new();
    for (shard, bytes) in SHARDS.iter().zip(small_checkpoints()) {
        let d = temp_dir("fuzz-index-seed");
        std::fs::write(d.join("model.safetensors"), bytes).unwrap();
        for n in Checkpoint::open(&d).unwrap().names() {
            map.insert(n.to_string(), json!(shard));
        }
        let _ = std::fs::remove_dir_all(&d);
        let index = json!({"metadata": {"total_size": 1234}, "weight_map": map});
        seeds.push(serde_json::to_vec_pretty(&index).unwrap());
    }
    Target {
        name: "sharded_index",
        file: "model.safetensors.index.json",
        seeds,
        mutate: mutate::json,
        setup: |d| {
            for (shard, bytes) in SHARDS.iter().zip(small_checkpoints()) {
                std::fs::write(d.join(shard), bytes).unwrap();
            }
        },
        run: |d| {
            if let Ok(ck) = Checkpoint::open(d) {
                read_all(&ck);
            }
        },
    }
}

/// A byte-level BPE tokenizer.json with merges, a normalizer, added tokens and a decoder.
fn bpe_tokenizer() -> Value {
    let mut vocab = serde_json::Map::new();
    for (i, t) in [
        "<unk>", "<s>", "</s>", "h", "e", "l", "o", "Ġ", "w", "r", "d", "he", "ll", "hell", "hello",
    ]
    .iter()
    .enumerate()
    {
        vocab.insert((*t).into(), json!(i));
    }
    let special = |id: u32, content: &str| {
        json!({"id": id, "content": content, "single_word": false, "lstrip": false,
               "rstrip": false, "normalized": false, "special": true})
    };
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true,
                          "use_regex": true},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false,
                           "use_regex": true},
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true,
                    "use_regex": true},
        "model": {"type": "BPE", "dropout": null, "unk_token": "<unk>",
                  "continuing_subword_prefix": null, "end_of_word_suffix": null,
                  "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": ["h e", "l l", "he ll", "hell o"]}
    })
}

/// 4. tokenizer.json (the tests' word-level one and a byte-level BPE), then encode and decode.
pub fn tokenizer() -> Target {
    Target {
        name: "tokenizer",
        file: "tokenizer.json",
        seeds: [tokenizer_json(), bpe_tokenizer()]
            .iter()
            .map(|v| serde_json::to_vec(v).unwrap())
            .collect(),
        mutate: mutate::json,
        setup: nothing,
        run: |d| {
            if let Ok(t) = Tokenizer::load(d) {
                for text in ["hello world", "", "mixture of experts é <s> \u{0}\u{ffff}"] {
                    if let Ok(ids) = t.encode(text) {
                        let _ = t.decode(&ids);
                    }
                    let _ = t.encode_raw(text);
                }
                let _ = t.decode(&[0, 1, 2, 3, 99, u32::MAX]);
            }
        },
    }
}

const SIMPLE: &str = "{{ bos_token }}{% for m in messages %}{% if m['role'] == 'user' %}\
    {{ '[INST] ' + m['content'] | trim + ' [/INST]' }}{% elif loop.last %}{{ m.content }}\
    {% else %}{{ raise_exception('bad role ' ~ m.role) }}{% endif %}{% endfor %}\
    {% if add_generation_prompt %}{{ eos_token | tojson }}{% endif %}";

fn render(d: &Path) {
    if let Ok(Some(t)) = ChatTemplate::load(d) {
        let msgs = [
            ChatMessage::new("system", "be brief"),
            ChatMessage::new("user", "hello {{ world }}"),
        ];
        let _ = t.render(&msgs, true);
        let _ = t.render(&msgs[1..], false);
        let _ = t.render(&[], true);
    }
}

fn chat_template_seeds() -> Vec<Vec<u8>> {
    let qwen = std::fs::read(dir("chat", "qwen_like.jinja")).unwrap();
    vec![qwen, SIMPLE.as_bytes().to_vec()]
}

/// 5a. chat_template.jinja (beside a tokenizer_config.json naming the special tokens), rendered.
pub fn chat_template() -> Target {
    Target {
        name: "chat_template",
        file: "chat_template.jinja",
        seeds: chat_template_seeds(),
        mutate: mutate::bytes,
        setup: |d| {
            let cfg = json!({"bos_token": "<s>", "eos_token": {"content": "</s>"}});
            std::fs::write(d.join("tokenizer_config.json"), cfg.to_string()).unwrap();
        },
        run: render,
    }
}

/// 5b. tokenizer_config.json holding the template (a string, or a list of named ones).
pub fn chat_tokenizer_config() -> Target {
    let [qwen, simple] = chat_template_seeds().try_into().unwrap();
    let (qwen, simple) = (
        String::from_utf8(qwen).unwrap(),
        String::from_utf8(simple).unwrap(),
    );
    let seeds = [
        json!({"bos_token": "<s>", "eos_token": "</s>", "chat_template": qwen}),
        json!({"bos_token": {"content": "<s>"}, "eos_token": null, "chat_template": [
            {"name": "tool_use", "template": qwen}, {"name": "default", "template": simple}]}),
    ];
    Target {
        name: "chat_tokenizer_config",
        file: "tokenizer_config.json",
        seeds: seeds
            .iter()
            .map(|v| serde_json::to_vec(v).unwrap())
            .collect(),
        mutate: mutate::json,
        setup: nothing,
        run: render,
    }
}

/// Target 6, `moe block`'s input file: what the command does with it before the GPU: open the file,
/// check tensor `input` is [tokens, hidden], convert it to f32.
pub fn block_input() -> Target {
    let one = |dtype, shape: Vec<usize>, bytes: usize| {
        let mut t = Tensors::new();
        let data = (0..bytes).map(|i| (i * 13 % 127) as u8).collect();
        t.insert("input".into(), Raw { dtype, shape, data });
        file_bytes(&t)
    };
    Target {
        name: "block_input",
        file: "input.safetensors",
        seeds: vec![
            one(Dtype::F32, vec![3, 64], 3 * 64 * 4),
            one(Dtype::BF16, vec![2, 64], 2 * 64 * 2),
        ],
        mutate: mutate::safetensors,
        setup: nothing,
        run: |d| {
            let Ok(ck) = Checkpoint::open_file(&d.join("input.safetensors")) else {
                return;
            };
            let Ok(shape) = ck.shape("input") else {
                return;
            };
            if shape.len() == 2 && shape[1] == 64 && shape[0] > 0 {
                let _ = ck.f32_any("input");
            }
        },
    }
}
