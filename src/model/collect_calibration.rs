//! Calibration: run a model over calibration tokens and gather, per MoE layer and expert, the
//! routing statistics that dynamic activation and pruning use.

use crate::calibration::{CalibrationStats, LayerStats};
use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::model::decoder::Model;
use crate::synthetic::Rng;

/// A built-in calibration text for models with a tokenizer: varied registers (narrative,
/// technical, conversational, code, numbers) so that routing sees more than one domain.
pub const BUILTIN_TEXT: &str = "\
The river was high that spring, and the ferry ran only in the mornings. Mara counted the \
crates twice before she signed for them, because the last shipment had been short by three. \
\"We leave at dawn,\" the captain said, \"whether the fog lifts or not.\"\n\
A mixture-of-experts layer sends each token to a few of many feed-forward networks. The router \
scores every expert, keeps the best k, and the layer adds their outputs, weighted by the \
router's probabilities. Because only k experts run, compute per token stays small while the \
number of parameters grows.\n\
Q: How many minutes are in three and a half hours? A: 3.5 × 60 = 210 minutes.\n\
def mean(values):\n    total = sum(values)\n    return total / len(values) if values else 0.0\n\
The committee met on Tuesday to review the budget for 2025. Spending on maintenance rose by \
12 percent, while the cost of energy fell slightly after the new panels were installed.\n\
Photosynthesis converts light energy into chemical energy: carbon dioxide and water become \
glucose and oxygen inside the chloroplasts of plant cells.\n\
Dear Sam, thanks for the photos from the trip! The mountains look unreal. Let's meet next \
week and plan the autumn hike. Best, Lee\n\
SELECT name, COUNT(*) FROM orders WHERE status = 'shipped' GROUP BY name ORDER BY 2 DESC;\n\
In 1969 the first humans walked on the Moon; the mission lasted eight days and brought back \
twenty-one kilograms of lunar rock.\n";

/// Deterministic pseudo-random token ids for models without a tokenizer: `sequences` rows of
/// `len` ids in 0..vocab.
pub fn builtin_ids(vocab: usize, sequences: usize, len: usize, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = Rng::new(seed);
    (0..sequences)
        .map(|_| (0..len).map(|_| rng.below(vocab) as u32).collect())
        .collect()
}

/// Splits `ids` into sequences of at most `len` tokens (the last may be shorter).
pub fn split(ids: &[u32], len: usize) -> Vec<Vec<u32>> {
    ids.chunks(len.max(1)).map(|c| c.to_vec()).collect()
}

/// Runs `model` over `sequences` (each from an empty cache, in steps of at most `max_batch`
/// tokens) and returns the routing statistics of every MoE layer. `observe(done, total)` hears
/// of each step, in tokens.
pub fn calibrate(
    ctx: &Context,
    model: &mut Model,
    sequences: &[Vec<u32>],
    name: &str,
    observe: &mut dyn FnMut(u64, u64),
) -> Result<CalibrationStats> {
    if sequences.iter().all(|s| s.is_empty()) {
        return Err(Error::input("no calibration tokens"));
    }
    let mut layers: Vec<LayerStats> = model
        .moe_layers()
        .map(|(l, m)| LayerStats::new(l, m.experts(), m.top_k()))
        .collect();
    let batch = model.limits.batch;
    let total = sequences.iter().map(|s| s.len() as u64).sum();
    let mut tokens = 0u64;
    for seq in sequences.iter().filter(|s| !s.is_empty()) {
        model.reset();
        for chunk in seq.chunks(batch) {
            for routing in model.capture_routing(ctx, chunk)? {
                if let Some(s) = layers.iter_mut().find(|s| s.layer == routing.layer) {
                    s.observe(&routing.ids, &routing.weights, Some(&routing.output_norms));
                }
            }
            tokens += chunk.len() as u64;
            observe(tokens, total);
        }
    }
    model.reset();
    Ok(CalibrationStats {
        model: name.to_string(),
        architecture: model.config.arch.name().to_string(),
        tokens,
        layers,
    })
}
