//! Rotary embeddings as transformers 5.23 computes them: the settings from config.json (with
//! transformers' defaults), inverse frequencies (default or YaRN), the YaRN attention factor
//! that scales cos and sin, the host-side cos/sin table, and the softmax scale (with DeepSeek's
//! `mscale_all_dim` correction).

use crate::error::{Error, Result};
use crate::model::arch::Arch;
use crate::model::json::Json;

/// Rotary embedding settings, from `rope_parameters` or the older `rope_theta` / `rope_scaling`,
/// with transformers' defaults filled in (see `model::rope` for the tables they give).
#[derive(Debug, Clone, PartialEq)]
pub struct RopeConfig {
    /// Base of the rotation frequencies (`rope_theta`).
    pub theta: f64,
    /// `default` or `yarn`.
    pub rope_type: String,
    /// Rotated columns per head: `head_dim`, or `qk_rope_head_dim` for MLA.
    pub dim: usize,
    /// YaRN scaling factor; when absent, max_position_embeddings / original_max_position_embeddings.
    pub factor: f64,
    /// YaRN pre-training context: the top-level field, else the rope parameter, else
    /// max_position_embeddings (as transformers' `standardize_rope_params`).
    pub original_max_position_embeddings: usize,
    /// YaRN `beta_fast`.
    pub beta_fast: f64,
    /// YaRN `beta_slow`.
    pub beta_slow: f64,
    /// YaRN `mscale`.
    pub mscale: Option<f64>,
    /// YaRN `mscale_all_dim`.
    pub mscale_all_dim: Option<f64>,
    /// YaRN `attention_factor`, overriding the one derived from `mscale`.
    pub attention_factor: Option<f64>,
    /// YaRN `truncate`: round the correction range to whole dimensions.
    pub truncate: bool,
    /// Rotate interleaved pairs (DeepSeek) rather than halves.
    pub interleave: bool,
}

/// 0.1 · mscale · ln(scale) + 1 for scale > 1 (YaRN's magnitude correction).
pub(crate) fn yarn_mscale(scale: f64, mscale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * mscale * scale.ln() + 1.0
    }
}

impl RopeConfig {
    pub(crate) fn is_yarn(&self) -> bool {
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

pub(crate) fn rope_config(
    c: &Json,
    arch: Arch,
    dim: usize,
    max_positions: usize,
) -> Result<RopeConfig> {
    // transformers 5 writes `rope_parameters`; older configs use `rope_theta` + `rope_scaling`.
    let params = c.get("rope_parameters").or_else(|| c.get("rope_scaling"));
    let p = params.map(Json);
    let field = |name: &str| -> Result<Option<f64>> {
        match &p {
            Some(p) => p.opt_f64(name),
            None => Ok(None),
        }
    };
    let theta = match field("rope_theta")? {
        Some(t) => t,
        None => c.f64_or("rope_theta", 10000.0)?,
    };
    if theta.is_nan() || theta <= 1.0 {
        return Err(Error::config(
            "rope_theta",
            format!("{theta} must be greater than 1"),
        ));
    }
    let rope_type = match &p {
        Some(p) => p
            .opt_str("rope_type")?
            .or(p.opt_str("type")?)
            .unwrap_or("default")
            .to_string(),
        None => "default".to_string(),
    };
    if rope_type != "default" && rope_type != "yarn" {
        return Err(Error::config(
            "rope_parameters.rope_type",
            format!("`{rope_type}` is not supported (default, yarn)"),
        ));
    }
    let partial = c
        .opt_f64("partial_rotary_factor")?
        .or(field("partial_rotary_factor")?);
    if let Some(f) = partial.filter(|f| *f != 1.0) {
        return Err(Error::config(
            "partial_rotary_factor",
            format!("{f} is not supported (only 1.0)"),
        ));
    }
    if dim == 0 || !dim.is_multiple_of(2) {
        return Err(Error::config(
            "head_dim",
            format!("the rotary dimension {dim} must be even and positive"),
        ));
    }
    let truncate = match &p {
        Some(p) => p.bool_or("truncate", true)?,
        None => true,
    };
    // DeepSeek-V2 always rotates interleaved pairs (complex multiplication); V3 does unless
    // `rope_interleave` is false, and then rotates halves like everyone else.
    let interleave = match arch {
        Arch::DeepseekV2 => true,
        Arch::DeepseekV3 => c.bool_or("rope_interleave", true)?,
        _ => false,
    };
    let original = match c.opt_usize("original_max_position_embeddings")? {
        Some(v) => v,
        None => field("original_max_position_embeddings")?.map_or(max_positions, |v| v as usize),
    };
    let factor = match field("factor")? {
        Some(f) => f,
        None if rope_type == "yarn" => max_positions as f64 / original.max(1) as f64,
        None => 1.0,
    };
    if rope_type == "yarn" && (original == 0 || factor.is_nan() || factor <= 0.0) {
        return Err(Error::config(
            "rope_parameters.factor",
            format!(
                "YaRN needs a positive factor ({factor}) and original_max_position_embeddings ({original})"
            ),
        ));
    }
    // transformers reads `beta_fast or 32`: a zero means the default too.
    let beta = |name: &str, default: f64| -> Result<f64> {
        Ok(field(name)?.filter(|b| *b != 0.0).unwrap_or(default))
    };
    Ok(RopeConfig {
        theta,
        dim,
        factor,
        original_max_position_embeddings: original,
        beta_fast: beta("beta_fast", 32.0)?,
        beta_slow: beta("beta_slow", 1.0)?,
        mscale: field("mscale")?,
        mscale_all_dim: field("mscale_all_dim")?,
        attention_factor: field("attention_factor")?,
        truncate,
        interleave,
        rope_type,
    })
}
