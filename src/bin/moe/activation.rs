//! Dynamic activation options of the CLI, resolved into an [`ActivationPolicy`].

use std::path::Path;

use anyhow::Result;
use moe_gpu::calibration::CalibrationStats;
use moe_gpu::moe::activation::{ActivationPolicy, SkipThreshold};

/// The policy from `--top-k`, `--skip-threshold`, `--top-p` and `--calibration` values.
pub fn activation_policy(
    top_k: Option<usize>,
    skip_threshold: Option<&str>,
    top_p: Option<f32>,
    calibration: Option<&Path>,
) -> Result<(ActivationPolicy, Option<CalibrationStats>)> {
    let skip = match skip_threshold {
        Some(s) => SkipThreshold::parse(s)?,
        None => SkipThreshold::Fixed(0.0),
    };
    let stats = match calibration {
        Some(p) => Some(CalibrationStats::load(p)?),
        None => None,
    };
    let policy = ActivationPolicy {
        top_k,
        skip,
        top_p: top_p.unwrap_or(1.0),
    };
    Ok((policy, stats))
}
