//! A checkpoint at a glance: what `moe inspect` prints.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::kernels::expert_arena::ExpertArena;
use crate::kernels::matmul::{ExpertFormat, WeightFormat};
use crate::model::checkpoint::Checkpoint;
use crate::model::config::ModelConfig;

#[derive(Debug, Clone, Serialize)]
/// What `moe inspect` reports about a checkpoint: shape, routing, parameter counts and expert
/// sizes.
pub struct ModelSummary {
    /// Architecture name, e.g. `olmoe`.
    pub architecture: String,
    /// Hidden size.
    pub hidden_size: usize,
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Decoder layers.
    pub layers: usize,
    /// Indices of the MoE layers.
    pub moe_layers: Vec<usize>,
    /// Indices of the dense-MLP layers.
    pub dense_layers: Vec<usize>,
    /// Routed experts per MoE layer, as config.json's expert count gives it.
    pub experts: usize,
    /// Routed experts of each MoE layer, in `moe_layers` order: they differ after per-layer
    /// pruning (`moe_gpu_experts_per_layer`).
    pub experts_per_layer: Vec<usize>,
    /// Experts per token.
    pub top_k: usize,
    /// Routed expert width (`moe_intermediate_size`).
    pub expert_intermediate_size: usize,
    /// Shared expert width, if the model has one.
    pub shared_expert_intermediate_size: Option<usize>,
    /// One line describing the routing ([`crate::RoutingSpec::describe`]).
    pub routing: String,
    /// Parameters of every tensor in the checkpoint (MXFP4 blocks count two per byte).
    pub total_params: u64,
    /// Parameters a token runs through: all but the routed experts, plus k experts per MoE layer.
    pub activated_params_per_token: u64,
    /// Parameters of the routed experts (tensors named `.experts.`).
    pub routed_expert_params: u64,
    /// `routed_expert_params` over the routed experts of all layers.
    pub params_per_expert: u64,
    /// Checkpoint bytes of one routed expert, on average.
    pub bytes_per_expert_checkpoint: u64,
    /// VRAM bytes of one expert stored as f32.
    pub bytes_per_expert_gpu_f32: u64,
    /// VRAM bytes of one expert stored as f16.
    pub bytes_per_expert_gpu_f16: u64,
    /// int8 with a scale per row, scales included.
    pub bytes_per_expert_gpu_int8: u64,
    /// int4 with a scale per 32 values, scales included.
    pub bytes_per_expert_gpu_int4: u64,
    /// bf16, the same bytes as f16.
    pub bytes_per_expert_gpu_bf16: u64,
    /// MXFP4 with an e8m0 scale per 32 values, scales included.
    pub bytes_per_expert_gpu_mxfp4: u64,
    /// Tensor count per dtype.
    pub dtypes: BTreeMap<String, usize>,
}

/// Parameters held by a tensor: MXFP4 blocks hold two values per byte, scales none.
fn params_of(name: &str, shape: &[usize]) -> u64 {
    let n: u64 = shape.iter().map(|d| *d as u64).product();
    if name.ends_with("_blocks") {
        2 * n
    } else if name.ends_with("_scales") {
        0
    } else {
        n
    }
}

impl ModelSummary {
    /// Summarises the checkpoint in `dir` (config.json and its safetensors, or a GGUF file).
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let cfg = ModelConfig::load(dir)?;
        let ckpt = Checkpoint::open(dir)?;
        let mut total = 0u64;
        let mut routed = 0u64;
        let mut routed_bytes = 0u64;
        let mut dtypes = BTreeMap::new();
        for name in ckpt.names() {
            let p = params_of(name, &ckpt.entry(name)?.shape);
            let (dtype, bytes) = ckpt.stored(name)?;
            total += p;
            if name.contains(".experts.") {
                routed += p;
                routed_bytes += bytes;
            }
            *dtypes.entry(dtype).or_insert(0) += 1;
        }
        let m = &cfg.moe;
        let moe_layers = cfg.moe_layers();
        let experts_per_layer: Vec<usize> = moe_layers.iter().map(|&l| cfg.experts_in(l)).collect();
        let experts_total = experts_per_layer.iter().sum::<usize>().max(1) as u64;
        let per_expert = routed / experts_total;
        let activated = total - routed + per_expert * (m.routing.top_k * moe_layers.len()) as u64;
        let gpu_bytes = |f| {
            ExpertArena::expert_bytes(cfg.hidden, m.inter, ExpertFormat::uniform(f), m.expert_bias)
        };
        Ok(Self {
            architecture: cfg.arch.name().to_string(),
            hidden_size: cfg.hidden,
            vocab_size: cfg.vocab,
            layers: cfg.layers,
            dense_layers: cfg.dense_layers(),
            moe_layers,
            experts: m.routing.experts,
            experts_per_layer,
            top_k: m.routing.top_k,
            expert_intermediate_size: m.inter,
            shared_expert_intermediate_size: m.shared_inter,
            routing: m.routing.describe(),
            total_params: total,
            activated_params_per_token: activated,
            routed_expert_params: routed,
            params_per_expert: per_expert,
            bytes_per_expert_checkpoint: routed_bytes / experts_total,
            bytes_per_expert_gpu_f32: gpu_bytes(WeightFormat::F32),
            bytes_per_expert_gpu_f16: gpu_bytes(WeightFormat::F16),
            bytes_per_expert_gpu_int8: gpu_bytes(WeightFormat::Int8),
            bytes_per_expert_gpu_int4: gpu_bytes(WeightFormat::Int4),
            bytes_per_expert_gpu_bf16: gpu_bytes(WeightFormat::Bf16),
            bytes_per_expert_gpu_mxfp4: gpu_bytes(WeightFormat::Mxfp4),
            dtypes,
        })
    }

    /// Human-readable report.
    pub fn report(&self) -> String {
        let mut s = String::new();
        let mut line = |k: &str, v: String| s.push_str(&format!("{k:<28} {v}\n"));
        line("architecture", self.architecture.clone());
        line(
            "hidden / vocab",
            format!("{} / {}", self.hidden_size, self.vocab_size),
        );
        line(
            "layers",
            format!(
                "{} (MoE {:?}, dense {:?})",
                self.layers, self.moe_layers, self.dense_layers
            ),
        );
        let per_layer = match self.experts_per_layer.first() {
            Some(&n) if self.experts_per_layer.iter().any(|&x| x != n) => {
                let each: Vec<String> = (self.moe_layers.iter())
                    .zip(&self.experts_per_layer)
                    .map(|(l, n)| format!("layer {l}: {n}"))
                    .collect();
                format!("per MoE layer ({})", each.join(", "))
            }
            _ => format!("{} per MoE layer", self.experts),
        };
        line(
            "experts",
            format!(
                "{per_layer}, k = {}, width {}",
                self.top_k, self.expert_intermediate_size
            ),
        );
        if let Some(si) = self.shared_expert_intermediate_size {
            line("shared expert", format!("width {si}"));
        }
        line("routing", self.routing.clone());
        line(
            "parameters",
            format!(
                "{} total, {} activated per token",
                self.total_params, self.activated_params_per_token
            ),
        );
        line(
            "routed expert parameters",
            format!(
                "{} ({} per expert)",
                self.routed_expert_params, self.params_per_expert
            ),
        );
        line(
            "bytes per expert",
            format!(
                "{} in the checkpoint; on the GPU {} as f32, {} as f16 or bf16, {} as int8, {} as \
                 int4, {} as mxfp4",
                self.bytes_per_expert_checkpoint,
                self.bytes_per_expert_gpu_f32,
                self.bytes_per_expert_gpu_f16,
                self.bytes_per_expert_gpu_int8,
                self.bytes_per_expert_gpu_int4,
                self.bytes_per_expert_gpu_mxfp4
            ),
        );
        let d: Vec<String> = self
            .dtypes
            .iter()
            .map(|(k, v)| format!("{k} ×{v}"))
            .collect();
        line("dtypes", d.join(", "));
        s
    }
}
