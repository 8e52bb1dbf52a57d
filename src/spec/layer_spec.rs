//! The shape and math of one MoE layer, and the gated activation of its experts.

use crate::spec::routing::RoutingSpec;
use crate::spec::weight_format::ExpertFormat;

/// The shape and math of one MoE layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeLayerSpec {
    /// Hidden size.
    pub hidden: usize,
    /// Routed expert width (`moe_intermediate_size`).
    pub inter: usize,
    /// How tokens pick experts.
    pub routing: RoutingSpec,
    /// Gated activation of the experts.
    pub glu: Glu,
    /// Experts carry biases (gpt-oss).
    pub expert_bias: bool,
    /// Width of the shared expert, if the layer has one.
    pub shared_inter: Option<usize>,
    /// Storage formats of the experts' gate/up and down weights (the shared expert's too).
    pub format: ExpertFormat,
}

/// The gated activation fused into a gate/up projection.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Glu {
    /// Plain projection, no gate.
    None,
    /// silu(gate) · up.
    Silu,
    /// gpt-oss: gate ≤ limit, up ∈ [-limit, limit], (up + 1) · gate · σ(alpha · gate).
    ClampedSwiglu {
        /// Clamp of gate (above) and up (both sides).
        limit: f32,
        /// Slope of the sigmoid.
        alpha: f32,
    },
}

impl Glu {
    /// Weight rows per output column: two (gate and up) for a GLU.
    pub fn rows_per_output(self) -> usize {
        if self == Glu::None { 1 } else { 2 }
    }
}
