//! `moe synth`: Hugging Face checkpoints with random weights at the real shapes of published
//! MoE models (config.json with their values, tensors named, shaped and sharded as released),
//! for testing and benchmarking without downloading them. Weights are N(0, 0.02²) like the
//! models' initialisation, norms 1, and routers scaled so that routing is peaked as in trained
//! models ([`tensors::ROUTER_LOGIT_STD`]). The same seed gives the same bytes.

pub mod presets;
pub mod tensors;
pub mod values;
pub mod writer;

use std::path::Path;

use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::synth::presets::{SynthDtype, preset_config};
use crate::model::synth::tensors::{TensorPlan, tensor_plan};
use crate::model::synth::values::values_f32;
use crate::model::synth::writer::{ShardWritten, index, shard_names, shards, write_shard};

/// A checkpoint to synthesize: its config.json and every tensor.
#[derive(Debug, Clone)]
pub struct SynthPlan {
    /// config.json.
    pub config: Value,
    /// Every tensor, in file order.
    pub tensors: Vec<TensorPlan>,
    /// Seed of the random values.
    pub seed: u64,
}

impl SynthPlan {
    /// The checkpoint of preset `name` (see [`presets::PRESETS`]) with `layers` decoder layers
    /// (default: the real count) and experts as `dtype` (default: as released).
    pub fn preset(
        name: &str,
        layers: Option<usize>,
        dtype: Option<SynthDtype>,
        seed: u64,
    ) -> Result<Self> {
        Self::from_config(preset_config(name, layers, dtype)?, seed)
    }

    /// The checkpoint of any supported config.json (MXFP4 experts when its
    /// `quantization_config` says so).
    pub fn from_config(config: Value, seed: u64) -> Result<Self> {
        let tensors = tensor_plan(&config)?;
        Ok(Self {
            config,
            tensors,
            seed,
        })
    }

    /// Bytes of tensor data.
    pub fn bytes(&self) -> u64 {
        self.tensors.iter().map(TensorPlan::bytes).sum()
    }

    /// Model parameters (MXFP4 blocks count two per byte, their scales none).
    pub fn params(&self) -> u64 {
        self.tensors.iter().map(TensorPlan::params).sum()
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Result<&TensorPlan> {
        self.tensors
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| Error::tensor(name, "is not in the synthetic checkpoint"))
    }

    /// The values tensor `name` is written with, as f32.
    pub fn values(&self, name: &str) -> Result<Vec<f32>> {
        values_f32(self.tensor(name)?, self.seed)
    }

    /// Writes config.json and the safetensors files into `dir` (created if needed), in shards
    /// of at most `shard_bytes` of data (a larger tensor gets its own), with
    /// `model.safetensors.index.json` when there are several; `progress` hears of each file
    /// when it is written. Returns the files.
    pub fn write(
        &self,
        dir: &Path,
        shard_bytes: u64,
        mut progress: impl FnMut(&ShardWritten),
    ) -> Result<Vec<ShardWritten>> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let json = |name: &str, value: &Value| {
            let path = dir.join(name);
            let text = serde_json::to_string_pretty(value)
                .map_err(|e| Error::input(format!("{name}: {e}")))?;
            std::fs::write(&path, text + "\n").map_err(|e| Error::io(&path, e))
        };
        json("config.json", &self.config)?;
        let ranges = shards(&self.tensors, shard_bytes);
        let names = shard_names(ranges.len());
        let index_path = dir.join("model.safetensors.index.json");
        if ranges.len() > 1 {
            json(
                "model.safetensors.index.json",
                &index(&self.tensors, &ranges, &names),
            )?;
        } else if index_path.is_file() {
            // An index left by an earlier run would point at shards this one does not write.
            std::fs::remove_file(&index_path).map_err(|e| Error::io(&index_path, e))?;
        }
        let mut written = Vec::with_capacity(ranges.len());
        for (range, name) in ranges.iter().zip(&names) {
            let w = write_shard(&dir.join(name), &self.tensors[range.clone()], self.seed)?;
            progress(&w);
            written.push(w);
        }
        Ok(written)
    }
}
