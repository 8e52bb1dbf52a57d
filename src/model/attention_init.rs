//! What building a layer's attention needs (checkpoint, config, scratch buffers, cache size),
//! with the helpers that standard and latent attention share, and the attention scale.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::attention::{AttentionSpec, SplitKv};
use crate::kernels::matmul::WeightFormat;
use crate::kernels::norm::{NormBuffers, NormShape, RmsNorm};
use crate::model::arch::Arch;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::ModelConfig;
use crate::model::projection::{Linear, LinearIo};
use crate::model::rope_config::yarn_mscale;
use crate::model::scratch::Scratch;

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

/// What a layer's attention needs to be built.
pub struct AttentionInit<'a> {
    pub ctx: &'a Context,
    pub ckpt: &'a Checkpoint,
    pub cfg: &'a ModelConfig,
    pub layer: usize,
    pub format: WeightFormat,
    pub scratch: &'a Scratch,
    /// Positions of each sequence's KV cache.
    pub positions: usize,
    /// Sequences, each with its own KV cache.
    pub sequences: usize,
    /// Most tokens per step.
    pub batch: usize,
    /// When decode steps split the keys.
    pub split_kv: SplitKv,
}

impl AttentionInit<'_> {
    pub fn prefix(&self) -> String {
        format!("model.layers.{}.self_attn.", self.layer)
    }

    /// A projection `{prefix}{name}` of shape [n, k] from `x` into `out`.
    pub fn linear(
        &self,
        name: &str,
        n: usize,
        k: usize,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<Linear> {
        Linear::load(
            self.ctx,
            self.ckpt,
            &format!("{}{name}", self.prefix()),
            n,
            k,
            self.format,
            LinearIo {
                x,
                x_stride: k,
                out,
                out_stride: n,
            },
        )
    }

    /// An RMSNorm with weight `{prefix}{name}` of `shape.width`.
    pub fn norm(
        &self,
        name: &str,
        shape: NormShape,
        x: &wgpu::Buffer,
        out: &wgpu::Buffer,
    ) -> Result<RmsNorm> {
        let w = self
            .ckpt
            .f32(&format!("{}{name}", self.prefix()), &[shape.width])?;
        let weight = self.ctx.storage_with(name, &w)?;
        RmsNorm::new(
            self.ctx,
            shape,
            self.cfg.rms_eps as f32,
            false,
            NormBuffers {
                delta: &self.scratch.zeros,
                x,
                weight: &weight,
                out,
            },
        )
    }

    /// The attention kernel's spec for this layer.
    pub fn spec(&self, kv_heads: usize, qk_dim: usize, v_dim: usize) -> Result<AttentionSpec> {
        let a = &self.cfg.attention;
        let sliding = a.sliding_layers.get(self.layer).copied().unwrap_or(false);
        Ok(AttentionSpec {
            heads: a.heads,
            kv_heads,
            qk_dim,
            v_dim,
            window: if sliding { a.sliding_window } else { None },
            sinks: a.sinks,
            scale: softmax_scale(self.cfg)?,
            max_tokens: self.batch,
            positions: self.positions,
            pass_keys: None,
        })
    }

    /// The split policy of this layer: off where no query can see `min_keys` keys.
    pub fn split_kv(&self, spec: &AttentionSpec) -> SplitKv {
        let keys = spec
            .window
            .map_or(self.positions, |w| w.min(self.positions));
        if keys < self.split_kv.min_keys {
            SplitKv::OFF
        } else {
            self.split_kv
        }
    }

    /// A [sequences · positions, cols] f32 cache buffer: sequence s owns rows
    /// s · positions .. (s + 1) · positions.
    pub fn cache(&self, what: &str, cols: usize) -> Result<wgpu::Buffer> {
        self.ctx.storage(
            &format!("layer {} {what} cache", self.layer),
            (self.sequences * self.positions * cols * 4) as u64,
        )
    }
}
