//! Which experts each MoE layer keeps: by frequency or REAP saliency, a uniform count or one
//! adapted to how concentrated each layer's importance is, valid per group for grouped routing.

use crate::calibration::CalibrationStats;
use crate::error::{Error, Result};
use crate::model::config::ModelConfig;
use crate::prune::stats_match::check_stats;
use crate::spec::routing::GroupScore;

/// How experts are ranked and what happens to the dropped ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PruneMethod {
    /// Keep the most often routed experts.
    Frequency,
    /// Keep the experts with the largest REAP saliency (mean gate · ‖output‖).
    Reap,
    /// Rank by frequency, then fold each dropped expert into its most similar kept one.
    Merge,
}

impl PruneMethod {
    /// Parses `frequency`, `reap` or `merge`.
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "frequency" => Ok(Self::Frequency),
            "reap" => Ok(Self::Reap),
            "merge" => Ok(Self::Merge),
            other => Err(Error::input(format!(
                "--method `{other}`: use frequency, reap or merge"
            ))),
        }
    }
}

/// How many experts to keep.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Keep {
    /// Every expert (the checkpoint is rewritten unchanged).
    All,
    /// This many experts per layer.
    Count(usize),
    /// This fraction of each layer's experts (at least one).
    Fraction(f64),
}

impl Keep {
    /// Parses `all`, an integer count or a fraction in (0, 1].
    pub fn parse(s: &str) -> Result<Self> {
        if s == "all" {
            return Ok(Keep::All);
        }
        if let Ok(n) = s.parse::<usize>() {
            return Ok(Keep::Count(n));
        }
        match s.parse::<f64>() {
            Ok(f) if f > 0.0 && f <= 1.0 => Ok(Keep::Fraction(f)),
            _ => Err(Error::input(format!(
                "--keep `{s}`: use all, a count, or a fraction in (0, 1]"
            ))),
        }
    }

    fn count(self, experts: usize) -> usize {
        match self {
            Keep::All => experts,
            Keep::Count(n) => n,
            Keep::Fraction(f) => ((f * experts as f64).round() as usize).max(1),
        }
    }
}

/// The plan for one MoE layer.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerPlan {
    /// Decoder layer index.
    pub layer: usize,
    /// Original ids of the kept experts, ascending: new id i is `keep[i]`.
    pub keep: Vec<usize>,
    /// For `merge`: (dropped expert, kept expert it folds into), by original ids.
    pub merges: Vec<(usize, usize)>,
}

#[derive(Debug, Clone, PartialEq)]
/// What `moe prune` does to a checkpoint: the method and each MoE layer's plan.
pub struct PrunePlan {
    /// How experts were ranked and what happens to the dropped ones.
    pub method: PruneMethod,
    /// One plan per MoE layer.
    pub layers: Vec<LayerPlan>,
    /// What was rounded or adjusted, for the user.
    pub notes: Vec<String>,
}

impl PrunePlan {
    /// Experts kept per layer (uniform unless adaptive).
    pub fn counts(&self) -> Vec<usize> {
        self.layers.iter().map(|l| l.keep.len()).collect()
    }
}

fn importance(
    stats: &CalibrationStats,
    layer: usize,
    method: PruneMethod,
    experts: usize,
) -> Result<Vec<f64>> {
    let s = stats
        .layer(layer)
        .ok_or_else(|| Error::input(format!("the stats file has no MoE layer {layer}")))?;
    if s.experts != experts {
        return Err(Error::input(format!(
            "the stats file has {} experts in layer {layer}, the model {experts}",
            s.experts
        )));
    }
    Ok(match method {
        PruneMethod::Reap => s.reap.clone(),
        _ => s.frequency.clone(),
    })
}

/// The experts to keep (best `n`, ties to the lower id), ascending.
fn best(scores: &[f64], n: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut keep = order[..n.min(scores.len())].to_vec();
    keep.sort();
    keep
}

/// Best `n` experts with the same count in every group of `group_size` consecutive experts.
fn best_per_group(scores: &[f64], n: usize, groups: usize) -> Vec<usize> {
    let size = scores.len() / groups;
    let per = n / groups;
    let mut keep: Vec<usize> = (0..groups)
        .flat_map(|g| {
            best(&scores[g * size..(g + 1) * size], per)
                .into_iter()
                .map(move |e| g * size + e)
        })
        .collect();
    keep.sort();
    keep
}

/// Smallest expert count whose importance reaches `mass` of the layer's total.
fn count_for_mass(scores: &[f64], mass: f64) -> usize {
    let total: f64 = scores.iter().sum();
    if total <= 0.0 {
        return scores.len();
    }
    let mut sorted = scores.to_vec();
    sorted.sort_by(|a, b| b.total_cmp(a));
    let mut acc = 0.0;
    for (i, s) in sorted.iter().enumerate() {
        acc += s;
        if acc >= mass * total - 1e-12 {
            return i + 1;
        }
    }
    scores.len()
}

/// Per-layer counts summing to about `total`: each layer keeps the experts that cover the same
/// share of its importance, with the share chosen by bisection.
fn adaptive_counts(scores: &[Vec<f64>], total: usize, min: usize) -> Vec<usize> {
    let counts = |mass: f64| -> Vec<usize> {
        scores
            .iter()
            .map(|s| count_for_mass(s, mass).max(min))
            .collect()
    };
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if counts(mid).iter().sum::<usize>() > total {
            hi = mid;
        } else {
            lo = mid;
        }
    }
    counts(lo)
}

/// Plans which experts every MoE layer keeps; `stats` must match the model ([`check_stats`]).
pub fn plan(
    cfg: &ModelConfig,
    stats: &CalibrationStats,
    keep: Keep,
    adaptive: bool,
    method: PruneMethod,
) -> Result<PrunePlan> {
    check_stats(stats, cfg)?;
    let r = &cfg.moe.routing;
    let e = r.experts;
    let layers = cfg.moe_layers();
    let mut notes = Vec::new();
    let grouped = r.group != GroupScore::None;
    let step = if grouped { r.n_group } else { 1 };
    let min = r.top_k.max(if grouped {
        r.n_group * r.top_k.div_ceil(r.topk_group)
    } else {
        1
    });
    let mut n = keep.count(e);
    if n > e {
        return Err(Error::input(format!(
            "--keep {n} is more than the {e} experts per layer"
        )));
    }
    if n < r.top_k {
        return Err(Error::input(format!(
            "--keep {n} is fewer than the k = {} experts each token uses",
            r.top_k
        )));
    }
    let rounded = (n / step * step).max(min.div_ceil(step) * step);
    if rounded != n {
        notes.push(format!(
            "kept {rounded} experts per layer instead of {n}: grouped routing needs a multiple of n_group = {} with at least {} per group for k = {} over topk_group = {}",
            r.n_group,
            rounded / step,
            r.top_k,
            r.topk_group
        ));
        n = rounded;
    }
    let scores: Vec<Vec<f64>> = layers
        .iter()
        .map(|&l| importance(stats, l, method, e))
        .collect::<Result<_>>()?;
    let counts = if adaptive && keep != Keep::All {
        let raw = adaptive_counts(&scores, n * layers.len(), min);
        raw.into_iter()
            .map(|c| (c.div_ceil(step) * step).min(e))
            .collect()
    } else {
        vec![n; layers.len()]
    };
    let mut plans = Vec::new();
    for ((&layer, s), &count) in layers.iter().zip(&scores).zip(&counts) {
        let kept = if grouped {
            best_per_group(s, count, r.n_group)
        } else {
            best(s, count)
        };
        plans.push(LayerPlan {
            layer,
            keep: kept,
            merges: Vec::new(),
        });
    }
    if adaptive {
        notes.push(format!("adaptive per-layer counts: {counts:?}"));
    }
    Ok(PrunePlan {
        method,
        layers: plans,
        notes,
    })
}
