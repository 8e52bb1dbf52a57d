//! The MoE layer: routing spec, expert weights and VRAM slots, and the GPU layer itself.

pub mod activation;
pub mod arena;
pub mod experts;
pub mod layer;
pub mod mlp;
pub mod routing;

pub use experts::{ExpertSource, ExpertWeights, MoeWeights, SharedExpert};
pub use layer::{ForwardOptions, MoeLayer, MoeLayerSpec, MoeOutput};
pub use routing::{DynamicActivation, GroupScore, RoutingSpec, Scoring};
