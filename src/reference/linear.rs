//! y = x · Wᵀ + b and the gated MLPs built from it.

use crate::spec::layer_spec::Glu;
use crate::spec::weights::ExpertWeights;

/// `x` `[rows, k]` · `w` `[n, k]`ᵀ + `bias` `[n]`, accumulated in f64.
pub fn linear(
    x: &[f32],
    rows: usize,
    k: usize,
    w: &[f32],
    n: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * n];
    for r in 0..rows {
        let xr = &x[r * k..(r + 1) * k];
        for c in 0..n {
            let wr = &w[c * k..(c + 1) * k];
            let mut acc: f64 = xr.iter().zip(wr).map(|(a, b)| *a as f64 * *b as f64).sum();
            if let Some(b) = bias {
                acc += b[c] as f64;
            }
            out[r * n + c] = acc as f32;
        }
    }
    out
}

fn sigmoid(v: f64) -> f64 {
    1.0 / (1.0 + (-v).exp())
}

/// The gated activation of gate value `g` and up value `u`.
pub fn activate(glu: Glu, g: f64, u: f64) -> f64 {
    match glu {
        Glu::None => g,
        Glu::Silu => g * sigmoid(g) * u,
        Glu::ClampedSwiglu { limit, alpha } => {
            let (limit, alpha) = (limit as f64, alpha as f64);
            let g = g.min(limit);
            let u = u.clamp(-limit, limit);
            (u + 1.0) * g * sigmoid(alpha * g)
        }
    }
}

/// down(act(gate(x), up(x))) for `tokens` rows of `x` [tokens, hidden].
pub fn glu_mlp(
    x: &[f32],
    tokens: usize,
    hidden: usize,
    inter: usize,
    w: &ExpertWeights,
    glu: Glu,
) -> Vec<f32> {
    let g = linear(x, tokens, hidden, &w.gate, inter, w.gate_bias.as_deref());
    let u = linear(x, tokens, hidden, &w.up, inter, w.up_bias.as_deref());
    let h: Vec<f32> = g
        .iter()
        .zip(&u)
        .map(|(g, u)| activate(glu, *g as f64, *u as f64) as f32)
        .collect();
    linear(&h, tokens, inter, &w.down, hidden, w.down_bias.as_deref())
}
