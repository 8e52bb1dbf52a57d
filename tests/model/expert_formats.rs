//! Expert formats per layer and per matrix (`ModelOptions::expert_formats`), as a GGUF file's
//! Q4_K_M mix sets them. hf-tiny mixtral is edited so that layer 0's gate/up weights are f16
//! values and layer 1's down weights bf16 values: loaded with layer 0 as f16+f32 and layer 1 as
//! f32+bf16, every expert matrix reaches the GPU exactly, so the logits and greedy tokens are
//! those of f32 experts bit for bit; the same formats on the wrong layers or matrices round an
//! f32 matrix and change them. Under a byte budget the two formats get a pool each, with the
//! same bits; and the memory plan names each format's layers and matches what loading
//! allocates.

use std::path::{Path, PathBuf};

use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::model::memory::MemoryPlan;
use moe_gpu::model::{Checkpoint, ModelConfig};
use moe_gpu::moe::budget::ArenaLimits;
use moe_gpu::moe::{CpuOptions, ExpertBudget, ResidencyOptions};
use moe_gpu::{Context, GenerateOptions, Logits, Model, ModelOptions, Sampling};
use safetensors::Dtype;

use crate::common;
use crate::common::edit::edited_model;
use crate::common::fixtures::dir;

fn format(gate_up: WeightFormat, down: WeightFormat) -> ExpertFormat {
    ExpertFormat { gate_up, down }
}

/// Layer 0: gate/up in f16, down in f32; layer 1: gate/up in f32, down in bf16.
fn per_layer() -> Vec<ExpertFormat> {
    use WeightFormat::{Bf16, F16, F32};
    vec![format(F16, F32), format(F32, Bf16)]
}

/// hf-tiny mixtral (two MoE layers) with layer 0's w1/w3 (gate, up) rounded to f16 and layer
/// 1's w2 (down) rounded to bf16, still stored as f32.
fn mixed_mixtral() -> PathBuf {
    let src = dir("hf-tiny", "mixtral").join("model");
    edited_model(
        &src,
        "mixed-expert-formats",
        |t| {
            for (name, raw) in t.iter_mut() {
                let gate_up = name.ends_with(".w1.weight") || name.ends_with(".w3.weight");
                let round: fn(f32) -> f32 = if !name.contains(".experts.") {
                    continue;
                } else if name.starts_with("model.layers.0.") && gate_up {
                    |v| half::f16::from_f32(v).to_f32()
                } else if name.starts_with("model.layers.1.") && name.ends_with(".w2.weight") {
                    |v| half::bf16::from_f32(v).to_f32()
                } else {
                    continue;
                };
                assert_eq!(raw.dtype, Dtype::F32, "{name}");
                for c in raw.data.chunks_exact_mut(4) {
                    let v = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                    c.copy_from_slice(&round(v).to_le_bytes());
                }
            }
        },
        |_| {},
    )
}

fn options(formats: Vec<ExpertFormat>) -> ModelOptions {
    ModelOptions {
        max_context: Some(32),
        max_batch: 16,
        max_logit_rows: 16,
        expert_formats: Some(formats),
        ..Default::default()
    }
}

/// Prompt logits, three decode steps' logits, then 8 greedy tokens after the prompt.
fn run(ctx: &Context, d: &Path, options: &ModelOptions) -> (Vec<u32>, Vec<u32>) {
    let mut m = Model::load_with(ctx, d, options).unwrap();
    let prompt = [3u32, 17, 42, 5, 99, 7, 64];
    let mut logits = m.forward(ctx, &prompt, Logits::All).unwrap();
    for t in [11u32, 23, 31] {
        logits.extend(m.forward(ctx, &[t], Logits::Last).unwrap());
    }
    m.reset();
    let greedy = GenerateOptions {
        max_new_tokens: 8,
        sampling: Sampling::Greedy,
        ignore_eos: true,
        ..GenerateOptions::for_model(&m)
    };
    let tokens = m.generate(ctx, &prompt, greedy).unwrap();
    let tokens = tokens.collect::<Result<Vec<u32>, _>>().unwrap();
    (logits.iter().map(|v| v.to_bits()).collect(), tokens)
}

#[test]
fn each_layer_and_matrix_in_its_own_format_gives_the_f32_bits_and_tokens() {
    let ctx = common::ctx();
    let d = mixed_mixtral();
    let uniform = vec![ExpertFormat::uniform(WeightFormat::F32); 2];
    let (want, want_tokens) = run(ctx, &d, &options(uniform));
    let mixed = options(per_layer());
    let m = Model::load_with(ctx, &d, &mixed).unwrap();
    assert_eq!(
        m.expert_format_name(),
        "f16+f32 (layer 0), f32+bf16 (layer 1)"
    );
    drop(m);
    let (got, got_tokens) = run(ctx, &d, &mixed);
    assert_eq!(
        got, want,
        "per-layer formats: logits differ from f32 experts"
    );
    assert_eq!(got_tokens, want_tokens, "greedy tokens");
    // Two pools, one per format, under a budget of half the experts' bytes: the same bits.
    let plan = |o: &ModelOptions| {
        let c = ModelConfig::load(&d).unwrap();
        MemoryPlan::new(&c, &Checkpoint::open(&d).unwrap(), o, ArenaLimits::of(ctx)).unwrap()
    };
    let pooled = ModelOptions {
        residency: ResidencyOptions {
            budget: ExpertBudget::Bytes(plan(&mixed).expert_slots / 2),
            cpu: CpuOptions::never(),
            ..Default::default()
        },
        ..mixed.clone()
    };
    assert!(plan(&pooled).shared_pool);
    assert_eq!(run(ctx, &d, &pooled), (got, got_tokens), "pooled");
    // The same formats on the wrong matrices, or the wrong layers, round an f32 matrix.
    let [l0, l1] = [per_layer()[0], per_layer()[1]];
    let swap = |f: ExpertFormat| format(f.down, f.gate_up);
    for wrong in [vec![swap(l0), swap(l1)], vec![l1, l0]] {
        let what = ExpertFormat::describe_layers(&wrong, &[0, 1]);
        let (logits, _) = run(ctx, &d, &options(wrong));
        assert_ne!(
            logits, want,
            "{what} gives the f32 bits: the test cannot tell"
        );
    }
}

#[test]
fn per_layer_formats_are_checked_against_the_model() {
    let ctx = common::ctx();
    let d = dir("hf-tiny", "mixtral").join("model");
    let short = options(vec![ExpertFormat::uniform(WeightFormat::F16)]);
    let err = Model::load_with(ctx, &d, &short).err().unwrap().to_string();
    assert!(err.contains("1 entries for a model of 2 layers"), "{err}");
    let both = ModelOptions {
        expert_format: Some(WeightFormat::F16),
        ..options(per_layer())
    };
    let err = Model::load_with(ctx, &d, &both).err().unwrap().to_string();
    assert!(err.contains("both set"), "{err}");
}
