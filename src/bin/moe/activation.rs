//! Dynamic activation options of the CLI, resolved into an [`ActivationPolicy`].

use std::path::{Path, PathBuf};

use anyhow::Result;
use moe_gpu::Model;
use moe_gpu::calibration::CalibrationStats;
use moe_gpu::moe::activation_policy::{ActivationPolicy, ActivationSummary, SkipThreshold};

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

/// Expert activation options of `generate` and `eval`, where `--top-k` / `--top-p` would
/// clash with sampling.
#[derive(clap::Args, Clone, Default)]
pub struct ExpertActivationArgs {
    /// Use this many experts per token instead of the checkpoint's k (≤ k).
    #[arg(long)]
    pub expert_top_k: Option<usize>,
    /// Drop a selected expert whose weight is below β × the top weight: a number in [0, 1],
    /// or `auto` for the per-layer median of w2/w1 from --calibration (the NAEE rule).
    #[arg(long)]
    pub skip_threshold: Option<String>,
    /// Keep the smallest expert set whose routing probability reaches p (bounded by k).
    #[arg(long)]
    pub expert_top_p: Option<f32>,
    /// Calibration statistics from `moe calibrate` (needed by --skip-threshold auto).
    #[arg(long)]
    pub calibration: Option<PathBuf>,
}

impl ExpertActivationArgs {
    /// Whether any option departs from plain top-k.
    pub fn is_set(&self) -> bool {
        self.expert_top_k.is_some() || self.skip_threshold.is_some() || self.expert_top_p.is_some()
    }

    /// Applies the options to every MoE layer of `model`.
    pub fn apply(&self, model: &mut Model) -> Result<()> {
        let (policy, stats) = activation_policy(
            self.expert_top_k,
            self.skip_threshold.as_deref(),
            self.expert_top_p,
            self.calibration.as_deref(),
        )?;
        model.set_activation(&policy, stats.as_ref())?;
        Ok(())
    }
}

/// Activated experts per token and the expert weight bytes that saved, summed over the MoE
/// layers, from a model's routing statistics over `tokens` tokens.
pub fn activation_report(model: &Model, tokens: usize) -> ActivationSummary {
    let mut summary = ActivationSummary::default();
    for (_, m) in model.moe_layers() {
        let s = m.stats();
        let routed: u64 = s.histogram.iter().sum();
        let per = routed as f64 / tokens.max(1) as f64;
        summary.tokens = tokens;
        summary.top_k += m.top_k();
        summary.activated_experts_per_token += per;
        summary.weight_bytes_per_token += per * s.expert_bytes as f64;
        summary.weight_bytes_saved_per_token += (m.top_k() as f64 - per) * s.expert_bytes as f64;
        summary.expert_bytes = s.expert_bytes;
    }
    summary
}
