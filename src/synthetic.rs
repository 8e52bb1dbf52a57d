//! Deterministic random weights: the built-in demo model and test inputs.

use std::sync::Arc;

use crate::spec::layer_spec::Glu;
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::weights::{ExpertWeights, MoeWeights, SharedExpert};

/// SplitMix64: small, fast and reproducible across platforms.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x9e37_79b9_7f4a_7c15)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform integer in 0..n.
    pub fn below(&mut self, n: usize) -> usize {
        (self.uniform() * n as f64) as usize % n.max(1)
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = self.uniform().max(1e-300);
        let u2 = self.uniform();
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// `n` normal values scaled by `std`.
    pub fn normals(&mut self, n: usize, std: f32) -> Vec<f32> {
        (0..n).map(|_| self.normal() * std).collect()
    }
}

/// Random SwiGLU weights with the usual 1/√fan-in scale.
pub fn random_mlp(rng: &mut Rng, hidden: usize, inter: usize, bias: bool) -> ExpertWeights {
    let si = 1.0 / (hidden as f32).sqrt();
    let so = 1.0 / (inter as f32).sqrt();
    let mut b = |n: usize| bias.then(|| rng.normals(n, 0.1));
    let gate_bias = b(inter);
    let up_bias = b(inter);
    let down_bias = b(hidden);
    ExpertWeights {
        gate: rng.normals(inter * hidden, si),
        up: rng.normals(inter * hidden, si),
        down: rng.normals(hidden * inter, so),
        gate_bias,
        up_bias,
        down_bias,
    }
}

/// Random weights for every tensor `spec` needs. The router is scaled so that logits are
/// O(1), as in trained models.
pub fn random_moe_weights(spec: &MoeLayerSpec, seed: u64) -> MoeWeights {
    let mut rng = Rng::new(seed);
    let r = &spec.routing;
    let (h, e) = (spec.hidden, r.experts);
    let router = rng.normals(e * h, 2.0 / (h as f32).sqrt());
    let router_bias = r.router_bias.then(|| rng.normals(e, 0.5));
    let correction = r.correction_bias.then(|| rng.normals(e, 0.15));
    let bias = spec.expert_bias || matches!(spec.glu, Glu::ClampedSwiglu { .. });
    let experts: Vec<ExpertWeights> = (0..e)
        .map(|_| random_mlp(&mut rng, h, spec.inter, bias))
        .collect();
    let shared = spec.shared_inter.map(|si| SharedExpert {
        mlp: random_mlp(&mut rng, h, si, bias),
        gate: r
            .shared_gate
            .then(|| rng.normals(h, 1.0 / (h as f32).sqrt())),
        packed: None,
    });
    MoeWeights {
        router,
        router_bias,
        correction,
        shared,
        experts: Arc::new(experts),
    }
}
