//! Refits the down projection of each expert that absorbed others by merging. With the
//! routing fixed, the layer's output is linear in that matrix D ([hidden, inter]): token t adds
//! w_t · (D a_t + b), a_t the expert's gated activation. D is the damped least-squares fit of
//! what the teacher's output leaves for it, pulled toward the merged D by the damping.

use crate::error::Result;
use crate::prune::least_squares::{Normal, add_outer, mean_diagonal};
use crate::prune::recover_fit::{Fit, line_search};
use crate::reference::linear::{activate, linear};
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::weights::ExpertWeights;

/// Levenberg damping, relative to the mean of the normal matrix's diagonal.
const DAMPING: f64 = 1e-3;

/// The gated activation of `w` on every row of `x`, [tokens, inter].
fn activations(x: &[f32], tokens: usize, spec: &MoeLayerSpec, w: &ExpertWeights) -> Vec<f32> {
    let (h, i) = (spec.hidden, spec.inter);
    let g = linear(x, tokens, h, &w.gate, i, w.gate_bias.as_deref());
    let u = linear(x, tokens, h, &w.up, i, w.up_bias.as_deref());
    g.iter()
        .zip(&u)
        .map(|(g, u)| activate(spec.glu, *g as f64, *u as f64) as f32)
        .collect()
}

/// The least-squares down projection of kept expert `m` ([hidden, inter]).
fn solve_down(
    fit: &Fit,
    routes: &[(Vec<u32>, Vec<f32>)],
    act: &[f32],
    spec: &MoeLayerSpec,
    w: &ExpertWeights,
    m: usize,
) -> Result<Vec<f32>> {
    let (h, i) = (spec.hidden, spec.inter);
    let bias = w.down_bias_or_zero(h);
    let mut g = vec![0.0f64; i * i];
    let mut b = vec![0.0f64; i * h];
    for (t, (ids, wts)) in routes.iter().enumerate().take(fit.fitted) {
        let Some(s) = ids.iter().position(|id| *id as usize == m) else {
            continue;
        };
        let wt = wts[s] as f64;
        let r = fit.residual(t, ids, wts);
        let e = &fit.outputs[m][t * h..(t + 1) * h];
        let a = &act[t * i..(t + 1) * i];
        add_outer(&mut g, a, wt * wt);
        // wt · D a should become r + wt · (e − bias): what the rest of the layer leaves.
        for (ai, av) in a.iter().enumerate() {
            let row = &mut b[ai * h..(ai + 1) * h];
            for c in 0..h {
                row[c] += wt * *av as f64 * (r[c] + wt * (e[c] as f64 - bias[c] as f64));
            }
        }
    }
    let lambda = DAMPING * mean_diagonal(&g, i);
    let normal = Normal::factor(g, i, lambda)?;
    let mut down = w.down.clone();
    for c in 0..h {
        let mut col: Vec<f64> = (0..i)
            .map(|ai| b[ai * h + c] + normal.lambda * w.down[c * i + ai] as f64)
            .collect();
        normal.solve(&mut col);
        for (ai, v) in col.iter().enumerate() {
            down[c * i + ai] = *v as f32;
        }
    }
    Ok(down)
}

/// Refits the down projection of each kept expert in `mergers` (indices into `experts`) in
/// turn, keeping a refit only where it lowers the loss with the weights rounded by `round`.
/// Updates `experts` and the fit's outputs; returns how many were replaced.
pub(crate) fn refit_merged(
    fit: &mut Fit,
    router: &[f32],
    spec: &MoeLayerSpec,
    experts: &mut [ExpertWeights],
    mergers: &[usize],
    round: fn(f32) -> f32,
) -> Result<usize> {
    let (h, i, tokens) = (spec.hidden, spec.inter, fit.tokens);
    let routes: Vec<(Vec<u32>, Vec<f32>)> = (0..tokens)
        .map(|t| fit.route(&fit.logits(router, t)))
        .collect();
    let mut loss = fit.loss(router);
    let mut replaced = 0;
    for &m in mergers {
        let w = &experts[m];
        let act = activations(fit.x, tokens, spec, w);
        let solved = solve_down(fit, &routes, &act, spec, w, m)?;
        let old = w.down.clone();
        let bias = w.down_bias.clone();
        let found = line_search(loss, |alpha| {
            let down: Vec<f32> = old
                .iter()
                .zip(&solved)
                .map(|(o, n)| round(o + alpha * (n - o)))
                .collect();
            let out = linear(&act, tokens, i, &down, h, bias.as_deref());
            let before = std::mem::replace(&mut fit.outputs[m], out);
            let l = fit.loss(router);
            let out = std::mem::replace(&mut fit.outputs[m], before);
            Ok(((down, out), l))
        })?;
        if let Some(((down, out), l)) = found {
            experts[m].down = down;
            fit.outputs[m] = out;
            loss = l;
            replaced += 1;
        }
    }
    Ok(replaced)
}
