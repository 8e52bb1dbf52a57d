//! The model shapes the benchmark imitates: each keeps its real model's expert count, k, routing
//! family and hidden : intermediate ratio, with hidden and intermediate sizes divided by a scale
//! so that a software adapter runs them in seconds.

use serde::Serialize;

use crate::kernels::matmul::{ExpertFormat, Glu};
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::routing::{RoutingSpec, Scoring};

/// A real MoE model's layer shape.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct RealModel {
    /// Model name, e.g. `Qwen3-30B-A3B`.
    pub name: &'static str,
    /// Hidden size.
    pub hidden: usize,
    /// Routed expert width (`moe_intermediate_size`).
    pub inter: usize,
    /// Routed experts per layer.
    pub experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Width of the shared expert(s) together, if any.
    pub shared_inter: Option<usize>,
    #[serde(skip)]
    family: Family,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Family {
    /// softmax → top-k, renormalised (Mixtral, Qwen3-MoE).
    SoftmaxRenorm,
    /// softmax → top-k, not renormalised (OLMoE, DeepSeek-V2).
    Softmax,
    /// router bias, top-k logits → softmax, clamped SwiGLU with biases (gpt-oss).
    GptOss,
}

/// The five models of the benchmark, from their Hugging Face configs.
pub const MODELS: [RealModel; 5] = [
    RealModel {
        name: "Mixtral-8x7B",
        hidden: 4096,
        inter: 14336,
        experts: 8,
        top_k: 2,
        shared_inter: None,
        family: Family::SoftmaxRenorm,
    },
    RealModel {
        name: "Qwen3-30B-A3B",
        hidden: 2048,
        inter: 768,
        experts: 128,
        top_k: 8,
        shared_inter: None,
        family: Family::SoftmaxRenorm,
    },
    RealModel {
        name: "DeepSeek-V2-Lite",
        hidden: 2048,
        inter: 1408,
        experts: 64,
        top_k: 6,
        shared_inter: Some(2816),
        family: Family::Softmax,
    },
    RealModel {
        name: "OLMoE-1B-7B",
        hidden: 2048,
        inter: 1024,
        experts: 64,
        top_k: 8,
        shared_inter: None,
        family: Family::Softmax,
    },
    RealModel {
        name: "gpt-oss-20b",
        hidden: 2880,
        inter: 2880,
        experts: 32,
        top_k: 4,
        shared_inter: None,
        family: Family::GptOss,
    },
];

/// A real model with hidden and intermediate sizes divided by `scale`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ScaledShape {
    /// Name of the real model.
    pub imitates: &'static str,
    /// Divisor of the real hidden and intermediate sizes.
    pub scale: usize,
    /// Hidden size after scaling.
    pub hidden: usize,
    /// Routed expert width after scaling.
    pub inter: usize,
    /// Routed experts per layer (not scaled).
    pub experts: usize,
    /// Experts per token (not scaled).
    pub top_k: usize,
    /// Shared expert width after scaling, if the model has one.
    pub shared_inter: Option<usize>,
}

impl RealModel {
    /// The built-in model shape named `name` (case-insensitive).
    pub fn by_name(name: &str) -> Option<RealModel> {
        MODELS
            .iter()
            .copied()
            .find(|m| m.name.eq_ignore_ascii_case(name))
    }

    /// This shape with hidden and intermediate sizes divided by `scale` (at least 1 each).
    pub fn scaled(&self, scale: usize) -> ScaledShape {
        let s = scale.max(1);
        ScaledShape {
            imitates: self.name,
            scale: s,
            hidden: (self.hidden / s).max(1),
            inter: (self.inter / s).max(1),
            experts: self.experts,
            top_k: self.top_k,
            shared_inter: self.shared_inter.map(|v| (v / s).max(1)),
        }
    }

    /// The layer spec at `scale`, with `top_k` picks per token (the real k, or all experts
    /// for the dense equivalent).
    pub fn layer_spec(&self, scale: usize, top_k: usize, format: ExpertFormat) -> MoeLayerSpec {
        let shape = self.scaled(scale);
        let mut routing = RoutingSpec::softmax(shape.experts, top_k, false);
        let mut glu = Glu::Silu;
        let mut expert_bias = false;
        match self.family {
            Family::SoftmaxRenorm => routing.renormalize = true,
            Family::Softmax => {}
            Family::GptOss => {
                routing.scoring = Scoring::TopKThenSoftmax;
                routing.router_bias = true;
                glu = Glu::ClampedSwiglu {
                    limit: 7.0,
                    alpha: 1.702,
                };
                expert_bias = true;
            }
        }
        MoeLayerSpec {
            hidden: shape.hidden,
            inter: shape.inter,
            routing,
            glu,
            expert_bias,
            shared_inter: shape.shared_inter,
            format,
        }
    }
}
