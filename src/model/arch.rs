//! The supported architectures (`model_type`) and what a decoder layer's MLP is: the plain
//! data every part of the config parsing shares.

use crate::error::{Error, Result};

/// The supported `model_type`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// `mixtral`.
    Mixtral,
    /// `qwen2_moe`.
    Qwen2Moe,
    /// `qwen3_moe`.
    Qwen3Moe,
    /// `olmoe`.
    Olmoe,
    /// `deepseek_v2`.
    DeepseekV2,
    /// `deepseek_v3`.
    DeepseekV3,
    /// `gpt_oss`.
    GptOss,
}

impl Arch {
    /// The architecture of a config.json `model_type`; [`crate::Error::UnknownArchitecture`] for
    /// others.
    pub fn parse(model_type: &str) -> Result<Self> {
        Ok(match model_type {
            "mixtral" => Arch::Mixtral,
            "qwen2_moe" => Arch::Qwen2Moe,
            "qwen3_moe" => Arch::Qwen3Moe,
            "olmoe" => Arch::Olmoe,
            "deepseek_v2" => Arch::DeepseekV2,
            "deepseek_v3" => Arch::DeepseekV3,
            "gpt_oss" => Arch::GptOss,
            other => return Err(Error::UnknownArchitecture(other.to_string())),
        })
    }

    /// The `model_type` string.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Mixtral => "mixtral",
            Arch::Qwen2Moe => "qwen2_moe",
            Arch::Qwen3Moe => "qwen3_moe",
            Arch::Olmoe => "olmoe",
            Arch::DeepseekV2 => "deepseek_v2",
            Arch::DeepseekV3 => "deepseek_v3",
            Arch::GptOss => "gpt_oss",
        }
    }

    /// Name of the router under an MoE layer's prefix.
    pub fn router_name(self) -> &'static str {
        match self {
            Arch::GptOss => "router",
            _ => "gate",
        }
    }

    /// Name of the shared expert under an MoE layer's prefix.
    pub fn shared_expert_name(self) -> &'static str {
        match self {
            Arch::Qwen2Moe => "shared_expert",
            _ => "shared_experts",
        }
    }

    /// Prefix of layer `i`'s MLP / MoE tensors in the checkpoint.
    pub fn mlp_prefix(self, layer: usize) -> String {
        match self {
            Arch::Mixtral => format!("model.layers.{layer}.block_sparse_moe."),
            _ => format!("model.layers.{layer}.mlp."),
        }
    }
}

/// What the MLP of a decoder layer is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MlpKind {
    /// A routed MoE layer.
    Moe,
    /// A dense MLP.
    Dense,
}
