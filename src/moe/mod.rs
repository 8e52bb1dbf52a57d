//! The MoE layer: routing spec, expert weights and VRAM slots, the GPU layer itself, and the
//! expert cache that lets a model run with fewer slots than experts.

pub mod activation;
pub mod arena;
pub mod budget;
pub mod cachesim;
pub mod experts;
pub mod layer;
pub mod mlp;
mod offload;
pub mod residency;
pub mod router;
pub mod routing;
pub mod stack;
pub mod stats;
pub mod trace;

pub use budget::{ExpertBudget, ResidencyOptions, parse_bytes};
pub use experts::{ExpertSource, ExpertWeights, MoeWeights, SharedExpert};
pub use layer::{ForwardOptions, LayerBuild, MoeLayer, MoeLayerSpec, MoeOutput};
pub use residency::Policy;
pub use routing::{DynamicActivation, GroupScore, RoutingSpec, Scoring};
pub use stack::MoeStack;
pub use stats::{LayerStats, ResidencyStats};
