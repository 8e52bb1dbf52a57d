//! Access to the Hugging Face reference fixtures in tests/fixtures/<set>/<arch>/.

use std::path::PathBuf;

use moe_gpu::model::Checkpoint;

/// The fixture sets: the base shapes and a held-out set with non-power-of-two shapes.
pub const SETS: [&str; 2] = ["hf-tiny", "hf-tiny-alt"];

/// The architecture variants of each set.
pub const ARCHS: [&str; 9] = [
    "mixtral",
    "qwen2_moe",
    "qwen3_moe",
    "olmoe",
    "deepseek_v2",
    "deepseek_v2_group",
    "deepseek_v2_dense1",
    "deepseek_v3",
    "gpt_oss",
];

pub fn dir(set: &str, arch: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(set)
        .join(arch)
}

pub struct Fixture {
    pub model_dir: PathBuf,
    pub expected: Checkpoint,
}

impl Fixture {
    pub fn open(set: &str, arch: &str) -> Fixture {
        let d = dir(set, arch);
        let expected = Checkpoint::open_file(&d.join("expected.safetensors"))
            .unwrap_or_else(|e| panic!("{set}/{arch}: {e}"));
        Fixture {
            model_dir: d.join("model"),
            expected,
        }
    }

    pub fn f32(&self, name: &str) -> Vec<f32> {
        self.expected
            .f32_any(name)
            .unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn ids(&self, name: &str) -> Vec<u32> {
        self.expected
            .i64_any(name)
            .unwrap_or_else(|e| panic!("{e}"))
            .into_iter()
            .map(|v| v as u32)
            .collect()
    }

    /// Layers L for which `{prefix}L.{suffix}` exists, ascending.
    pub fn layers_with(&self, prefix: &str, suffix: &str) -> Vec<usize> {
        let mut v: Vec<usize> = self
            .expected
            .names()
            .filter_map(|n| n.strip_prefix(prefix)?.strip_suffix(suffix)?.parse().ok())
            .collect();
        v.sort();
        v
    }
}

/// One MoE block of a checkpoint, as loaded and as run on the GPU.
pub struct BlockRun {
    pub cfg: moe_gpu::model::ModelConfig,
    pub spec: moe_gpu::moe::MoeLayerSpec,
    pub weights: moe_gpu::moe::MoeWeights,
    pub out: moe_gpu::moe::MoeOutput,
}

/// Loads MoE layer `layer` of `model_dir`, lets `edit` change its spec or weights, and runs it
/// on `x` with routing captured.
pub fn run_block(
    model_dir: &std::path::Path,
    layer: usize,
    x: &[f32],
    activation: moe_gpu::moe::DynamicActivation,
    edit: impl FnOnce(&mut moe_gpu::moe::MoeLayerSpec, &mut moe_gpu::moe::MoeWeights),
) -> BlockRun {
    use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
    use moe_gpu::model::{ModelConfig, load_moe_weights, moe_layer_spec_for};
    use moe_gpu::moe::{ForwardOptions, MoeLayer};
    let cfg = ModelConfig::load(model_dir).unwrap();
    let ckpt = std::sync::Arc::new(Checkpoint::open(model_dir).unwrap());
    let mut spec = moe_layer_spec_for(&cfg, layer, ExpertFormat::uniform(WeightFormat::F32));
    let mut weights = load_moe_weights(&ckpt, &cfg, layer).unwrap();
    edit(&mut spec, &mut weights);
    let ctx = super::ctx();
    let tokens = x.len() / cfg.hidden;
    let out = MoeLayer::new(ctx, spec.clone(), &weights, tokens)
        .unwrap()
        .forward_with(
            ctx,
            x,
            &ForwardOptions {
                capture_routing: true,
                activation,
            },
        )
        .unwrap();
    BlockRun {
        cfg,
        spec,
        weights,
        out,
    }
}
