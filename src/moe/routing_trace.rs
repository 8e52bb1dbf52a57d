//! Routing traces: which experts each MoE layer activated at each step, as recorded by a run
//! (`--trace-out`) or generated with a Zipf-skewed popularity when no model is at hand. The
//! cache simulator (`src/moe/cachesim.rs`) replays them.

use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::synthetic::Rng;

/// Format tag written into every trace file.
pub const TRACE_FORMAT: &str = "moe-gpu routing trace v1";

/// The experts one step activated in every traced layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TraceStep {
    /// Tokens in the step.
    pub tokens: usize,
    /// `experts[l]`: the distinct experts layer `layers[l]` activated, ascending.
    pub experts: Vec<Vec<usize>>,
}

/// A routing trace of one or more MoE layers over a sequence of steps.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RoutingTrace {
    /// [`TRACE_FORMAT`].
    pub format: String,
    /// Routed experts per layer.
    pub experts: usize,
    /// Experts each token activates (the checkpoint's k).
    pub top_k: usize,
    /// Decoder layer index of each traced MoE layer.
    pub layers: Vec<usize>,
    /// The recorded steps, in order.
    pub steps: Vec<TraceStep>,
}

impl RoutingTrace {
    /// An empty trace of MoE layers `layers` with `experts` experts and k = `top_k`.
    pub fn new(experts: usize, top_k: usize, layers: Vec<usize>) -> Self {
        Self {
            format: TRACE_FORMAT.to_string(),
            experts,
            top_k,
            layers,
            steps: Vec::new(),
        }
    }

    /// Checks that every step lists each layer once, with distinct in-range expert ids.
    pub fn validate(&self) -> Result<()> {
        if self.format != TRACE_FORMAT {
            return Err(Error::input(format!(
                "trace format `{}` is not `{TRACE_FORMAT}`",
                self.format
            )));
        }
        if self.experts == 0 || self.top_k == 0 || self.top_k > self.experts {
            return Err(Error::input(format!(
                "trace has {} experts and k = {}; need 1 ≤ k ≤ experts",
                self.experts, self.top_k
            )));
        }
        if self.layers.is_empty() {
            return Err(Error::input("trace lists no layers"));
        }
        for (s, step) in self.steps.iter().enumerate() {
            if step.experts.len() != self.layers.len() {
                return Err(Error::input(format!(
                    "trace step {s} has {} layers, expected {}",
                    step.experts.len(),
                    self.layers.len()
                )));
            }
            for (l, set) in step.experts.iter().enumerate() {
                let mut seen = vec![false; self.experts];
                for &e in set {
                    if e >= self.experts || std::mem::replace(&mut seen[e], true) {
                        return Err(Error::input(format!(
                            "trace step {s}, layer {}: expert {e} is out of range or repeated",
                            self.layers[l]
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads and validates a trace written by [`Self::save`].
    pub fn load(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let trace: Self = serde_json::from_str(&text)
            .map_err(|e| Error::input(format!("{}: not a routing trace: {e}", path.display())))?;
        trace.validate()?;
        Ok(trace)
    }

    /// Writes the trace as JSON.
    pub fn save(&self, path: &Path) -> Result<()> {
        let text = serde_json::to_string(self)
            .map_err(|e| Error::input(format!("serialising the trace: {e}")))?;
        std::fs::write(path, text).map_err(|e| Error::io(path, e))
    }

    /// Expert activations over all steps and layers.
    pub fn accesses(&self) -> usize {
        self.steps
            .iter()
            .flat_map(|s| &s.experts)
            .map(Vec::len)
            .sum()
    }
}

/// A synthetic trace: each layer ranks its experts in a random order, and each token picks k
/// distinct experts with probability ∝ 1 / rank^exponent (exponent 0 is uniform).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ZipfTrace {
    /// Routed experts per layer.
    pub experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// MoE layers traced.
    pub layers: usize,
    /// Steps.
    pub steps: usize,
    /// Tokens per step.
    pub tokens_per_step: usize,
    /// Zipf exponent of the expert popularity (0: uniform).
    pub exponent: f64,
    /// Seed of the expert ranking and the picks.
    pub seed: u64,
}

impl ZipfTrace {
    /// Draws the trace.
    pub fn generate(&self) -> Result<RoutingTrace> {
        let z = self;
        if z.experts == 0 || z.top_k == 0 || z.top_k > z.experts {
            return Err(Error::input(format!(
                "Zipf trace: k = {} must be between 1 and the expert count {}",
                z.top_k, z.experts
            )));
        }
        if z.layers == 0 || z.tokens_per_step == 0 {
            return Err(Error::input(
                "Zipf trace needs at least one layer and one token per step",
            ));
        }
        if !(z.exponent.is_finite() && z.exponent >= 0.0) {
            return Err(Error::input(format!(
                "Zipf exponent {} must be a finite number ≥ 0",
                z.exponent
            )));
        }
        let mut rng = Rng::new(z.seed);
        let popularity: Vec<Vec<f64>> = (0..z.layers)
            .map(|_| {
                let mut order: Vec<usize> = (0..z.experts).collect();
                for i in (1..order.len()).rev() {
                    order.swap(i, rng.below(i + 1));
                }
                let mut p = vec![0.0; z.experts];
                for (rank, &e) in order.iter().enumerate() {
                    p[e] = 1.0 / ((rank + 1) as f64).powf(z.exponent);
                }
                p
            })
            .collect();
        let mut trace = RoutingTrace::new(z.experts, z.top_k, (0..z.layers).collect());
        for _ in 0..z.steps {
            let experts = popularity
                .iter()
                .map(|p| {
                    let mut used = vec![false; z.experts];
                    for _ in 0..z.tokens_per_step {
                        for e in pick_distinct(&mut rng, p, z.top_k) {
                            used[e] = true;
                        }
                    }
                    (0..z.experts).filter(|&e| used[e]).collect()
                })
                .collect();
            trace.steps.push(TraceStep {
                tokens: z.tokens_per_step,
                experts,
            });
        }
        Ok(trace)
    }
}

/// `k` distinct indices drawn one after another with probability ∝ `weights`.
fn pick_distinct(rng: &mut Rng, weights: &[f64], k: usize) -> Vec<usize> {
    let mut w = weights.to_vec();
    let mut out = Vec::with_capacity(k);
    for _ in 0..k {
        let total: f64 = w.iter().sum();
        let mut r = rng.uniform() * total;
        let mut pick = w.iter().rposition(|&x| x > 0.0).unwrap_or(0);
        for (i, &x) in w.iter().enumerate() {
            if x > 0.0 && r < x {
                pick = i;
                break;
            }
            r -= x;
        }
        w[pick] = 0.0;
        out.push(pick);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zipf(exponent: f64, tokens: usize) -> ZipfTrace {
        ZipfTrace {
            experts: 16,
            top_k: 2,
            layers: 2,
            steps: 200,
            tokens_per_step: tokens,
            exponent,
            seed: 1,
        }
    }

    #[test]
    fn zipf_traces_are_valid_and_skewed() {
        let t = zipf(1.2, 1).generate().unwrap();
        t.validate().unwrap();
        assert_eq!(t.accesses(), 200 * 2 * 2);
        let mut hist = vec![0usize; 16];
        for s in &t.steps {
            for &e in &s.experts[0] {
                hist[e] += 1;
            }
        }
        hist.sort_unstable();
        assert!(
            hist[15] > 4 * hist[4],
            "top expert far above the median: {hist:?}"
        );
        let uniform = zipf(0.0, 1).generate().unwrap();
        assert_ne!(uniform, t);
    }

    #[test]
    fn multi_token_steps_take_the_union() {
        let t = zipf(1.0, 8).generate().unwrap();
        assert!(t.steps.iter().all(|s| s.experts[1].len() >= 2));
        assert!(t.steps.iter().any(|s| s.experts[1].len() > 2));
    }

    #[test]
    fn malformed_traces_are_rejected() {
        let mut t = zipf(1.0, 1).generate().unwrap();
        t.steps[3].experts[1] = vec![4, 4];
        assert!(t.validate().is_err());
        t.steps[3].experts[1] = vec![16];
        assert!(t.validate().is_err());
        t.steps[3].experts.pop();
        assert!(t.validate().is_err());
        let bad = ZipfTrace {
            top_k: 17,
            ..zipf(1.0, 1)
        };
        assert!(bad.generate().is_err());
    }

    #[test]
    fn traces_survive_a_round_trip() {
        let t = zipf(0.8, 3).generate().unwrap();
        let path = std::env::temp_dir().join(format!("moe-trace-{}.json", std::process::id()));
        t.save(&path).unwrap();
        let back = RoutingTrace::load(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(back, t);
    }
}
