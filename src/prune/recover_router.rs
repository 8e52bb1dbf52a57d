//! Refits a pruned layer's kept router rows by Gauss–Newton least squares. With each token's
//! selection held, the layer's output is a smooth function of the logits: ŷ = Σ_j w_j(z) E_j.
//! Linearised, a change ΔW_i of router row i moves ŷ by g_i (x · ΔW_i), where
//! g_i = Σ_j ∂w_j/∂z_i E_j; the step minimises Σ_t ‖r_t − Σ_i g_i (x_t · ΔW_i)‖², one H × H
//! block per expert, solved by block Gauss–Seidel sweeps. ∂w/∂z comes from the routing
//! function itself by central differences, so every routing family is covered.

use crate::error::Result;
use crate::prune::least_squares::{Normal, add_outer, mean_diagonal};
use crate::prune::recover_fit::{Fit, line_search};

/// Gauss–Newton steps at most.
const ITERATIONS: usize = 4;
/// Block Gauss–Seidel sweeps per step.
const SWEEPS: usize = 3;
/// Logit step of the central differences.
const EPS: f32 = 1e-3;
/// Levenberg damping tried in turn, relative to the blocks' mean diagonal.
const DAMPING: [f64; 6] = [1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0];
/// Stop when a step improves the loss by less than this fraction.
const MIN_GAIN: f64 = 1e-4;

/// What one token contributes to the normal equations.
struct TokenTerms {
    /// Kept experts whose logit moves this token's output.
    active: Vec<usize>,
    /// ⟨g_a, g_b⟩ over the active experts, [active, active].
    gram: Vec<f64>,
    /// ⟨g_a, r⟩.
    gr: Vec<f64>,
}

/// ∂w/∂z_i of token logits `z` with its selection `ids` held; None where moving z_i changes the
/// selection (or moves nothing).
fn derivative(fit: &Fit, z: &[f32], ids: &[u32], i: usize) -> Option<Vec<f64>> {
    let moved = |d: f32| {
        let mut zz = z.to_vec();
        zz[i] += d;
        fit.route(&zz)
    };
    let (up_ids, up) = moved(EPS);
    let (down_ids, down) = moved(-EPS);
    if up_ids != ids || down_ids != ids {
        return None;
    }
    let d: Vec<f64> = up
        .iter()
        .zip(&down)
        .map(|(a, b)| (*a as f64 - *b as f64) / (2.0 * EPS as f64))
        .collect();
    d.iter().any(|v| *v != 0.0).then_some(d)
}

fn token_terms(fit: &Fit, router: &[f32], t: usize) -> TokenTerms {
    let h = fit.hidden;
    let z = fit.logits(router, t);
    let (ids, w) = fit.route(&z);
    let r = fit.residual(t, &ids, &w);
    let mut active = Vec::new();
    let mut g: Vec<Vec<f64>> = Vec::new();
    for i in 0..fit.routing.experts {
        let Some(dw) = derivative(fit, &z, &ids, i) else {
            continue;
        };
        let mut gi = vec![0.0f64; h];
        for (id, d) in ids.iter().zip(&dw) {
            let e = &fit.outputs[*id as usize][t * h..(t + 1) * h];
            for (a, v) in gi.iter_mut().zip(e) {
                *a += d * *v as f64;
            }
        }
        active.push(i);
        g.push(gi);
    }
    let dot = |a: &[f64], b: &[f64]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f64>();
    let n = active.len();
    let mut gram = vec![0.0; n * n];
    for a in 0..n {
        for b in 0..n {
            gram[a * n + b] = dot(&g[a], &g[b]);
        }
    }
    let gr = g.iter().map(|gi| dot(gi, &r)).collect();
    TokenTerms { active, gram, gr }
}

/// The Gauss–Newton normal equations at one router: each token's terms, and each expert's
/// block Σ_t ⟨g_i, g_i⟩ x_t x_tᵀ.
struct Equations {
    terms: Vec<TokenTerms>,
    /// members[i]: (token, slot of expert i in that token's active list).
    members: Vec<Vec<(usize, usize)>>,
    blocks: Vec<Vec<f64>>,
    /// The mean diagonal over all blocks: the scale of the damping.
    scale: f64,
}

impl Equations {
    fn build(fit: &Fit, router: &[f32]) -> Self {
        let (k, h) = (fit.routing.experts, fit.hidden);
        let terms: Vec<TokenTerms> = (0..fit.fitted)
            .map(|t| token_terms(fit, router, t))
            .collect();
        let mut members: Vec<Vec<(usize, usize)>> = vec![Vec::new(); k];
        for (t, tt) in terms.iter().enumerate() {
            for (a, &i) in tt.active.iter().enumerate() {
                members[i].push((t, a));
            }
        }
        let blocks: Vec<Vec<f64>> = members
            .iter()
            .map(|m| {
                let mut a = vec![0.0; h * h];
                for &(t, s) in m {
                    let n = terms[t].active.len();
                    add_outer(&mut a, fit.row(t), terms[t].gram[s * n + s]);
                }
                a
            })
            .collect();
        let scale = blocks.iter().map(|b| mean_diagonal(b, h)).sum::<f64>() / k.max(1) as f64;
        Self {
            terms,
            members,
            blocks,
            scale,
        }
    }

    /// The step with damping λ = `damping` × scale, by block Gauss–Seidel sweeps.
    fn solve(&self, fit: &Fit, damping: f64) -> Result<Vec<f64>> {
        let (k, h) = (fit.routing.experts, fit.hidden);
        let lambda = damping * self.scale;
        let normals: Vec<Normal> = self
            .blocks
            .iter()
            .map(|b| Normal::factor(b.clone(), h, lambda))
            .collect::<Result<_>>()?;
        let terms = &self.terms;
        let mut delta = vec![0.0f64; k * h];
        // proj[t][a] = x_t · ΔW of the token's a-th active expert.
        let mut proj: Vec<Vec<f64>> = terms.iter().map(|tt| vec![0.0; tt.active.len()]).collect();
        for _ in 0..SWEEPS {
            for (i, normal) in normals.iter().enumerate() {
                let mut rhs = vec![0.0f64; h];
                for &(t, s) in &self.members[i] {
                    let tt = &terms[t];
                    let n = tt.active.len();
                    let coupled: f64 = (0..n)
                        .filter(|b| *b != s)
                        .map(|b| tt.gram[s * n + b] * proj[t][b])
                        .sum();
                    let c = tt.gr[s] - coupled;
                    for (r, v) in rhs.iter_mut().zip(fit.row(t)) {
                        *r += c * *v as f64;
                    }
                }
                normal.solve(&mut rhs);
                for &(t, s) in &self.members[i] {
                    proj[t][s] = fit
                        .row(t)
                        .iter()
                        .zip(&rhs)
                        .map(|(a, b)| *a as f64 * b)
                        .sum();
                }
                delta[i * h..(i + 1) * h].copy_from_slice(&rhs);
            }
        }
        Ok(delta)
    }
}

/// Refit router rows, or None when no step lowered the loss. Each Gauss–Newton step tries
/// damping 10⁻³, 10⁻², … 10² of the blocks' scale until a line search finds a lower loss: a
/// linearisation that holds each token's selection can overshoot where selections flip.
pub(crate) fn refit_router(
    fit: &Fit,
    router: &[f32],
    round: fn(f32) -> f32,
) -> Result<Option<Vec<f32>>> {
    let mut best: Option<Vec<f32>> = None;
    let mut loss = fit.loss(router);
    for _ in 0..ITERATIONS {
        let current = best.as_deref().unwrap_or(router);
        let eq = Equations::build(fit, current);
        let mut found = None;
        for damping in DAMPING {
            let delta = eq.solve(fit, damping)?;
            found = line_search(loss, |alpha| {
                let candidate: Vec<f32> = current
                    .iter()
                    .zip(&delta)
                    .map(|(w, d)| round(w + alpha * *d as f32))
                    .collect();
                let l = fit.loss(&candidate);
                Ok((candidate, l))
            })?;
            if found.is_some() {
                break;
            }
        }
        let Some((candidate, l)) = found else {
            break;
        };
        let gain = (loss.fitted - l.fitted) / loss.fitted.max(f64::MIN_POSITIVE);
        best = Some(candidate);
        loss = l;
        if gain < MIN_GAIN {
            break;
        }
    }
    Ok(best)
}
