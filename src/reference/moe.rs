//! A whole MoE block on the CPU, expert by expert, and the permutation's CSR segments.

use crate::error::Result;
use crate::reference::linear::{glu_mlp, linear};
use crate::reference::routing::route;
use crate::spec::INVALID;
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::routing::DynamicActivation;
use crate::spec::weights::MoeWeights;

/// Everything the reference computes for one block call.
#[derive(Debug, Clone)]
pub struct RefMoeOutput {
    /// [tokens, hidden]
    pub output: Vec<f32>,
    /// [tokens, experts]
    pub router_logits: Vec<f32>,
    /// [tokens, k]
    pub topk_ids: Vec<u32>,
    /// [tokens, k]
    pub topk_weights: Vec<f32>,
}

/// Per-expert counts and exclusive offsets ([experts + 1]) of a set of ids.
pub fn permutation(ids: &[u32], experts: usize) -> (Vec<u32>, Vec<u32>) {
    let mut counts = vec![0u32; experts];
    for &id in ids {
        if id != INVALID {
            counts[id as usize] += 1;
        }
    }
    let mut offsets = vec![0u32; experts + 1];
    for e in 0..experts {
        offsets[e + 1] = offsets[e] + counts[e];
    }
    (counts, offsets)
}

/// Each routed pair's expert output, [tokens × k, hidden] (zeros for dropped slots), for the
/// selected `ids` ([tokens, k]) of `x` ([tokens, hidden]); each expert is loaded once.
pub fn pair_outputs(
    x: &[f32],
    spec: &MoeLayerSpec,
    w: &MoeWeights,
    ids: &[u32],
) -> Result<Vec<f32>> {
    let (h, k) = (spec.hidden, spec.routing.top_k);
    let mut outs = vec![0.0f32; ids.len() * h];
    for expert in 0..spec.routing.experts {
        let slots: Vec<usize> = (0..ids.len())
            .filter(|&p| ids[p] == expert as u32)
            .collect();
        if slots.is_empty() {
            continue;
        }
        let xs: Vec<f32> = slots
            .iter()
            .flat_map(|p| x[p / k * h..(p / k + 1) * h].iter().copied())
            .collect();
        let ew = w.experts.load(expert)?;
        let y = glu_mlp(&xs, slots.len(), h, spec.inter, &ew, spec.glu);
        for (n, p) in slots.iter().enumerate() {
            outs[p * h..(p + 1) * h].copy_from_slice(&y[n * h..(n + 1) * h]);
        }
    }
    Ok(outs)
}

/// The MoE block of `spec` on `x` ([tokens, hidden]).
pub fn moe_block(
    x: &[f32],
    spec: &MoeLayerSpec,
    w: &MoeWeights,
    activation: &DynamicActivation,
) -> Result<RefMoeOutput> {
    let r = &spec.routing;
    let (h, e, k) = (spec.hidden, r.experts, r.top_k);
    let tokens = x.len() / h;
    let logits = linear(x, tokens, h, &w.router, e, w.router_bias.as_deref());
    let (ids, weights) = route(&logits, tokens, r, w.correction.as_deref(), activation);
    let pairs = pair_outputs(x, spec, w, &ids)?;
    let mut out = vec![0.0f64; tokens * h];
    for expert in 0..e {
        for p in (0..tokens * k).filter(|&p| ids[p] == expert as u32) {
            let t = p / k;
            for c in 0..h {
                out[t * h + c] += weights[p] as f64 * pairs[p * h + c] as f64;
            }
        }
    }
    if let (Some(shared), Some(si)) = (&w.shared, spec.shared_inter) {
        let y = glu_mlp(x, tokens, h, si, &shared.mlp, spec.glu);
        for t in 0..tokens {
            let gate = match &shared.gate {
                Some(g) => {
                    let z: f64 = x[t * h..(t + 1) * h]
                        .iter()
                        .zip(g)
                        .map(|(a, b)| *a as f64 * *b as f64)
                        .sum();
                    1.0 / (1.0 + (-z).exp())
                }
                None => 1.0,
            };
            for c in 0..h {
                out[t * h + c] += gate * y[t * h + c] as f64;
            }
        }
    }
    Ok(RefMoeOutput {
        output: out.iter().map(|v| *v as f32).collect(),
        router_logits: logits,
        topk_ids: ids,
        topk_weights: weights,
    })
}
