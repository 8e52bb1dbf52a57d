//! Dynamic activation as a user chooses it: runtime top-k, a skip threshold (fixed or the
//! per-layer NAEE rule from calibration) and expert top-p; and what it saved.

use serde::Serialize;

use crate::calibration::CalibrationStats;
use crate::error::{Error, Result};
use crate::spec::INVALID;
use crate::spec::routing::DynamicActivation;

/// The skip threshold β: a pick j > 0 is dropped when w_j < β · w_1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SkipThreshold {
    /// The same β for every layer.
    Fixed(f32),
    /// Per layer, the median of w_2 / w_1 measured by calibration (NAEE).
    Auto,
}

impl SkipThreshold {
    /// Parses `auto` or a number in [0, 1].
    pub fn parse(s: &str) -> Result<Self> {
        if s == "auto" {
            return Ok(Self::Auto);
        }
        match s.parse::<f32>() {
            Ok(b) if (0.0..=1.0).contains(&b) => Ok(Self::Fixed(b)),
            _ => Err(Error::input(format!(
                "--skip-threshold `{s}`: use auto or a number in [0, 1]"
            ))),
        }
    }
}

/// Dynamic activation for a whole model, resolved per layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ActivationPolicy {
    /// Experts per token instead of the checkpoint's k.
    pub top_k: Option<usize>,
    /// The skip threshold β.
    pub skip: SkipThreshold,
    /// Keep picks until their routing probability mass reaches this (1 keeps all).
    pub top_p: f32,
}

impl Default for ActivationPolicy {
    fn default() -> Self {
        Self {
            top_k: None,
            skip: SkipThreshold::Fixed(0.0),
            top_p: 1.0,
        }
    }
}

impl ActivationPolicy {
    /// The parameters of MoE layer `layer`; `auto` needs calibration statistics.
    pub fn for_layer(
        &self,
        layer: usize,
        stats: Option<&CalibrationStats>,
    ) -> Result<DynamicActivation> {
        let skip_beta = match self.skip {
            SkipThreshold::Fixed(b) => b,
            SkipThreshold::Auto => stats
                .ok_or_else(|| Error::input("--skip-threshold auto needs calibration statistics (--calibration STATS.json from `moe calibrate`)"))?
                .layer(layer)
                .ok_or_else(|| Error::input(format!("the calibration statistics have no MoE layer {layer}")))?
                .auto_skip_beta(),
        };
        let a = DynamicActivation {
            top_k: self.top_k,
            skip_beta,
            top_p: self.top_p,
        };
        a.validate()?;
        Ok(a)
    }
}

/// Experts a batch of tokens actually activated, and the expert weight bytes that saved.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct ActivationSummary {
    /// Tokens counted.
    pub tokens: usize,
    /// The checkpoint's k.
    pub top_k: usize,
    /// Mean experts activated per token.
    pub activated_experts_per_token: f64,
    /// Bytes of one expert.
    pub expert_bytes: u64,
    /// Expert weight bytes a token reads: activated experts × bytes per expert.
    pub weight_bytes_per_token: f64,
    /// Bytes per token not read compared with plain top-k.
    pub weight_bytes_saved_per_token: f64,
}

impl ActivationSummary {
    /// From the ids [tokens, k] of a step (dropped slots are INVALID).
    pub fn from_ids(ids: &[u32], top_k: usize, expert_bytes: u64) -> Self {
        let tokens = ids.len() / top_k.max(1);
        let active = ids.iter().filter(|&&i| i != INVALID).count();
        let per = active as f64 / tokens.max(1) as f64;
        Self {
            tokens,
            top_k,
            activated_experts_per_token: per,
            expert_bytes,
            weight_bytes_per_token: per * expert_bytes as f64,
            weight_bytes_saved_per_token: (top_k as f64 - per) * expert_bytes as f64,
        }
    }
}
