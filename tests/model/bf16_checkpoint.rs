//! A bf16 checkpoint with `--dtype bf16`: the experts' rows go to the GPU as the file's bytes
//! (no trip through f32), the same words packing its f32 values would give, and the model's
//! logits are those of the same checkpoint with f32 experts.

use std::sync::Arc;

use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights};
use moe_gpu::{Logits, Model, ModelOptions};
use safetensors::Dtype;

use crate::common;
use crate::common::edit::{Raw, edited_model};
use crate::common::fixtures::dir;

/// hf-tiny mixtral (hidden 64, experts 96 wide: whole rows of 8) with bf16 experts.
fn bf16_mixtral() -> std::path::PathBuf {
    let src = dir("hf-tiny", "mixtral").join("model");
    edited_model(
        &src,
        "bf16-experts",
        |t| {
            for (name, raw) in t.iter_mut() {
                if name.contains(".experts.") && raw.dtype == Dtype::F32 {
                    let data = raw
                        .data
                        .chunks_exact(4)
                        .flat_map(|c| {
                            let v = f32::from_le_bytes(c.try_into().unwrap());
                            half::bf16::from_f32(v).to_le_bytes()
                        })
                        .collect();
                    *raw = Raw {
                        dtype: Dtype::BF16,
                        shape: raw.shape.clone(),
                        data,
                    };
                }
            }
        },
        |_| {},
    )
}

fn options(expert_format: WeightFormat) -> ModelOptions {
    ModelOptions {
        max_context: Some(32),
        max_batch: 16,
        max_logit_rows: 16,
        expert_format: Some(expert_format),
        ..Default::default()
    }
}

#[test]
fn bf16_experts_load_from_the_file_bytes_and_give_the_f32_logits() {
    let d = bf16_mixtral();
    let cfg = ModelConfig::load(&d).unwrap();
    let ckpt = Arc::new(Checkpoint::open(&d).unwrap());
    let (h, i) = (cfg.hidden, cfg.moe.inter);
    let w = load_moe_weights(&ckpt, &cfg, 0).unwrap();
    for x in 0..cfg.moe.routing.experts {
        let direct = w
            .experts
            .load_packed(x, ExpertFormat::uniform(WeightFormat::Bf16))
            .unwrap();
        let direct = direct.expect("bf16 rows of whole vec4 words are copied");
        let packed =
            w.experts
                .load(x)
                .unwrap()
                .pack(ExpertFormat::uniform(WeightFormat::Bf16), h, i);
        assert_eq!(direct, packed, "expert {x}");
        // Other formats still go through f32.
        assert!(
            w.experts
                .load_packed(x, ExpertFormat::uniform(WeightFormat::F16))
                .unwrap()
                .is_none()
        );
    }
    let ctx = common::ctx();
    let prompt = [3u32, 17, 42, 5, 99, 7, 64];
    let run = |format| {
        let mut m = Model::load_with(ctx, &d, &options(format)).unwrap();
        assert_eq!(m.expert_format_name(), format.name());
        let mut all = m.forward(ctx, &prompt, Logits::All).unwrap();
        for t in [11u32, 23, 31] {
            all.extend(m.forward(ctx, &[t], Logits::Last).unwrap());
        }
        all
    };
    let (got, want) = (run(WeightFormat::Bf16), run(WeightFormat::F32));
    let differ = got.iter().zip(&want).filter(|(a, b)| a != b).count();
    println!(
        "bf16 vs f32 experts: {differ} of {} logits differ",
        got.len()
    );
    assert_eq!(differ, 0, "bit-identical logits");
}

#[test]
fn a_non_finite_bf16_weight_is_an_error_naming_the_tensor() {
    let src = bf16_mixtral();
    let name = "model.layers.0.block_sparse_moe.experts.1.w3.weight";
    let d = edited_model(
        &src,
        "bf16-inf",
        |t| {
            let raw = t.get_mut(name).unwrap();
            raw.data[10..12].copy_from_slice(&half::bf16::INFINITY.to_le_bytes());
        },
        |_| {},
    );
    let cfg = ModelConfig::load(&d).unwrap();
    let ckpt = Arc::new(Checkpoint::open(&d).unwrap());
    let w = load_moe_weights(&ckpt, &cfg, 0).unwrap();
    let err = w
        .experts
        .load_packed(1, ExpertFormat::uniform(WeightFormat::Bf16))
        .unwrap_err()
        .to_string();
    assert!(err.contains(name) && err.contains("value 5 "), "{err}");
}
