//! Streaming safetensors output: tensors are split into shards like the Hugging Face hub's
//! (`model-00001-of-0000N.safetensors` up to a size, with `model.safetensors.index.json`, or one
//! `model.safetensors`), and each file's header is written from the plan before its data is
//! generated and written a chunk at a time, so no tensor is ever whole in memory.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::model::synth::tensors::TensorPlan;
use crate::model::synth::values::generate;

/// The shard size of the hub's checkpoints (transformers' `max_shard_size="5GB"`).
pub const SHARD_BYTES: u64 = 5_000_000_000;

/// One file written.
#[derive(Debug, Clone, PartialEq)]
pub struct ShardWritten {
    /// Its path.
    pub path: PathBuf,
    /// Bytes of tensor data in it (the file adds its header).
    pub bytes: u64,
    /// Tensors in it.
    pub tensors: usize,
    /// Seconds it took to generate and write.
    pub seconds: f64,
}

/// Consecutive runs of `tensors` whose data fits in `max_bytes` (a larger tensor gets a shard
/// of its own), as ranges of indices.
pub fn shards(tensors: &[TensorPlan], max_bytes: u64) -> Vec<std::ops::Range<usize>> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, t) in tensors.iter().enumerate() {
        if i > start && bytes + t.bytes() > max_bytes {
            out.push(start..i);
            (start, bytes) = (i, 0);
        }
        bytes += t.bytes();
    }
    if start < tensors.len() {
        out.push(start..tensors.len());
    }
    out
}

/// The file names of `n` shards: `model.safetensors` alone, else the hub's numbered names.
pub fn shard_names(n: usize) -> Vec<String> {
    if n == 1 {
        return vec!["model.safetensors".into()];
    }
    (1..=n)
        .map(|i| format!("model-{i:05}-of-{n:05}.safetensors"))
        .collect()
}

/// The safetensors header of `tensors` stored back to back, padded with spaces to a multiple
/// of 8 bytes as the format recommends.
fn header(tensors: &[TensorPlan]) -> Result<Vec<u8>> {
    let mut map = Map::new();
    map.insert("__metadata__".into(), json!({"format": "pt"}));
    let mut at = 0u64;
    for t in tensors {
        let end = at + t.bytes();
        map.insert(
            t.name.clone(),
            json!({"dtype": t.dtype.to_string(), "shape": t.shape, "data_offsets": [at, end]}),
        );
        at = end;
    }
    let mut text = serde_json::to_vec(&Value::Object(map))
        .map_err(|e| Error::input(format!("safetensors header: {e}")))?;
    text.resize(text.len().next_multiple_of(8), b' ');
    Ok(text)
}

/// Writes `tensors` to the safetensors file `path`, generating each from `seed`.
pub fn write_shard(path: &Path, tensors: &[TensorPlan], seed: u64) -> Result<ShardWritten> {
    let start = Instant::now();
    let io = |e| Error::io(path, e);
    let file = File::create(path).map_err(io)?;
    let mut w = BufWriter::with_capacity(1 << 22, file);
    let head = header(tensors)?;
    w.write_all(&(head.len() as u64).to_le_bytes())
        .map_err(io)?;
    w.write_all(&head).map_err(io)?;
    let mut bytes = 0u64;
    for t in tensors {
        generate(t, seed, |chunk| {
            bytes += chunk.len() as u64;
            w.write_all(chunk).map_err(io)
        })?;
    }
    w.flush().map_err(io)?;
    Ok(ShardWritten {
        path: path.to_path_buf(),
        bytes,
        tensors: tensors.len(),
        seconds: start.elapsed().as_secs_f64(),
    })
}

/// `model.safetensors.index.json` of `tensors` split into `ranges` named `names`.
pub fn index(tensors: &[TensorPlan], ranges: &[std::ops::Range<usize>], names: &[String]) -> Value {
    let mut map = Map::new();
    for (range, name) in ranges.iter().zip(names) {
        for t in &tensors[range.clone()] {
            map.insert(t.name.clone(), json!(name));
        }
    }
    let total: u64 = tensors.iter().map(TensorPlan::bytes).sum();
    json!({"metadata": {"total_size": total}, "weight_map": map})
}
