//! A gpt-oss checkpoint with MXFP4 experts (`*_blocks` / `*_scales`, as the releases store
//! them), made from the hf-tiny gpt_oss fixture by quantising its experts with the crate's own
//! quantiser: by default its experts go to the GPU in MXFP4 as the file holds them, and the
//! model's logits are those of the same model with the dequantised values in f32. The MXFP4
//! fixture of scripts/mxfp4_oracle.py decodes exactly as transformers decodes it.

use std::path::PathBuf;
use std::sync::Arc;

use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::kernels::mxfp4::quantize_group;
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights};
use moe_gpu::moe::CpuOptions;
use moe_gpu::moe::budget::{ExpertBudget, ResidencyOptions};
use moe_gpu::{Logits, Model, ModelOptions};
use safetensors::Dtype;

use crate::common;
use crate::common::edit::{Raw, edited_model};
use crate::common::fixtures::{Fixture, dir};

/// The fixture's experts are 48 wide; MXFP4 needs inputs in whole groups of 32, so the MXFP4
/// model keeps the first 32 units of each expert.
const INTER: usize = 32;

fn f32s(r: &Raw) -> Vec<f32> {
    r.data
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
        .collect()
}

/// `[E, out, inp]` output-major f32 rows → (blocks [E, out, inp/32, 16], scales
/// [E, out, inp/32]).
fn quantise(w: &[f32], e: usize, out: usize, inp: usize) -> (Raw, Raw) {
    let (mut blocks, mut scales) = (Vec::new(), Vec::new());
    for group in w.chunks(32) {
        let (s, q) = quantize_group(group);
        scales.push(s);
        blocks.extend(q.chunks(2).map(|p| p[0] | (p[1] << 4)));
    }
    let u8t = |shape, data| Raw {
        dtype: Dtype::U8,
        shape,
        data,
    };
    (
        u8t(vec![e, out, inp / 32, 16], blocks),
        u8t(vec![e, out, inp / 32], scales),
    )
}

/// The fixture with every layer's experts cut to [`INTER`] units and stored as MXFP4.
fn mxfp4_model(tag: &str, edit_scales: impl Fn(&mut Raw)) -> PathBuf {
    let src = dir("hf-tiny", "gpt_oss").join("model");
    let cfg = ModelConfig::load(&src).unwrap();
    let (e, h, i) = (cfg.moe.routing.experts, cfg.hidden, cfg.moe.inter);
    edited_model(
        &src,
        tag,
        |t| {
            for l in 0..cfg.layers {
                let p = format!("model.layers.{l}.mlp.experts.");
                let gu = f32s(&t.remove(&format!("{p}gate_up_proj")).unwrap());
                let dn = f32s(&t.remove(&format!("{p}down_proj")).unwrap());
                let gb = f32s(&t[&format!("{p}gate_up_proj_bias")]);
                // [E, H, 2I] input-major (gate/up interleaved columns) → [E, 2·INTER, H]
                // output-major (interleaved rows); [E, I, H] → [E, H, INTER].
                let mut gu_out = Vec::new();
                let mut dn_out = Vec::new();
                let mut gb_out = Vec::new();
                for x in 0..e {
                    for o in 0..2 * INTER {
                        gu_out.extend((0..h).map(|hh| gu[(x * h + hh) * 2 * i + o]));
                    }
                    for hh in 0..h {
                        dn_out.extend((0..INTER).map(|ii| dn[(x * i + ii) * h + hh]));
                    }
                    gb_out.extend_from_slice(&gb[x * 2 * i..x * 2 * i + 2 * INTER]);
                }
                let (b, mut s) = quantise(&gu_out, e, 2 * INTER, h);
                edit_scales(&mut s);
                t.insert(format!("{p}gate_up_proj_blocks"), b);
                t.insert(format!("{p}gate_up_proj_scales"), s);
                let (b, s) = quantise(&dn_out, e, h, INTER);
                t.insert(format!("{p}down_proj_blocks"), b);
                t.insert(format!("{p}down_proj_scales"), s);
                t.insert(
                    format!("{p}gate_up_proj_bias"),
                    Raw::f32(vec![e, 2 * INTER], &gb_out),
                );
            }
        },
        |c| c["intermediate_size"] = INTER.into(),
    )
}

fn options(expert_format: Option<WeightFormat>) -> ModelOptions {
    ModelOptions {
        max_context: Some(32),
        max_batch: 16,
        max_logit_rows: 16,
        expert_format,
        ..Default::default()
    }
}

/// Prompt logits of every token, then three decode steps' logits.
fn logits(model: &mut Model) -> Vec<f32> {
    let ctx = common::ctx();
    let prompt = [3u32, 17, 42, 5, 99, 7, 64];
    let mut all = model.forward(ctx, &prompt, Logits::All).unwrap();
    for t in [11u32, 23, 31] {
        all.extend(model.forward(ctx, &[t], Logits::Last).unwrap());
    }
    all
}

#[test]
fn mxfp4_experts_stay_mxfp4_and_give_the_dequantised_f32_logits() {
    let d = mxfp4_model("mxfp4-model", |_| {});
    let ctx = common::ctx();
    let mut native = Model::load_with(ctx, &d, &options(None)).unwrap();
    assert_eq!(
        native.expert_format_name(),
        WeightFormat::Mxfp4.name(),
        "the default"
    );
    let mut wide = Model::load_with(ctx, &d, &options(Some(WeightFormat::F32))).unwrap();
    assert_eq!(wide.expert_format_name(), WeightFormat::F32.name());
    let (got, want) = (logits(&mut native), logits(&mut wide));
    assert_eq!(got.len(), want.len());
    let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    let max = got
        .iter()
        .zip(&want)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    println!(
        "mxfp4 vs f32 experts: {differ} of {} logits differ, max |Δ| {max:e}",
        got.len()
    );
    assert!(got.iter().all(|v| v.is_finite()));
    assert_eq!(differ, 0, "bit-identical logits (max |Δ| {max:e})");
    // Through a 3-slot expert cache the MXFP4 uploads are the same bytes.
    let cached = ModelOptions {
        residency: ResidencyOptions {
            budget: ExpertBudget::SlotsPerLayer(3),
            cpu: CpuOptions::never(),
            ..Default::default()
        },
        ..options(None)
    };
    let mut cached = Model::load_with(ctx, &d, &cached).unwrap();
    assert_eq!(logits(&mut cached), got, "expert cache");
    // A checkpoint without MXFP4 experts keeps f32 by default.
    let plain = dir("hf-tiny", "gpt_oss").join("model");
    let m = Model::load_with(ctx, &plain, &options(None)).unwrap();
    assert_eq!(m.expert_format_name(), WeightFormat::F32.name());
}

#[test]
fn an_e8m0_nan_scale_is_an_error_naming_the_tensor() {
    let d = mxfp4_model("mxfp4-nan", |s| s.data[5] = 255);
    let cfg = ModelConfig::load(&d).unwrap();
    let ckpt = Arc::new(Checkpoint::open(&d).unwrap());
    let w = load_moe_weights(&ckpt, &cfg, 0).unwrap();
    let name = "model.layers.0.mlp.experts.gate_up_proj_scales";
    for err in [
        w.experts.load(0).unwrap_err(),
        w.experts
            .load_packed(0, ExpertFormat::uniform(WeightFormat::Mxfp4))
            .unwrap_err(),
    ] {
        let msg = err.to_string();
        assert!(msg.contains(name) && msg.contains("255"), "{msg}");
    }
    // Other experts' scales are fine.
    assert!(w.experts.load(1).is_ok());
    let err = Model::load_with(common::ctx(), &d, &options(None))
        .err()
        .expect("a NaN scale fails the load")
        .to_string();
    assert!(err.contains(name), "{err}");
}

/// The MXFP4 fixture of scripts/mxfp4_oracle.py: every expert decodes to exactly the values of
/// transformers' own `convert_moe_packed_tensors` ([E, H, 2I] with gate/up interleaved, and
/// [E, I, H]), and the model loads with its experts in MXFP4.
#[test]
fn mxfp4_experts_decode_like_transformers() {
    let fx = Fixture::open("mxfp4", "gpt_oss");
    let cfg = ModelConfig::load(&fx.model_dir).unwrap();
    let ckpt = Arc::new(Checkpoint::open(&fx.model_dir).unwrap());
    let (e, h, i) = (cfg.moe.routing.experts, cfg.hidden, cfg.moe.inter);
    let mut checked = 0;
    for l in 0..cfg.layers {
        let w = load_moe_weights(&ckpt, &cfg, l).unwrap();
        let gate_up = fx.f32(&format!("decoded.layers.{l}.gate_up_proj"));
        let down = fx.f32(&format!("decoded.layers.{l}.down_proj"));
        assert_eq!((gate_up.len(), down.len()), (e * h * 2 * i, e * i * h));
        for x in 0..e {
            let ex = w.experts.load(x).unwrap();
            for o in 0..i {
                for c in 0..h {
                    let at = (x * h + c) * 2 * i + 2 * o;
                    assert_eq!(ex.gate[o * h + c], gate_up[at], "layer {l} expert {x} gate");
                    assert_eq!(ex.up[o * h + c], gate_up[at + 1], "layer {l} expert {x} up");
                    assert_eq!(ex.down[c * i + o], down[(x * i + o) * h + c], "down");
                }
            }
            checked += 3 * h * i;
        }
    }
    let nonzero = fx
        .f32("decoded.layers.0.gate_up_proj")
        .iter()
        .any(|v| *v != 0.0);
    assert!(nonzero, "the fixture's experts are all zero");
    println!("{checked} MXFP4 values decode as transformers decodes them");
    let model = Model::load_with(common::ctx(), &fx.model_dir, &options(None)).unwrap();
    assert_eq!(model.expert_format_name(), WeightFormat::Mxfp4.name());
}
