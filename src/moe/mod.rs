//! The MoE layer: routing spec, expert weights and VRAM slots, the GPU layer itself, and the
//! expert cache that lets a model run with fewer slots than experts.

pub mod activation_policy;
pub mod budget;
pub mod cachesim;
pub mod cost_model;
pub mod cost_paper;
pub mod cpu_options;
mod cpu_side;
mod host_experts;
pub mod layer;
pub mod mlp;
mod offload;
pub mod pool;
mod rates;
pub mod residency;
pub mod router;
pub mod routing_trace;
pub mod stack;
pub mod stats;
pub mod step_buffers;

pub use crate::gpu::parse_bytes;
pub use budget::{ExpertBudget, ResidencyOptions};
pub use cpu_options::{CpuOptions, CpuPolicy};
pub use layer::{ForwardOptions, LayerBuild, MoeLayer, MoeOutput, MoeStep, StepRecord};
pub use residency::Policy;
pub use stack::MoeStack;
pub use stats::{LayerStats, ResidencyStats};

pub use crate::spec::{
    DynamicActivation, ExpertSource, ExpertWeights, GroupScore, MoeLayerSpec, MoeWeights,
    RoutingSpec, Scoring, SharedExpert,
};
