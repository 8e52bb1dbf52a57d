//! Checkpoint layouts and config spellings seen in real releases: sharded safetensors, the
//! pre-transformers-5 rope fields, and gpt-oss MXFP4 experts.

use std::sync::Arc;

use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec};
use moe_gpu::moe::{DynamicActivation, MoeLayer};
use moe_gpu::reference::moe_block;
use moe_gpu::synthetic::Rng;

use crate::common;
use crate::common::edit::{
    Raw, Tensors, edited_model, read_config, read_tensors, temp_dir, write_config, write_tensors,
};
use crate::common::fixtures::{Fixture, dir};

fn block_output(model_dir: &std::path::Path, input: &[f32]) -> Vec<f32> {
    let cfg = ModelConfig::load(model_dir).unwrap();
    let ckpt = Arc::new(Checkpoint::open(model_dir).unwrap());
    let layer = cfg.moe_layers()[0];
    let w = load_moe_weights(&ckpt, &cfg, layer).unwrap();
    let ctx = common::ctx();
    let moe = MoeLayer::new(
        ctx,
        moe_layer_spec(&cfg, ExpertFormat::uniform(WeightFormat::F32)),
        &w,
        64,
    )
    .unwrap();
    moe.forward(ctx, input).unwrap()
}

#[test]
fn sharded_checkpoint_loads_and_matches_the_single_file() {
    let src = dir("hf-tiny", "qwen2_moe").join("model");
    let all = read_tensors(&src);
    let dst = temp_dir("sharded");
    let mut shards: [Tensors; 3] = Default::default();
    let mut map = serde_json::Map::new();
    for (i, (name, raw)) in all.iter().enumerate() {
        shards[i % 3].insert(name.clone(), raw.clone());
        map.insert(
            name.clone(),
            format!("model-{:05}-of-00003.safetensors", i % 3 + 1).into(),
        );
    }
    for (i, s) in shards.iter().enumerate() {
        write_tensors(
            &dst.join(format!("model-{:05}-of-00003.safetensors", i + 1)),
            s,
        );
    }
    let index = serde_json::json!({ "metadata": {}, "weight_map": map });
    std::fs::write(dst.join("model.safetensors.index.json"), index.to_string()).unwrap();
    write_config(&dst, &read_config(&src));
    let fx = Fixture::open("hf-tiny", "qwen2_moe");
    let x = fx.f32("block.layers.0.input");
    let a = block_output(&src, &x);
    let b = block_output(&dst, &x);
    assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits()));
}

#[test]
fn older_rope_spellings_parse_like_rope_parameters() {
    for arch in ["deepseek_v3", "gpt_oss", "mixtral"] {
        let src = dir("hf-tiny", arch).join("model");
        let new = ModelConfig::load(&src).unwrap();
        let d = edited_model(
            &src,
            "rope",
            |_| {},
            |c| {
                let mut p = c["rope_parameters"].clone();
                c.as_object_mut().unwrap().remove("rope_parameters");
                c["rope_theta"] = p["rope_theta"].clone();
                p.as_object_mut().unwrap().remove("rope_theta");
                if p["rope_type"] != "default" {
                    p["type"] = p["rope_type"].clone();
                    p.as_object_mut().unwrap().remove("rope_type");
                    c["rope_scaling"] = p;
                }
            },
        );
        let old = ModelConfig::load(&d).unwrap();
        assert_eq!(old.rope, new.rope, "{arch}");
    }
}

const FP4: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// The test's own MXFP4 quantiser: per 32 values a power-of-two scale, nearest FP4 code.
fn quantise(w: &[f32], out: usize, inp: usize) -> (Vec<u8>, Vec<u8>) {
    let mut blocks = Vec::new();
    let mut scales = Vec::new();
    for r in 0..out {
        for b in 0..inp / 32 {
            let vals = &w[r * inp + b * 32..r * inp + b * 32 + 32];
            let max = vals.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-30);
            let exp = (max / 6.0).log2().ceil() as i32;
            scales.push((exp + 127) as u8);
            let code = |v: f32| {
                (0..16u8)
                    .min_by(|&a, &b| {
                        let da = (FP4[a as usize] * 2f32.powi(exp) - v).abs();
                        let db = (FP4[b as usize] * 2f32.powi(exp) - v).abs();
                        da.total_cmp(&db)
                    })
                    .unwrap()
            };
            for pair in vals.chunks(2) {
                blocks.push(code(pair[0]) | (code(pair[1]) << 4));
            }
        }
    }
    (blocks, scales)
}

fn dequantise(blocks: &[u8], scales: &[u8], out: usize, inp: usize) -> Vec<f32> {
    (0..out * inp)
        .map(|i| {
            let (r, c) = (i / inp, i % inp);
            let byte = blocks[(r * inp + c) / 2];
            let nib = if c % 2 == 0 { byte & 15 } else { byte >> 4 };
            FP4[nib as usize] * 2f32.powi(scales[r * (inp / 32) + c / 32] as i32 - 127)
        })
        .collect()
}

#[test]
fn gpt_oss_mxfp4_experts_load_dequantised() {
    let (e, h, i) = (4usize, 64usize, 32usize);
    let src = dir("hf-tiny", "gpt_oss").join("model");
    let mut rng = Rng::new(21);
    // Output-major [E, 2I, H] gate/up (rows interleaved) and [E, H, I] down, as in releases.
    let gu: Vec<f32> = rng.normals(e * 2 * i * h, 0.3);
    let dn: Vec<f32> = rng.normals(e * h * i, 0.3);
    let mut gu_q = (Vec::new(), Vec::new());
    let mut dn_q = (Vec::new(), Vec::new());
    for x in 0..e {
        let (b, s) = quantise(&gu[x * 2 * i * h..(x + 1) * 2 * i * h], 2 * i, h);
        gu_q.0.extend(b);
        gu_q.1.extend(s);
        let (b, s) = quantise(&dn[x * h * i..(x + 1) * h * i], h, i);
        dn_q.0.extend(b);
        dn_q.1.extend(s);
    }
    let u8t = |shape: Vec<usize>, data: Vec<u8>| Raw {
        dtype: safetensors::Dtype::U8,
        shape,
        data,
    };
    let p = "model.layers.0.mlp.";
    let d = edited_model(
        &src,
        "mxfp4",
        |t| {
            t.retain(|n, _| {
                !n.starts_with("model.layers.1.") && !n.starts_with(&format!("{p}experts."))
            });
            t.insert(
                format!("{p}experts.gate_up_proj_blocks"),
                u8t(vec![e, 2 * i, h / 32, 16], gu_q.0.clone()),
            );
            t.insert(
                format!("{p}experts.gate_up_proj_scales"),
                u8t(vec![e, 2 * i, h / 32], gu_q.1.clone()),
            );
            t.insert(
                format!("{p}experts.down_proj_blocks"),
                u8t(vec![e, h, i / 32, 16], dn_q.0.clone()),
            );
            t.insert(
                format!("{p}experts.down_proj_scales"),
                u8t(vec![e, h, i / 32], dn_q.1.clone()),
            );
            t.insert(
                format!("{p}experts.gate_up_proj_bias"),
                Raw::f32(vec![e, 2 * i], &rng.normals(e * 2 * i, 0.1)),
            );
            t.insert(
                format!("{p}experts.down_proj_bias"),
                Raw::f32(vec![e, h], &rng.normals(e * h, 0.1)),
            );
            t.insert(
                format!("{p}router.weight"),
                Raw::f32(vec![e, h], &rng.normals(e * h, 0.25)),
            );
            t.insert(
                format!("{p}router.bias"),
                Raw::f32(vec![e], &rng.normals(e, 0.5)),
            );
        },
        |c| {
            c["num_local_experts"] = e.into();
            c["intermediate_size"] = i.into();
            c["num_hidden_layers"] = 1.into();
            c["layer_types"] = serde_json::json!(["sliding_attention"]);
        },
    );
    let cfg = ModelConfig::load(&d).unwrap();
    let ckpt = Arc::new(Checkpoint::open(&d).unwrap());
    let w = load_moe_weights(&ckpt, &cfg, 0).unwrap();
    for x in 0..e {
        let ew = w.experts.load(x).unwrap();
        let deq = dequantise(
            &gu_q.0[x * 2 * i * h / 2..(x + 1) * 2 * i * h / 2],
            &gu_q.1[x * 2 * i * h / 32..(x + 1) * 2 * i * h / 32],
            2 * i,
            h,
        );
        for r in 0..i {
            assert_eq!(
                &ew.gate[r * h..(r + 1) * h],
                &deq[2 * r * h..(2 * r + 1) * h],
                "expert {x} gate row {r}"
            );
            assert_eq!(
                &ew.up[r * h..(r + 1) * h],
                &deq[(2 * r + 1) * h..(2 * r + 2) * h],
                "expert {x} up row {r}"
            );
        }
        let deq = dequantise(
            &dn_q.0[x * h * i / 2..(x + 1) * h * i / 2],
            &dn_q.1[x * h * i / 32..(x + 1) * h * i / 32],
            h,
            i,
        );
        assert_eq!(ew.down, deq, "expert {x} down");
    }
    // And the dequantised layer runs on the GPU like the reference.
    let spec = moe_layer_spec(&cfg, ExpertFormat::uniform(WeightFormat::F32));
    let x = Rng::new(3).normals(9 * h, 1.0);
    let ctx = common::ctx();
    let got = MoeLayer::new(ctx, spec.clone(), &w, 9)
        .unwrap()
        .forward(ctx, &x)
        .unwrap();
    let want = moe_block(&x, &spec, &w, &DynamicActivation::default()).unwrap();
    common::assert_close("mxfp4 layer", &got, &want.output, 1e-4);
}
