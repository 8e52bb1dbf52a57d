//! Calibration statistics must come from the model being pruned: statistics of another model
//! would rank (and drop) the wrong experts.

use crate::calibration::CalibrationStats;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;

/// Checks that `stats` were gathered on a model shaped like `cfg`: the same
/// architecture, the same MoE layers, and in each the same expert count and k. The error
/// names what differs (statistics of another model would prune the wrong experts).
pub fn check_stats(stats: &CalibrationStats, cfg: &ModelConfig) -> Result<()> {
    let differs = |what: String| {
        Err(Error::input(format!(
            "the calibration statistics (of {}) do not match this model: {what}",
            stats.model
        )))
    };
    if stats.architecture != cfg.arch.name() {
        return differs(format!(
            "architecture {} in the statistics, {} in the model",
            stats.architecture,
            cfg.arch.name()
        ));
    }
    let mut theirs: Vec<usize> = stats.layers.iter().map(|l| l.layer).collect();
    theirs.sort_unstable();
    let ours = cfg.moe_layers();
    if theirs != ours {
        return differs(format!(
            "MoE layers {theirs:?} in the statistics, {ours:?} in the model"
        ));
    }
    let k = cfg.moe.routing.top_k;
    for l in &stats.layers {
        let experts = cfg.experts_in(l.layer);
        if l.experts != experts {
            return differs(format!(
                "layer {} has {} experts in the statistics, {experts} in the model",
                l.layer, l.experts
            ));
        }
        if l.top_k != k {
            return differs(format!(
                "layer {} routes to top-{} in the statistics, top-{k} in the model",
                l.layer, l.top_k
            ));
        }
    }
    Ok(())
}
