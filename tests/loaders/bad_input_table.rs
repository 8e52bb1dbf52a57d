//! One table of bad input, one row each: the fixture, the edit that breaks it, and a substring
//! of the error it must give (naming the file, tensor, key or layer at fault). A row edits a
//! copy of an hf-tiny model, loads it with [`Model::load`] and runs three prompt tokens
//! through it; a `Block` row runs the MoE block of layer 0 on its input instead, as `moe
//! block` does. Every row runs; a failure lists every row that failed with what it got.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec};
use moe_gpu::moe::MoeLayer;
use moe_gpu::{Logits, Model};
use safetensors::Dtype;
use serde_json::{Value, json};

use crate::common;
use crate::common::edit::{
    Raw, Tensors, edit_header, edited_model, read_config, read_tensors, temp_dir, write_config,
    write_tensors,
};
use crate::common::fixtures::dir;

/// How a row breaks the model.
#[derive(Clone)]
enum Input {
    /// model.safetensors holds these bytes.
    Bytes(&'static [u8]),
    /// model.safetensors cut to this fraction of its bytes.
    Truncated(f64),
    /// model.safetensors is a directory.
    DirCheckpoint,
    /// No safetensors file in the directory.
    NoCheckpoint,
    /// config.json with this key set to this value (`null`: removed).
    Config(&'static str, Value),
    /// config.json is this text.
    ConfigText(&'static str),
    /// A tensor changed.
    Tensor(&'static str, Edit),
    /// The safetensors header's JSON text rewritten (for headers no writer produces).
    Header(fn(&str) -> String),
    /// Two shards, every tensor in a.safetensors and the router also in b.safetensors; the
    /// index maps the first tensor (sorted) to this file, or lists the router twice.
    WeightMap(Map),
    /// The MoE block of layer 0 runs on this input.
    Block(BlockX),
}
use Input::*;

#[derive(Clone, Copy)]
enum Edit {
    Remove,
    Dtype(Dtype),
    /// Zeros of this shape.
    Shape(&'static [usize]),
    /// A [rows, cols] matrix stored as [cols, rows].
    Transpose,
    /// One value (f32 tensors).
    Set(usize, f32),
    /// Every value.
    Fill(f32),
    /// Stored as BF16, with one value set.
    Bf16(usize, f32),
}
use Edit::*;

#[derive(Clone, Copy)]
enum Map {
    /// The first tensor maps to this file.
    File(&'static str),
    /// The router is listed in both shards.
    RouterTwice,
    /// The index lists the router in a.safetensors only; b.safetensors holds it too.
    RouterInTwoFiles,
}

#[derive(Clone, Copy)]
enum BlockX {
    /// Two tokens, every value this.
    All(f32),
    /// Two tokens of 0.5, with this value at this index.
    At(usize, f32),
    /// This many values of 0.5.
    Len(usize),
}

const ROUTER: &str = "model.layers.0.block_sparse_moe.gate.weight";
const W1: &str = "model.layers.0.block_sparse_moe.experts.2.w1.weight";
const W2: &str = "model.layers.0.block_sparse_moe.experts.3.w2.weight";
const Q: &str = "model.layers.1.self_attn.q_proj.weight";
const K: &str = "model.layers.1.self_attn.k_proj.weight";
const NORM1: &str = "model.layers.1.post_attention_layernorm.weight";

#[rustfmt::skip]
fn rows() -> Vec<(&'static str, Input, &'static str)> {
    let m = "mixtral";
    vec![
        // The checkpoint file itself.
        (m, Truncated(0.5), "model.safetensors: not a valid safetensors file: tensor `model.layers.0.block_sparse_moe.experts.7.w1.weight`: data_offsets [712704, 737280] run past the end"),
        (m, Truncated(0.0), "model.safetensors: not a valid safetensors file: header too small"),
        (m, Bytes(b"this is not a checkpoint at all"), "model.safetensors: not a valid safetensors file: header too large"),
        (m, Bytes(b""), "model.safetensors: not a valid safetensors file: header too small"),
        (m, Bytes(&[0xff; 16]), "model.safetensors: not a valid safetensors file: header too large"),
        (m, Bytes(b"\x02\0\0\0\0\0\0\0{}"), "`model.embed_tokens.weight`: is missing from the checkpoint"),
        (m, Bytes(b"\x04\0\0\0\0\0\0\0[1]x"), "model.safetensors: not a valid safetensors file: invalid JSON in header"),
        (m, DirCheckpoint, "model.safetensors: not a valid safetensors file: is a directory"),
        (m, NoCheckpoint, "no .safetensors file in the model directory"),
        // Headers no writer produces.
        (m, Header(duplicate_router), "model.safetensors: not a valid safetensors file: tensor `model.layers.0.block_sparse_moe.gate.weight` is listed twice"),
        (m, Header(|h| set_header(h, ROUTER, "shape", json!([3, 64]))), "`model.layers.0.block_sparse_moe.gate.weight`: shape [3, 64] of F32 does not fit its data_offsets"),
        (m, Header(|h| set_header(h, ROUTER, "dtype", json!("F99"))), "model.safetensors: not a valid safetensors file: invalid JSON in header: unknown variant `F99`"),
        (m, Header(first_past_end), "tensor `lm_head.weight`: data_offsets [1099511627776, 1099511726080] run past the end of the file"),
        (m, Header(|h| set_header(h, ROUTER, "data_offsets", json!([8, 4]))), "`model.layers.0.block_sparse_moe.gate.weight`: shape [8, 64] of F32 does not fit its data_offsets [8, 4]"),
        // Shards.
        (m, WeightMap(Map::File("../../x.safetensors")), "model.safetensors.index.json: not a valid safetensors file: weight_map entry `lm_head.weight` points to `../../x.safetensors`; shards must be plain file names inside the model directory"),
        (m, WeightMap(Map::File("/etc/x.safetensors")), "weight_map entry `lm_head.weight` points to `/etc/x.safetensors`; shards must be plain file names inside the model directory"),
        (m, WeightMap(Map::File("sub/x.safetensors")), "weight_map entry `lm_head.weight` points to `sub/x.safetensors`; shards must be plain file names"),
        (m, WeightMap(Map::File("missing.safetensors")), "missing.safetensors: No such file or directory"),
        (m, WeightMap(Map::RouterTwice), "weight_map names tensor `model.layers.0.block_sparse_moe.gate.weight` twice: in shard \"a.safetensors\" and in shard \"b.safetensors\""),
        (m, WeightMap(Map::RouterInTwoFiles), "tensor `model.layers.0.block_sparse_moe.gate.weight`: is in two shards"),
        // config.json.
        (m, Config("num_hidden_layers", json!(0)), "config.json field `num_hidden_layers`: must be positive"),
        (m, Config("rms_norm_eps", json!(-1.0)), "config.json field `rms_norm_eps`: is -1; it must be positive and finite"),
        (m, Config("rms_norm_eps", json!(0.0)), "config.json field `rms_norm_eps`: is 0;"),
        (m, Config("num_experts_per_tok", json!(9)), "`num_experts_per_tok`: k = 9 must be between 1 and the expert count 8"),
        (m, Config("num_experts_per_tok", json!(0)), "`num_experts_per_tok`: k = 0 must be between 1"),
        (m, Config("model_type", json!("llama4_moe")), "unsupported model_type `llama4_moe`"),
        (m, Config("model_type", Value::Null), "`model_type`: is missing"),
        (m, Config("hidden_size", Value::Null), "config.json field `hidden_size`: is missing"),
        (m, Config("hidden_size", json!("64")), "`hidden_size`: must be a non-negative integer"),
        (m, Config("hidden_size", json!(-64)), "`hidden_size`: must be a non-negative integer, found -64"),
        (m, Config("hidden_size", json!(65)), "`model.embed_tokens.weight`: has shape [384, 64], expected [384, 65]"),
        (m, Config("intermediate_size", json!(1.5)), "`intermediate_size`: must be a non-negative integer, found 1.5"),
        (m, Config("num_hidden_layers", json!(1e30)), "`num_hidden_layers`: must be a non-negative integer, found 1e+30"),
        (m, Config("num_attention_heads", json!(0)), "`num_attention_heads`: must be positive"),
        (m, Config("num_key_value_heads", json!(3)), "`num_key_value_heads`: 3 does not divide num_attention_heads = 4"),
        (m, Config("vocab_size", Value::Null), "config.json field `vocab_size`: is missing"),
        (m, Config("vocab_size", json!(10)), "`model.embed_tokens.weight`: has shape [384, 64], expected [10, 64]"),
        (m, Config("rope_parameters", json!({"rope_theta": "big"})), "`rope_theta`: must be a number"),
        (m, Config("tie_word_embeddings", json!("yes")), "`tie_word_embeddings`: must be true or false, found \"yes\""),
        (m, ConfigText("{\"model_type\": "), "config.json: not valid JSON"),
        (m, ConfigText("[]"), "config.json field `model_type`: is missing"),
        ("qwen2_moe", Config("moe_intermediate_size", Value::Null), "config.json field `moe_intermediate_size`: is missing"),
        ("deepseek_v3", Config("n_group", json!(3)), "`n_group`: 3 groups do not divide 16 experts evenly"),
        // Tensors.
        (m, Tensor(W2, Remove), "`model.layers.0.block_sparse_moe.experts.3.w2.weight`: is missing from the checkpoint"),
        (m, Tensor(Q, Remove), "`model.layers.1.self_attn.q_proj.weight`: is missing"),
        (m, Tensor("model.embed_tokens.weight", Remove), "`model.embed_tokens.weight`: is missing"),
        (m, Tensor("model.norm.weight", Remove), "`model.norm.weight`: is missing"),
        (m, Tensor("lm_head.weight", Remove), "`lm_head.weight`: is missing"),
        (m, Tensor(ROUTER, Shape(&[7, 64])), "`model.layers.0.block_sparse_moe.gate.weight`: has shape [7, 64], expected [8, 64]"),
        (m, Tensor(ROUTER, Transpose), "`model.layers.0.block_sparse_moe.gate.weight`: has shape [64, 8], expected [8, 64]"),
        (m, Tensor(W1, Transpose), "`model.layers.0.block_sparse_moe.experts.2.w1.weight`: has shape [64, 96], expected [96, 64]"),
        (m, Tensor(K, Transpose), "`model.layers.1.self_attn.k_proj.weight`: has shape [64, 32], expected [32, 64]"),
        (m, Tensor(W1, Dtype(Dtype::I32)), "`model.layers.0.block_sparse_moe.experts.2.w1.weight`: has dtype I32"),
        (m, Tensor(Q, Dtype(Dtype::U32)), "`model.layers.1.self_attn.q_proj.weight`: has dtype U32"),
        (m, Tensor(W1, Set(5, f32::NAN)), "`model.layers.0.block_sparse_moe.experts.2.w1.weight`: value 5 (flat index) is NaN"),
        (m, Tensor(W1, Set(5, f32::INFINITY)), "`model.layers.0.block_sparse_moe.experts.2.w1.weight`: value 5 (flat index) is inf"),
        (m, Tensor(ROUTER, Set(7, f32::NEG_INFINITY)), "`model.layers.0.block_sparse_moe.gate.weight`: value 7 (flat index) is -inf"),
        (m, Tensor(ROUTER, Bf16(7, f32::INFINITY)), "`model.layers.0.block_sparse_moe.gate.weight`: value 7 (flat index) is inf"),
        (m, Tensor(Q, Set(0, f32::NAN)), "`model.layers.1.self_attn.q_proj.weight`: value 0 (flat index) is NaN"),
        (m, Tensor("model.embed_tokens.weight", Set(2 * 64 + 1, f32::NAN)), "`model.embed_tokens.weight`: value 129 (flat index) is NaN"),
        ("gpt_oss", Tensor("model.layers.0.mlp.router.bias", Remove), "`model.layers.0.mlp.router.bias`: is missing"),
        ("deepseek_v3", Tensor("model.layers.1.mlp.gate.e_score_correction_bias", Remove), "`model.layers.1.mlp.gate.e_score_correction_bias`: is missing"),
        ("olmoe", Tensor("model.layers.0.mlp.gate.weight", Shape(&[15, 64])), "`model.layers.0.mlp.gate.weight`: has shape [15, 64], expected [16, 64]"),
        // Finite weights whose products overflow f32: found by the router's status word.
        (m, Tensor("model.layers.0.post_attention_layernorm.weight", Fill(3e38)), "layer 0: router logits are not finite (NaN or Inf)"),
        (m, Tensor(NORM1, Fill(3e38)), "layer 1: router logits are not finite (NaN or Inf)"),
        // `moe block` input.
        (m, Block(BlockX::All(3e38)), "token 0, column 0 is 3e38, above the 1e9"),
        (m, Block(BlockX::All(-2e9)), "token 0, column 0 is -2e9, above the 1e9"),
        (m, Block(BlockX::At(75, f32::NAN)), "token 1, column 11 is NaN"),
        (m, Block(BlockX::At(3, f32::INFINITY)), "token 0, column 3 is inf"),
        (m, Block(BlockX::Len(65)), "not a positive multiple of hidden size 64"),
        (m, Block(BlockX::Len(0)), "not a positive multiple of hidden size 64"),
        (m, Block(BlockX::All(f32::NAN)), "token 0, column 0 is NaN"),
    ]
}

fn set_header(h: &str, name: &str, key: &str, value: Value) -> String {
    let mut v: Value = serde_json::from_str(h).unwrap();
    v[name][key] = value;
    v.to_string()
}

/// A second copy of the router entry, first in the header (serde would keep the last).
fn duplicate_router(h: &str) -> String {
    let v: Value = serde_json::from_str(h).unwrap();
    format!("{{\"{ROUTER}\":{},{}", v[ROUTER], &h[1..])
}

/// The tensor stored first moved past the end of the file (moving another would leave a hole
/// that the next tensor gets blamed for).
fn first_past_end(h: &str) -> String {
    let mut v: Value = serde_json::from_str(h).unwrap();
    let first = v
        .as_object()
        .unwrap()
        .iter()
        .find(|(_, e)| e["data_offsets"][0] == 0)
        .map(|(k, _)| k.clone())
        .unwrap();
    let size = v[&first]["data_offsets"][1].as_u64().unwrap();
    v[&first]["data_offsets"] = json!([1u64 << 40, (1u64 << 40) + size]);
    v.to_string()
}

fn edit_tensor(t: &mut Tensors, name: &str, edit: Edit) {
    let Some(r) = t.get_mut(name) else {
        panic!("no tensor {name} in the fixture");
    };
    match edit {
        Remove => {
            t.remove(name);
        }
        Dtype(d) => r.dtype = d,
        Shape(s) => *r = Raw::f32(s.to_vec(), &vec![0.0; s.iter().product()]),
        Transpose => r.shape.reverse(),
        Set(i, v) => r.data[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes()),
        Fill(v) => {
            let n = r.data.len() / 4;
            *r = Raw::f32(r.shape.clone(), &vec![v; n]);
        }
        Bf16(i, v) => {
            let mut values: Vec<f32> = bytemuck::cast_slice(&r.data).to_vec();
            values[i] = v;
            let bits: Vec<u16> = values
                .iter()
                .map(|x| half::bf16::from_f32(*x).to_bits())
                .collect();
            r.dtype = Dtype::BF16;
            r.data = bytemuck::cast_slice(&bits).to_vec();
        }
    }
}

/// Two shards of `src` in a fresh directory: every tensor in a.safetensors, the router also in
/// b.safetensors, and an index written as `map` says.
fn two_shards(src: &Path, map: Map) -> PathBuf {
    let d = temp_dir("table-shards");
    let all = read_tensors(src);
    let mut second = all.clone();
    second.retain(|k, _| k == ROUTER);
    write_tensors(&d.join("a.safetensors"), &all);
    write_tensors(&d.join("b.safetensors"), &second);
    let mut entries: Vec<String> = all
        .keys()
        .map(|n| format!("\"{n}\":\"a.safetensors\""))
        .collect();
    match map {
        Map::File(f) => entries[0] = format!("\"{}\":\"{f}\"", all.keys().next().unwrap()),
        Map::RouterTwice => entries.push(format!("\"{ROUTER}\":\"b.safetensors\"")),
        Map::RouterInTwoFiles => entries.push("\"unused\":\"b.safetensors\"".into()),
    }
    let index = format!(
        "{{\"metadata\":{{}},\"weight_map\":{{{}}}}}",
        entries.join(",")
    );
    std::fs::write(d.join("model.safetensors.index.json"), index).unwrap();
    write_config(&d, &read_config(src));
    d
}

/// The model directory a row describes.
fn prepare(arch: &str, input: &Input) -> PathBuf {
    let src = dir("hf-tiny", arch).join("model");
    let copy = || edited_model(&src, "table", |_| {}, |_| {});
    let st = |d: &Path| d.join("model.safetensors");
    match input {
        Bytes(b) => {
            let d = copy();
            std::fs::write(st(&d), b).unwrap();
            d
        }
        Truncated(f) => {
            let d = copy();
            let bytes = std::fs::read(st(&d)).unwrap();
            std::fs::write(st(&d), &bytes[..(bytes.len() as f64 * f) as usize]).unwrap();
            d
        }
        DirCheckpoint | NoCheckpoint => {
            let d = copy();
            std::fs::remove_file(st(&d)).unwrap();
            if matches!(input, DirCheckpoint) {
                std::fs::create_dir(st(&d)).unwrap();
            }
            d
        }
        Config(key, value) => edited_model(
            &src,
            "table",
            |_| {},
            |c| match value {
                Value::Null => drop(c.as_object_mut().unwrap().remove(*key)),
                v => c[*key] = v.clone(),
            },
        ),
        ConfigText(text) => {
            let d = copy();
            std::fs::write(d.join("config.json"), text).unwrap();
            d
        }
        Tensor(name, edit) => edited_model(&src, "table", |t| edit_tensor(t, name, *edit), |_| {}),
        Header(f) => {
            let d = copy();
            edit_header(&st(&d), f);
            d
        }
        WeightMap(map) => two_shards(&src, *map),
        Block(_) => src,
    }
}

/// Runs layer 0's MoE block (built for 8 tokens) on `x`, as `moe block` does.
fn run_block(d: &Path, x: BlockX) -> moe_gpu::Result<()> {
    let cfg = ModelConfig::load(d)?;
    let ckpt = Arc::new(Checkpoint::open(d)?);
    let w = load_moe_weights(&ckpt, &cfg, 0)?;
    let layer = MoeLayer::new(
        common::ctx(),
        moe_layer_spec(&cfg, ExpertFormat::uniform(WeightFormat::F32)),
        &w,
        8,
    )?;
    let h = cfg.hidden;
    let input = match x {
        BlockX::All(v) => vec![v; 2 * h],
        BlockX::At(i, v) => {
            let mut x = vec![0.5; 2 * h];
            x[i] = v;
            x
        }
        BlockX::Len(n) => vec![0.5; n],
    };
    layer.forward(common::ctx(), &input).map(drop)
}

fn run(arch: &str, input: &Input) -> moe_gpu::Result<()> {
    let d = prepare(arch, input);
    if let Block(x) = input {
        return run_block(&d, *x);
    }
    let ctx = common::ctx();
    let mut model = Model::load(ctx, &d)?;
    model.forward(ctx, &[1, 2, 3], Logits::Last).map(drop)
}

#[test]
fn every_bad_input_gives_its_error() {
    let rows = rows();
    assert!(rows.len() >= 50, "{} rows", rows.len());
    let mut failures = Vec::new();
    for (i, (arch, input, want)) in rows.iter().enumerate() {
        match run(arch, input) {
            Ok(()) => failures.push(format!("row {i} ({arch}): no error; wanted `{want}`")),
            Err(e) if !e.to_string().contains(want) => {
                failures.push(format!("row {i} ({arch}): `{e}` lacks `{want}`"));
            }
            Err(_) => {}
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows failed:\n{}",
        failures.len(),
        rows.len(),
        failures.join("\n")
    );
}
