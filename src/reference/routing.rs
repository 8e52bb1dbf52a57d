//! Expert selection per routing family, by sorting: the CPU twin of `shaders/select.wgsl`.

use crate::spec::INVALID;
use crate::spec::routing::{DynamicActivation, GroupScore, RoutingSpec, Scoring};

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// Indices of `values` from best to worst (larger first, ties to the lower index, NaN last).
fn ranked(values: &[f64]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    let key = |i: usize| {
        if values[i].is_nan() {
            f64::NEG_INFINITY
        } else {
            values[i]
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    order
}

/// Routes `tokens` rows of `logits` ([tokens, experts]); returns ids and weights, each
/// [tokens, spec.top_k], with dropped slots as (INVALID, 0).
pub fn route(
    logits: &[f32],
    tokens: usize,
    spec: &RoutingSpec,
    correction: Option<&[f32]>,
    activation: &DynamicActivation,
) -> (Vec<u32>, Vec<f32>) {
    let e = spec.experts;
    let k_max = spec.top_k;
    let k = activation.top_k.unwrap_or(k_max).min(k_max);
    let mut ids = vec![INVALID; tokens * k_max];
    let mut weights = vec![0.0f32; tokens * k_max];
    for t in 0..tokens {
        let l: Vec<f64> = logits[t * e..(t + 1) * e]
            .iter()
            .map(|v| *v as f64)
            .collect();
        let max = l.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let softmax: Vec<f64> = {
            let ex: Vec<f64> = l.iter().map(|v| (v - max).exp()).collect();
            let s: f64 = ex.iter().sum();
            ex.iter().map(|v| v / s).collect()
        };
        // Score: what the weights come from. Key: what selection compares.
        let score: Vec<f64> = match spec.scoring {
            Scoring::Softmax => softmax.clone(),
            Scoring::Sigmoid => l.iter().map(|v| sigmoid(*v)).collect(),
            Scoring::TopKThenSoftmax => l.clone(),
        };
        let mut key = score.clone();
        if spec.correction_bias {
            for (kv, b) in key.iter_mut().zip(correction.unwrap_or(&[])) {
                *kv += *b as f64;
            }
        }
        if spec.group != GroupScore::None {
            let size = e / spec.n_group;
            let group_scores: Vec<f64> = key
                .chunks(size)
                .map(|g| {
                    let order = ranked(g);
                    match spec.group {
                        GroupScore::Max => g[order[0]],
                        _ => g[order[0]] + g[order[1]],
                    }
                })
                .collect();
            let keep: Vec<usize> = ranked(&group_scores)[..spec.topk_group].to_vec();
            for (i, kv) in key.iter_mut().enumerate() {
                if !keep.contains(&(i / size)) {
                    *kv = f64::NEG_INFINITY;
                }
            }
        }
        // Routing probability for top-p and the skip rule.
        let prob: Vec<f64> = match spec.scoring {
            Scoring::Sigmoid => {
                let s: f64 = score.iter().sum();
                score.iter().map(|v| v / s).collect()
            }
            _ => softmax.clone(),
        };
        let picks: Vec<usize> = ranked(&key)[..k].to_vec();
        let mut kept = vec![picks[0]];
        let mut mass = prob[picks[0]];
        for &p in &picks[1..] {
            if activation.top_p < 1.0 && mass >= activation.top_p as f64 {
                break;
            }
            if prob[p] < activation.skip_beta as f64 * prob[picks[0]] {
                continue;
            }
            mass += prob[p];
            kept.push(p);
        }
        let mut w: Vec<f64> = match spec.scoring {
            Scoring::TopKThenSoftmax => {
                let m = kept.iter().map(|&i| l[i]).fold(f64::NEG_INFINITY, f64::max);
                let ex: Vec<f64> = kept.iter().map(|&i| (l[i] - m).exp()).collect();
                let s: f64 = ex.iter().sum();
                ex.iter().map(|v| v / s).collect()
            }
            _ => kept.iter().map(|&i| score[i]).collect(),
        };
        if spec.renormalize && spec.scoring != Scoring::TopKThenSoftmax {
            let s: f64 = w.iter().sum::<f64>() + spec.renorm_eps as f64;
            w.iter_mut().for_each(|v| *v /= s);
        }
        for (j, (&id, wt)) in kept.iter().zip(&w).enumerate() {
            ids[t * k_max + j] = id as u32;
            weights[t * k_max + j] = (wt * spec.scale as f64) as f32;
        }
    }
    (ids, weights)
}
