//! The plain data that kernels, the CPU reference and the MoE layer share: the routing spec,
//! the layer spec, the gated activation, the weight format, host expert weights and the
//! invalid-id marker. It depends on nothing of the crate but its error type, so the reference
//! built on it stays independent of the GPU code it checks.

pub mod layer_spec;
pub mod routing;
pub mod weight_format;
pub mod weights;

pub use layer_spec::{Glu, MoeLayerSpec};
pub use routing::{DynamicActivation, GroupScore, MAX_GROUPS, RoutingSpec, Scoring};
pub use weight_format::{ExpertFormat, INT4_GROUP, MXFP4_GROUP, WeightFormat};
pub use weights::{ExpertSource, ExpertWeights, MoeWeights, PackedExpert, SharedExpert};

/// Sentinel id of a dropped (token, slot) pair, as in the shaders.
pub const INVALID: u32 = u32::MAX;
