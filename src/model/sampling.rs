//! Choosing the next token from logits on the host: greedy, or temperature → top-k → top-p
//! (the order of transformers' logits warpers) followed by a draw from a seeded RNG.

use crate::error::{Error, Result};
use crate::synthetic::Rng;

/// How the next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sampling {
    /// The highest logit (the lowest id among equals).
    Greedy,
    /// A draw from softmax(logits / temperature), restricted to the `top_k` most likely tokens
    /// and then to the smallest set whose probability reaches `top_p`.
    Random {
        /// Divides the logits; must be positive.
        temperature: f32,
        /// Keep only the `top_k` most likely tokens.
        top_k: Option<usize>,
        /// Nucleus sampling: keep the smallest set whose probability reaches `top_p`.
        top_p: Option<f32>,
        /// Seed of the draws.
        seed: u64,
    },
}

impl Sampling {
    /// Checks the temperature is positive, `top_k` at least 1 and `top_p` in `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if let Sampling::Random {
            temperature,
            top_k,
            top_p,
            ..
        } = *self
        {
            if !(temperature.is_finite() && temperature > 0.0) {
                return Err(Error::input(format!(
                    "temperature {temperature} must be positive (use greedy decoding for 0)"
                )));
            }
            if top_k == Some(0) {
                return Err(Error::input("top-k must be at least 1"));
            }
            if let Some(p) = top_p.filter(|p| !(*p > 0.0 && *p <= 1.0)) {
                return Err(Error::input(format!("top-p {p} must be in (0, 1]")));
            }
        }
        Ok(())
    }
}

/// Draws tokens from logits according to a [`Sampling`].
pub struct Sampler {
    sampling: Sampling,
    rng: Rng,
}

impl Sampler {
    /// A sampler, after [`Sampling::validate`].
    pub fn new(sampling: Sampling) -> Result<Self> {
        sampling.validate()?;
        let seed = match sampling {
            Sampling::Random { seed, .. } => seed,
            Sampling::Greedy => 0,
        };
        Ok(Self {
            sampling,
            rng: Rng::new(seed),
        })
    }

    /// The next token id from one row of logits.
    pub fn sample(&mut self, logits: &[f32]) -> Result<u32> {
        if logits.is_empty() {
            return Err(Error::input("no logits to sample from"));
        }
        if let Some(i) = logits.iter().position(|v| !v.is_finite()) {
            return Err(Error::gpu(
                "sampling",
                format!(
                    "logit {i} is {}; the forward pass produced invalid numbers",
                    logits[i]
                ),
            ));
        }
        match self.sampling {
            Sampling::Greedy => Ok(argmax(logits)),
            Sampling::Random {
                temperature,
                top_k,
                top_p,
                ..
            } => {
                let candidates = filter(logits, temperature, top_k, top_p);
                let u = self.rng.uniform();
                let mut acc = 0.0;
                for (id, p) in &candidates {
                    acc += p;
                    if u < acc {
                        return Ok(*id);
                    }
                }
                Ok(candidates.last().map_or(0, |c| c.0))
            }
        }
    }
}

/// Index of the largest value; the first one among equals.
pub fn argmax(v: &[f32]) -> u32 {
    let mut best = 0;
    for (i, x) in v.iter().enumerate() {
        if *x > v[best] {
            best = i;
        }
    }
    best as u32
}

/// (id, probability) of the tokens that survive temperature, top-k and top-p, most likely
/// first, probabilities renormalised to sum to 1.
pub fn filter(
    logits: &[f32],
    temperature: f32,
    top_k: Option<usize>,
    top_p: Option<f32>,
) -> Vec<(u32, f64)> {
    let mut scaled: Vec<(u32, f64)> = logits
        .iter()
        .enumerate()
        .map(|(i, l)| (i as u32, *l as f64 / temperature as f64))
        .collect();
    // Stable sort: equal logits keep id order, so a seed gives the same draw everywhere.
    scaled.sort_by(|a, b| b.1.total_cmp(&a.1));
    if let Some(k) = top_k {
        scaled.truncate(k.max(1));
    }
    let max = scaled[0].1;
    let mut probs: Vec<(u32, f64)> = scaled
        .into_iter()
        .map(|(i, l)| (i, (l - max).exp()))
        .collect();
    let total: f64 = probs.iter().map(|p| p.1).sum();
    for p in probs.iter_mut() {
        p.1 /= total;
    }
    if let Some(top_p) = top_p {
        // Keep the smallest prefix whose mass reaches top_p (at least one token).
        let mut mass = 0.0;
        let keep = probs
            .iter()
            .position(|p| {
                mass += p.1;
                mass >= top_p as f64
            })
            .map_or(probs.len(), |i| i + 1);
        probs.truncate(keep);
        let total: f64 = probs.iter().map(|p| p.1).sum();
        for p in probs.iter_mut() {
            p.1 /= total;
        }
    }
    probs
}
