//! Rotary tables on the host, as transformers 5.23 computes them: inverse frequencies (default
//! or YaRN), the YaRN attention factor that scales cos and sin, and the softmax scale (with
//! DeepSeek's `mscale_all_dim` correction).

use crate::error::{Error, Result};
use crate::model::config::{Arch, ModelConfig, RopeConfig};

/// 0.1 · mscale · ln(scale) + 1 for scale > 1 (YaRN's magnitude correction).
fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

impl RopeConfig {
    fn is_yarn(&self) -> bool {
        self.rope_type == "yarn"
    }

    /// [dim / 2] inverse frequencies, rounded to f32 as torch stores them.
    pub fn inv_freq(&self) -> Vec<f32> {
        let dim = self.dim as f64;
        let base = self.theta;
        let half = self.dim / 2;
        let plain: Vec<f64> = (0..half)
            .map(|i| 1.0 / base.powf(2.0 * i as f64 / dim))
            .collect();
        if !self.is_yarn() {
            return plain.iter().map(|f| *f as f32).collect();
        }
        // YaRN: interpolate the low frequencies by `factor`, keep the high ones, with a linear
        // ramp between the dimensions that make beta_slow and beta_fast turns in the original
        // context.
        let original = self.original_max_position_embeddings as f64;
        let correction_dim = |rotations: f64| {
            dim * (original / (rotations * 2.0 * std::f64::consts::PI)).ln() / (2.0 * base.ln())
        };
        let (mut low, mut high) = (
            correction_dim(self.beta_fast),
            correction_dim(self.beta_slow),
        );
        if self.truncate {
            low = low.floor();
            high = high.ceil();
        }
        let low = low.max(0.0);
        let mut high = high.min(dim - 1.0);
        if low == high {
            high += 0.001;
        }
        plain
            .iter()
            .enumerate()
            .map(|(i, extrapolation)| {
                let ramp = ((i as f64 - low) / (high - low)).clamp(0.0, 1.0);
                let keep = 1.0 - ramp;
                let interpolation = extrapolation / self.factor;
                (interpolation * (1.0 - keep) + extrapolation * keep) as f32
            })
            .collect()
    }

    /// The factor cos and sin are multiplied by (1 unless YaRN).
    pub fn attention_factor(&self) -> f64 {
        if !self.is_yarn() {
            return 1.0;
        }
        if let Some(f) = self.attention_factor {
            return f;
        }
        match (self.mscale, self.mscale_all_dim) {
            (Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                yarn_mscale(self.factor, m) / yarn_mscale(self.factor, all)
            }
            _ => yarn_mscale(self.factor, 1.0),
        }
    }

    /// [positions, dim / 2] (cos, sin) pairs of positions 0..positions, times the attention
    /// factor. The angle is the f32 product position · inv_freq, as in transformers.
    pub fn table(&self, positions: usize) -> Vec<[f32; 2]> {
        let inv = self.inv_freq();
        let scale = self.attention_factor();
        let mut out = Vec::with_capacity(positions * inv.len());
        for p in 0..positions {
            for f in &inv {
                let angle = (p as f32 * f) as f64;
                out.push([
                    (angle.cos() as f32 * scale as f32),
                    (angle.sin() as f32 * scale as f32),
                ]);
            }
        }
        out
    }
}

/// The factor q · k is multiplied by: head_dim^-½ (DeepSeek: qk_head_dim^-½ · mscale² when
/// YaRN has `mscale_all_dim`).
pub fn softmax_scale(cfg: &ModelConfig) -> Result<f32> {
    let a = &cfg.attention;
    let qk_dim = match a.mla {
        Some(m) => m.qk_nope_head_dim + m.qk_rope_head_dim,
        None => a.head_dim,
    };
    if qk_dim == 0 {
        return Err(Error::config("head_dim", "must be positive"));
    }
    let mut scale = (qk_dim as f64).powf(-0.5);
    let deepseek = matches!(cfg.arch, Arch::DeepseekV2 | Arch::DeepseekV3);
    if deepseek
        && cfg.rope.is_yarn()
        && let Some(all) = cfg.rope.mscale_all_dim.filter(|m| *m != 0.0)
    {
        let m = yarn_mscale(cfg.rope.factor, all);
        scale *= m * m;
    }
    Ok(scale as f32)
}
