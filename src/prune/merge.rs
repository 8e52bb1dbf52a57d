//! Gradient-free recovery: fold each dropped expert into its most similar kept expert, as a
//! frequency-weighted average of their weights.

use std::collections::BTreeMap;

use crate::calibration::LayerStats;
use crate::error::Result;
use crate::prune::plan::LayerPlan;
use crate::spec::weights::{ExpertSource, ExpertWeights};

/// All of an expert's weights as one vector, for similarity.
fn flat(w: &ExpertWeights) -> Vec<f32> {
    let mut v = Vec::with_capacity(w.gate.len() * 3);
    v.extend_from_slice(&w.gate);
    v.extend_from_slice(&w.up);
    v.extend_from_slice(&w.down);
    v
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    let na: f64 = a.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
    dot / (na * nb).max(1e-30)
}

fn axpy(acc: &mut [f64], w: f64, x: &[f32]) {
    for (a, v) in acc.iter_mut().zip(x) {
        *a += w * *v as f64;
    }
}

fn blend(parts: &[(f64, &[f32])]) -> Vec<f32> {
    let total: f64 = parts.iter().map(|p| p.0).sum();
    let mut acc = vec![0.0f64; parts[0].1.len()];
    for (w, x) in parts {
        axpy(&mut acc, *w, x);
    }
    acc.iter().map(|v| (v / total) as f32).collect()
}

fn blend_opt(parts: &[(f64, Option<&Vec<f32>>)]) -> Option<Vec<f32>> {
    let present: Option<Vec<(f64, &[f32])>> = parts
        .iter()
        .map(|(w, v)| v.map(|v| (*w, v.as_slice())))
        .collect();
    present.map(|p| blend(&p))
}

/// Assigns every dropped expert of `plan` to its most similar kept expert (filling
/// `plan.merges`) and returns the merged weights of every kept expert that absorbed others,
/// keyed by its original id.
pub fn merge_layer(
    plan: &mut LayerPlan,
    stats: &LayerStats,
    experts: &dyn ExpertSource,
) -> Result<BTreeMap<usize, ExpertWeights>> {
    let kept: Vec<(usize, ExpertWeights)> = plan
        .keep
        .iter()
        .map(|&e| Ok((e, experts.load(e)?)))
        .collect::<Result<_>>()?;
    let kept_flat: Vec<Vec<f32>> = kept.iter().map(|(_, w)| flat(w)).collect();
    let mut absorbed: BTreeMap<usize, Vec<(usize, ExpertWeights)>> = BTreeMap::new();
    plan.merges.clear();
    for d in (0..experts.num_experts()).filter(|e| !plan.keep.contains(e)) {
        let w = experts.load(d)?;
        let f = flat(&w);
        let (best, _) = kept_flat
            .iter()
            .enumerate()
            .map(|(i, k)| (i, cosine(&f, k)))
            .fold((0, f64::NEG_INFINITY), |a, b| if b.1 > a.1 { b } else { a });
        let target = kept[best].0;
        plan.merges.push((d, target));
        absorbed.entry(target).or_default().push((d, w));
    }
    // Frequency weights; a never-routed expert still counts a little.
    let freq = |e: usize| stats.frequency.get(e).copied().unwrap_or(0.0) + 1e-6;
    let mut merged = BTreeMap::new();
    for (target, others) in absorbed {
        let base = &kept
            .iter()
            .find(|(e, _)| *e == target)
            .map(|(_, w)| w)
            .cloned()
            .unwrap_or_else(|| others[0].1.clone());
        let mut members: Vec<(f64, &ExpertWeights)> = vec![(freq(target), base)];
        members.extend(others.iter().map(|(e, w)| (freq(*e), w)));
        let pick = |f: fn(&ExpertWeights) -> &Vec<f32>| -> Vec<f32> {
            blend(
                &members
                    .iter()
                    .map(|(w, m)| (*w, f(m).as_slice()))
                    .collect::<Vec<_>>(),
            )
        };
        let pick_opt = |f: fn(&ExpertWeights) -> Option<&Vec<f32>>| {
            blend_opt(&members.iter().map(|(w, m)| (*w, f(m))).collect::<Vec<_>>())
        };
        merged.insert(
            target,
            ExpertWeights {
                gate: pick(|m| &m.gate),
                up: pick(|m| &m.up),
                down: pick(|m| &m.down),
                gate_bias: pick_opt(|m| m.gate_bias.as_ref()),
                up_bias: pick_opt(|m| m.up_bias.as_ref()),
                down_bias: pick_opt(|m| m.down_bias.as_ref()),
            },
        );
    }
    Ok(merged)
}
