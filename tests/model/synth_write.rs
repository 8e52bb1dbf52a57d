//! `moe synth`'s writer on each preset shrunk to tiny widths (expert counts, top-k, routing,
//! layouts and tensor names kept): the shards and index open with `Checkpoint::open`, every
//! tensor has the planned dtype, shape and values, every MoE layer's experts load, and the
//! model runs a forward step on the GPU.

use std::sync::Arc;

use moe_gpu::model::synth::SynthPlan;
use moe_gpu::model::synth::presets::{PRESETS, SynthDtype, preset_config};
use moe_gpu::model::{Checkpoint, Logits, Model, ModelConfig, load_moe_weights};
use serde_json::{Value, json};

use crate::common;
use crate::common::edit::temp_dir;

/// `config` with tiny widths: hidden 64, heads 4 (2 kv heads where the model groups them),
/// head width 16, experts 32 wide, vocabulary 256.
fn shrink(mut c: Value) -> Value {
    let set = |c: &mut Value, key: &str, v: Value| {
        if c.get(key).is_some_and(|old| !old.is_null()) {
            c[key] = v;
        }
    };
    let grouped = c["num_key_value_heads"] != c["num_attention_heads"];
    c["hidden_size"] = json!(64);
    c["vocab_size"] = json!(256);
    c["num_attention_heads"] = json!(4);
    c["num_key_value_heads"] = json!(if grouped { 2 } else { 4 });
    c["intermediate_size"] = json!(64);
    set(&mut c, "head_dim", json!(16));
    set(&mut c, "moe_intermediate_size", json!(32));
    set(&mut c, "shared_expert_intermediate_size", json!(64));
    set(&mut c, "kv_lora_rank", json!(32));
    set(&mut c, "qk_nope_head_dim", json!(16));
    set(&mut c, "qk_rope_head_dim", json!(8));
    set(&mut c, "v_head_dim", json!(16));
    c
}

#[test]
fn tiny_presets_write_shards_that_load_and_run() {
    let ctx = common::ctx();
    let mut cases: Vec<(&str, Option<SynthDtype>)> = PRESETS.iter().map(|p| (*p, None)).collect();
    cases.push(("gpt-oss-20b", Some(SynthDtype::Bf16)));
    for (name, dtype) in cases {
        let config = shrink(preset_config(name, Some(2), dtype).unwrap());
        let plan = SynthPlan::from_config(config, 11).unwrap();
        let dir = temp_dir("synth");
        // Small shards, to exercise the index.
        let written = plan.write(&dir, 200_000, |_| {}).unwrap();
        assert!(written.len() > 1, "{name}: {} shard(s)", written.len());
        assert!(dir.join("model.safetensors.index.json").is_file());
        let total: u64 = written.iter().map(|w| w.bytes).sum();
        assert_eq!(total, plan.bytes(), "{name}");

        let ckpt = Checkpoint::open(&dir).unwrap();
        assert_eq!(ckpt.names().count(), plan.tensors.len(), "{name}");
        for t in &plan.tensors {
            let e = ckpt.entry(&t.name).unwrap();
            assert_eq!(
                (e.dtype, &e.shape),
                (t.dtype, &t.shape),
                "{name}: {}",
                t.name
            );
            if t.dtype != safetensors::Dtype::U8 {
                let got = ckpt.f32_any(&t.name).unwrap();
                assert_eq!(got, plan.values(&t.name).unwrap(), "{name}: {}", t.name);
            }
        }
        let cfg = ModelConfig::load(&dir).unwrap();
        let ckpt = Arc::new(ckpt);
        for layer in cfg.moe_layers() {
            let w = load_moe_weights(&ckpt, &cfg, layer).unwrap();
            let expert = w.experts.load(cfg.experts_in(layer) - 1).unwrap();
            let std =
                (expert.gate.iter().map(|v| v * v).sum::<f32>() / expert.gate.len() as f32).sqrt();
            assert!((0.01..0.04).contains(&std), "{name}: expert std {std}");
        }
        let mut model = Model::load(ctx, &dir).unwrap();
        let logits = model.forward(ctx, &[1, 2, 3], Logits::Last).unwrap();
        assert_eq!(logits.len(), cfg.vocab, "{name}");
        assert!(logits.iter().all(|v| v.is_finite()), "{name}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn one_shard_is_written_without_an_index() {
    let config = shrink(preset_config("olmoe-1b-7b", Some(1), None).unwrap());
    let plan = SynthPlan::from_config(config, 0).unwrap();
    let dir = temp_dir("synth-one");
    plan.write(&dir, 1 << 30, |_| {}).unwrap();
    assert!(dir.join("model.safetensors").is_file());
    assert!(!dir.join("model.safetensors.index.json").exists());
    assert_eq!(
        Checkpoint::open(&dir).unwrap().names().count(),
        plan.tensors.len()
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
