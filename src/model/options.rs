//! How a [`Model`](crate::model::Model) is built: context length, step size, weight formats.

use crate::error::{Error, Result};
use crate::kernels::attention::SplitKv;
use crate::kernels::matmul::{ExpertFormat, WeightFormat};
use crate::model::checkpoint::Checkpoint;
use crate::model::config::ModelConfig;
use crate::model::expert_loading::native_expert_formats;
use crate::moe::budget::ResidencyOptions;

/// Build options of a [`Model`](crate::model::Model). `Default` gives f32 weights (experts in
/// the checkpoint's own format: MXFP4 for a gpt-oss MXFP4 release), a context of
/// min(max_position_embeddings, 4096) and prefill steps of up to 256 tokens.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelOptions {
    /// KV-cache length (prompt + generated tokens); None = min(max_position_embeddings, 4096).
    pub max_context: Option<usize>,
    /// Most tokens one forward step processes; longer prompts are prefilled in steps of this
    /// size. Activation buffers (and each MoE layer's routing buffers) scale with it.
    pub max_batch: usize,
    /// Most rows of logits one call can return ([`Logits::All`](crate::model::Logits)).
    pub max_logit_rows: usize,
    /// Storage of routed and shared expert weights; int8, int4, mxfp4 and the GGUF formats
    /// (`WeightFormat::GGUF`, by round-to-nearest quantisers) are quantised at load
    /// (and at each expert-cache upload) from the checkpoint's weights, except that an MXFP4
    /// checkpoint's experts go to mxfp4 as they are. None: the checkpoint's own format
    /// ([`native_expert_formats`](crate::model::expert_loading::native_expert_formats)).
    pub expert_format: Option<WeightFormat>,
    /// The gate/up and down formats of each decoder layer's experts (the entries of dense
    /// layers are not used), where they differ by layer or matrix: what a loader that reads
    /// them from the file sets. Excludes `expert_format`.
    pub expert_formats: Option<Vec<ExpertFormat>>,
    /// Storage of attention, dense-MLP and LM-head weights. The CLI keeps these f32; the
    /// quantised formats run here too, but their error is measured on experts only.
    pub dense_format: WeightFormat,
    /// How many routed experts live in VRAM (all by default when they fit), the cache policy
    /// and next-layer prefetch.
    pub residency: ResidencyOptions,
    /// Read every step's expert ids back into the statistics of layers with all experts
    /// resident (which otherwise read nothing back): one small copy per MoE layer and step.
    /// Expert-cache layers always record their own.
    pub routing_stats: bool,
    /// When decode steps split the KV cache over workgroups (flash-decoding);
    /// [`SplitKv::OFF`] keeps one thread per (token, head).
    pub split_kv: SplitKv,
    /// Sequences held at once, each with its own KV cache of `max_context` positions:
    /// [`Model::decode`](crate::model::Model::decode) advances several in one batched step.
    pub sequences: usize,
}

impl Default for ModelOptions {
    fn default() -> Self {
        Self {
            max_context: None,
            max_batch: 256,
            max_logit_rows: 1,
            expert_format: None,
            expert_formats: None,
            dense_format: WeightFormat::F32,
            residency: ResidencyOptions::default(),
            routing_stats: false,
            split_kv: SplitKv::default(),
            sequences: 1,
        }
    }
}

/// Options with every default filled in and checked against the config.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Resolved {
    /// KV cache positions.
    pub context: usize,
    /// Most tokens per forward step.
    pub batch: usize,
    /// Most rows of logits one forward returns (at least one per sequence).
    pub logit_rows: usize,
    /// Sequences, each with its own KV cache of `context` positions.
    pub sequences: usize,
}

/// Dispatch grids put tokens on the y axis, which allows 65535 workgroups.
const MAX_BATCH: usize = 65535;

impl ModelOptions {
    /// The expert format of each decoder layer of `cfg` (`ckpt`'s): the per-layer formats
    /// asked for, else the one format asked for, or the checkpoint's own, in every layer.
    pub fn expert_formats(
        &self,
        ckpt: &Checkpoint,
        cfg: &ModelConfig,
    ) -> Result<Vec<ExpertFormat>> {
        match (&self.expert_formats, self.expert_format) {
            (Some(_), Some(f)) => Err(Error::input(format!(
                "expert_format {f} and per-layer expert_formats are both set; set one"
            ))),
            (Some(formats), None) if formats.len() != cfg.layers => Err(Error::input(format!(
                "expert_formats has {} entries for a model of {} layers",
                formats.len(),
                cfg.layers
            ))),
            (Some(formats), None) => Ok(formats.clone()),
            (None, Some(f)) => Ok(vec![ExpertFormat::uniform(f); cfg.layers]),
            (None, None) => native_expert_formats(ckpt, cfg),
        }
    }

    /// The split-KV policy for KV caches of `context` positions: off where no query can see
    /// `min_keys` keys, which spares the partials and pipelines splitting needs. Decode steps
    /// of one token per sequence split.
    pub fn split_kv_for(&self, context: usize) -> SplitKv {
        if context < self.split_kv.min_keys {
            SplitKv::OFF
        } else {
            SplitKv {
                max_tokens: self.split_kv.max_tokens.max(self.sequences),
                ..self.split_kv
            }
        }
    }

    /// Fills in the defaults and checks the options against `cfg`.
    pub fn resolve(&self, cfg: &ModelConfig) -> Result<Resolved> {
        let context = self.max_context.unwrap_or(cfg.max_positions.min(4096));
        if context == 0 || context > cfg.max_positions {
            return Err(Error::input(format!(
                "max_context {context} must be between 1 and max_position_embeddings = {}",
                cfg.max_positions
            )));
        }
        if self.max_batch == 0 || self.max_batch > MAX_BATCH {
            return Err(Error::input(format!(
                "max_batch {} must be between 1 and {MAX_BATCH}",
                self.max_batch
            )));
        }
        if self.max_logit_rows == 0 || self.max_logit_rows > self.max_batch {
            return Err(Error::input(format!(
                "max_logit_rows {} must be between 1 and max_batch = {}",
                self.max_logit_rows, self.max_batch
            )));
        }
        let batch = self.max_batch.min(context);
        if self.sequences == 0 || self.sequences > batch {
            return Err(Error::input(format!(
                "sequences {} must be between 1 and max_batch = {batch} (one decode step holds \
                 a token of each)",
                self.sequences
            )));
        }
        Ok(Resolved {
            context,
            batch,
            logit_rows: self.max_logit_rows.min(context).max(self.sequences),
            sequences: self.sequences,
        })
    }
}
