//! Per-layer, per-expert routing statistics gathered on calibration text: what `moe calibrate`
//! writes and what dynamic activation (`--skip-threshold auto`) and `moe prune` read.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spec::INVALID;

/// Buckets of the w_j / w_1 histograms, over [0, 1].
pub const RATIO_BUCKETS: usize = 20;

/// Statistics of one MoE layer.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LayerStats {
    /// Decoder layer index.
    pub layer: usize,
    /// Routed experts.
    pub experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Tokens observed.
    pub tokens: u64,
    /// Tokens routed to each expert.
    pub count: Vec<u64>,
    /// count / tokens.
    pub frequency: Vec<f64>,
    /// Mean routing weight of each expert over the tokens routed to it.
    pub mean_gate_weight: Vec<f64>,
    /// REAP saliency: mean over routed tokens of weight · ‖expert output‖ (0 when unknown).
    pub reap: Vec<f64>,
    /// Histogram over [0, 1] of w_j / w_1 for j = 2..k (one row per j).
    pub ratio_histogram: Vec<Vec<u64>>,
    /// Median of w_j / w_1 per j = 2..k.
    pub ratio_median: Vec<f64>,
    /// [experts × experts] tokens routed to both experts.
    pub coactivation: Vec<Vec<u64>>,
    weight_sum: Vec<f64>,
    reap_sum: Vec<f64>,
    /// Kept in memory for the medians only; a loaded file has its medians already.
    #[serde(skip)]
    ratio_samples: Vec<Vec<f32>>,
}

impl LayerStats {
    /// Empty statistics of decoder layer `layer`.
    pub fn new(layer: usize, experts: usize, top_k: usize) -> Self {
        let j = top_k.saturating_sub(1);
        Self {
            layer,
            experts,
            top_k,
            tokens: 0,
            count: vec![0; experts],
            frequency: vec![0.0; experts],
            mean_gate_weight: vec![0.0; experts],
            reap: vec![0.0; experts],
            ratio_histogram: vec![vec![0; RATIO_BUCKETS]; j],
            ratio_median: vec![0.0; j],
            coactivation: vec![vec![0; experts]; experts],
            weight_sum: vec![0.0; experts],
            reap_sum: vec![0.0; experts],
            ratio_samples: vec![Vec::new(); j],
        }
    }

    /// Adds one batch: `ids`, `weights` [tokens, top_k] as the select kernel wrote them and,
    /// when known, `output_norms` [tokens, top_k] = ‖expert(x_t)‖ of each routed pair.
    pub fn observe(&mut self, ids: &[u32], weights: &[f32], output_norms: Option<&[f32]>) {
        let k = self.top_k;
        for (t, row) in ids.chunks(k).enumerate() {
            self.tokens += 1;
            let w = &weights[t * k..(t + 1) * k];
            let valid: Vec<usize> = (0..k)
                .filter(|&j| row[j] != INVALID && (row[j] as usize) < self.experts)
                .collect();
            // Weights sorted descending give w_1 for the ratios.
            let mut sorted: Vec<f32> = valid.iter().map(|&j| w[j]).collect();
            sorted.sort_by(|a, b| b.total_cmp(a));
            for (j, wj) in sorted.iter().enumerate().skip(1) {
                let ratio = if sorted[0] > 0.0 {
                    (wj / sorted[0]).clamp(0.0, 1.0)
                } else {
                    0.0
                };
                let bucket = ((ratio * RATIO_BUCKETS as f32) as usize).min(RATIO_BUCKETS - 1);
                self.ratio_histogram[j - 1][bucket] += 1;
                self.ratio_samples[j - 1].push(ratio);
            }
            for &j in &valid {
                let e = row[j] as usize;
                self.count[e] += 1;
                self.weight_sum[e] += w[j] as f64;
                if let Some(n) = output_norms {
                    self.reap_sum[e] += (w[j] * n[t * k + j]) as f64;
                }
                for &j2 in &valid {
                    if j2 != j {
                        self.coactivation[e][row[j2] as usize] += 1;
                    }
                }
            }
        }
        self.refresh();
    }

    fn refresh(&mut self) {
        let tokens = self.tokens.max(1) as f64;
        for e in 0..self.experts {
            let c = self.count[e].max(1) as f64;
            self.frequency[e] = self.count[e] as f64 / tokens;
            self.mean_gate_weight[e] = self.weight_sum[e] / c;
            self.reap[e] = self.reap_sum[e] / c;
        }
        for (j, samples) in self.ratio_samples.iter().enumerate() {
            let mut s = samples.clone();
            s.sort_by(|a, b| a.total_cmp(b));
            self.ratio_median[j] = s.get(s.len() / 2).copied().unwrap_or(0.0) as f64;
        }
    }

    /// NAEE's per-layer skip threshold: the median of w_2 / w_1.
    pub fn auto_skip_beta(&self) -> f32 {
        self.ratio_median.first().copied().unwrap_or(0.0) as f32
    }
}

/// Statistics of every MoE layer of a model.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct CalibrationStats {
    /// Model name (its directory).
    pub model: String,
    /// Architecture (`model_type`).
    pub architecture: String,
    /// Tokens observed.
    pub tokens: u64,
    /// Each MoE layer's statistics.
    pub layers: Vec<LayerStats>,
}

impl CalibrationStats {
    /// The statistics of decoder layer `layer`, if it is an MoE layer.
    pub fn layer(&self, layer: usize) -> Option<&LayerStats> {
        self.layers.iter().find(|l| l.layer == layer)
    }

    /// Writes the statistics as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string_pretty(self).map_err(|e| Error::input(e.to_string()))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }

    /// Reads statistics written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        serde_json::from_str(&text).map_err(|e| {
            Error::input(format!(
                "{}: not a calibration stats file: {e}",
                path.display()
            ))
        })
    }
}
