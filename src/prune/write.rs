//! Writes a pruned checkpoint in the source's own format: expert count updated in config.json,
//! router rows (and correction biases) of dropped experts removed, experts renumbered, every
//! other tensor byte-for-byte unchanged, and the shard layout kept.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use half::{bf16, f16};
use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::checkpoint::{Checkpoint, TensorEntry};
use crate::model::config::{Arch, ModelConfig};
use crate::model::safetensors_file::write_safetensors;
use crate::prune::plan::{LayerPlan, PrunePlan};
use crate::spec::weights::ExpertWeights;

/// New weights for the kept experts of a pruned checkpoint, by layer: merged or recovered
/// expert weights, and recovered router rows. What is not here is copied from the source.
#[derive(Debug, Default)]
pub struct Replacements {
    /// layer → kept expert (original id) → its weights.
    pub experts: BTreeMap<usize, BTreeMap<usize, ExpertWeights>>,
    /// layer → router rows of the kept experts, [kept, hidden].
    pub routers: BTreeMap<usize, Vec<f32>>,
}

/// The config.json key holding the routed expert count, per architecture family.
const EXPERT_COUNT_KEYS: [&str; 3] = ["num_local_experts", "num_experts", "n_routed_experts"];

/// Per-layer expert counts when they differ between layers (a moe-gpu extension).
pub const LAYER_EXPERTS_KEY: &str = "moe_gpu_experts_per_layer";

fn encode(dtype: Dtype, v: &[f32], name: &str) -> Result<Vec<u8>> {
    Ok(match dtype {
        Dtype::F32 => bytemuck::cast_slice(v).to_vec(),
        Dtype::F16 => v
            .iter()
            .flat_map(|x| f16::from_f32(*x).to_le_bytes())
            .collect(),
        Dtype::BF16 => v
            .iter()
            .flat_map(|x| bf16::from_f32(*x).to_le_bytes())
            .collect(),
        other => {
            return Err(Error::tensor(
                name,
                format!("cannot write new weights as {other:?}"),
            ));
        }
    })
}

/// A router's weight, after the MLP prefix, per architecture family.
const ROUTER_WEIGHTS: [&str; 2] = ["gate.weight", "router.weight"];
/// Per-expert router vectors that are pruned with its rows.
const ROUTER_BIASES: [&str; 2] = ["router.bias", "gate.e_score_correction_bias"];

/// The dtypes the checkpoint stores MoE layer `layer`'s router weight and routed experts in:
/// what recovered rows and experts are written as.
pub fn stored_dtypes(ckpt: &Checkpoint, cfg: &ModelConfig, layer: usize) -> Result<(Dtype, Dtype)> {
    let prefix = cfg.arch.mlp_prefix(layer);
    let first = |names: Vec<String>, what: &str| -> Result<Dtype> {
        let name = names
            .into_iter()
            .find(|n| ckpt.entry(n).is_ok())
            .ok_or_else(|| Error::input(format!("layer {layer} has no {what}")))?;
        Ok(ckpt.entry(&name)?.dtype)
    };
    let routers = ROUTER_WEIGHTS
        .iter()
        .map(|n| format!("{prefix}{n}"))
        .collect();
    let experts_prefix = format!("{prefix}experts.");
    let mut experts: Vec<String> = ckpt
        .names()
        .filter(|n| n.starts_with(&experts_prefix))
        .map(str::to_string)
        .collect();
    experts.sort();
    let (router, experts) = (
        first(routers, "router weight")?,
        first(experts, "expert tensors")?,
    );
    Ok((router, experts))
}

/// What a value becomes when written as `dtype` and read back.
pub fn stored_value(dtype: Dtype) -> Result<fn(f32) -> f32> {
    Ok(match dtype {
        Dtype::F32 => |x| x,
        Dtype::F16 => |x| f16::from_f32(x).to_f32(),
        Dtype::BF16 => |x| bf16::from_f32(x).to_f32(),
        other => {
            return Err(Error::input(format!(
                "recovered weights cannot be written as {other:?}"
            )));
        }
    })
}

/// Rows `keep` of a tensor whose first axis is the expert axis.
fn take_rows(e: &TensorEntry, bytes: &[u8], keep: &[usize]) -> (Vec<usize>, Vec<u8>) {
    let per = bytes.len() / e.shape[0].max(1);
    let data = keep
        .iter()
        .flat_map(|&r| bytes[r * per..(r + 1) * per].iter().copied())
        .collect();
    let mut shape = e.shape.clone();
    shape[0] = keep.len();
    (shape, data)
}

/// Which matrix of an expert a per-expert tensor name holds.
fn per_expert_matrix<'a>(arch: Arch, proj: &str, w: &'a ExpertWeights) -> Option<&'a Vec<f32>> {
    match (arch, proj) {
        (Arch::Mixtral, "w1.weight") | (_, "gate_proj.weight") => Some(&w.gate),
        (Arch::Mixtral, "w3.weight") | (_, "up_proj.weight") => Some(&w.up),
        (Arch::Mixtral, "w2.weight") | (_, "down_proj.weight") => Some(&w.down),
        _ => None,
    }
}

/// One expert's slice of a fused gpt-oss tensor, rebuilt from merged weights.
fn fused_slice(kind: &str, w: &ExpertWeights, h: usize, i: usize) -> Option<Vec<f32>> {
    let zeros = |n| vec![0.0; n];
    match kind {
        "gate_up_proj" => Some(
            (0..h)
                .flat_map(|hh| (0..i).flat_map(move |ii| [w.gate[ii * h + hh], w.up[ii * h + hh]]))
                .collect(),
        ),
        "gate_up_proj_bias" => {
            let g = w.gate_bias.clone().unwrap_or_else(|| zeros(i));
            let u = w.up_bias.clone().unwrap_or_else(|| zeros(i));
            Some(g.iter().zip(&u).flat_map(|(a, b)| [*a, *b]).collect())
        }
        "down_proj" => Some(
            (0..i)
                .flat_map(|ii| (0..h).map(move |hh| w.down[hh * i + ii]))
                .collect(),
        ),
        "down_proj_bias" => Some(w.down_bias.clone().unwrap_or_else(|| zeros(h))),
        _ => None,
    }
}

/// What happens to one tensor of a pruned layer.
enum Rewrite {
    Unchanged,
    /// A removed expert's tensor.
    Drop,
    Replace(Vec<usize>, Vec<u8>),
}

/// What becomes of tensor `name` of MoE layer `lp`.
fn rewrite(
    cfg: &ModelConfig,
    lp: &LayerPlan,
    new: &Replacements,
    name: &str,
    e: &TensorEntry,
    bytes: &[u8],
) -> Result<Rewrite> {
    let p = cfg.arch.mlp_prefix(lp.layer);
    let Some(rest) = name.strip_prefix(&p) else {
        return Ok(Rewrite::Unchanged);
    };
    if ROUTER_WEIGHTS.contains(&rest) || ROUTER_BIASES.contains(&rest) {
        let (shape, data) = take_rows(e, bytes, &lp.keep);
        return Ok(match new.routers.get(&lp.layer) {
            Some(rows) if ROUTER_WEIGHTS.contains(&rest) => {
                Rewrite::Replace(shape, encode(e.dtype, rows, name)?)
            }
            _ => Rewrite::Replace(shape, data),
        });
    }
    let merged = new.experts.get(&lp.layer);
    let Some(expert_part) = rest.strip_prefix("experts.") else {
        return Ok(Rewrite::Unchanged);
    };
    let (h, i) = (cfg.hidden, cfg.moe.inter);
    // Per-expert tensors: experts.{id}.{proj}.weight
    if let Some((old, proj)) = expert_id(expert_part) {
        if !lp.keep.contains(&old) {
            return Ok(Rewrite::Drop);
        }
        let data = match merged.and_then(|m| m.get(&old)) {
            Some(w) => {
                let m = per_expert_matrix(cfg.arch, proj, w)
                    .ok_or_else(|| Error::tensor(name, "unknown expert projection"))?;
                encode(e.dtype, m, name)?
            }
            None => bytes.to_vec(),
        };
        return Ok(Rewrite::Replace(e.shape.clone(), data));
    }
    // Fused tensors with the expert axis first.
    let (shape, mut data) = take_rows(e, bytes, &lp.keep);
    if let Some(m) = merged {
        let per = data.len() / lp.keep.len().max(1);
        for (new, old) in lp.keep.iter().enumerate() {
            if let Some(w) = m.get(old) {
                let values = fused_slice(expert_part, w, h, i).ok_or_else(|| {
                    Error::tensor(
                        name,
                        "merging is not supported for MXFP4 experts; use frequency or reap",
                    )
                })?;
                data[new * per..(new + 1) * per].copy_from_slice(&encode(e.dtype, &values, name)?);
            }
        }
    }
    Ok(Rewrite::Replace(shape, data))
}

/// `{id}.{rest}` of a per-expert tensor name.
fn expert_id(s: &str) -> Option<(usize, &str)> {
    let (id, rest) = s.split_once('.')?;
    Some((id.parse().ok()?, rest))
}

/// The name a per-expert tensor gets after renumbering.
fn renamed(cfg: &ModelConfig, plans: &HashMap<usize, &LayerPlan>, name: &str) -> String {
    let new = layer_of(name).and_then(|layer| {
        let lp = plans.get(&layer)?;
        let prefix = format!("{}experts.", cfg.arch.mlp_prefix(layer));
        let (old, proj) = expert_id(name.strip_prefix(&prefix)?)?;
        let new = lp.keep.iter().position(|k| *k == old)?;
        Some(format!("{prefix}{new}.{proj}"))
    });
    new.unwrap_or_else(|| name.to_string())
}

fn layer_of(name: &str) -> Option<usize> {
    name.strip_prefix("model.layers.")?
        .split('.')
        .next()?
        .parse()
        .ok()
}

/// Writes the pruned checkpoint of `src` to `out` (created if needed).
pub fn write_pruned(
    src: &Path,
    cfg: &ModelConfig,
    plan: &PrunePlan,
    new: &Replacements,
    out: &Path,
) -> Result<()> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let ckpt = Checkpoint::open(src)?;
    if ckpt.gguf().is_some() {
        return Err(Error::input(format!(
            "{}: pruning writes Hugging Face checkpoints from Hugging Face checkpoints; this is a \
             GGUF file",
            src.display()
        )));
    }
    let plans: HashMap<usize, &LayerPlan> = plan.layers.iter().map(|l| (l.layer, l)).collect();
    let mut weight_map = serde_json::Map::new();
    let mut total_size = 0u64;
    let shard_paths: Vec<std::path::PathBuf> =
        ckpt.shard_paths().iter().map(|p| p.to_path_buf()).collect();
    for (file, path) in shard_paths.iter().enumerate() {
        let mut names: Vec<&str> = ckpt
            .names()
            .filter(|n| ckpt.entry(n).ok().map(|e| e.file) == Some(file))
            .collect();
        names.sort();
        let mut owned: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
        let mut borrowed: Vec<(String, Dtype, Vec<usize>, &[u8])> = Vec::new();
        for name in names {
            let e = ckpt.entry(name)?;
            let bytes = ckpt.bytes(name)?;
            let new = match layer_of(name).and_then(|l| plans.get(&l)) {
                Some(lp) => rewrite(cfg, lp, new, name, e, bytes)?,
                None => Rewrite::Unchanged,
            };
            match new {
                Rewrite::Drop => {}
                Rewrite::Replace(shape, data) => {
                    owned.push((renamed(cfg, &plans, name), e.dtype, shape, data))
                }
                Rewrite::Unchanged => {
                    borrowed.push((name.to_string(), e.dtype, e.shape.clone(), bytes))
                }
            }
        }
        let file_name = path
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let mut views: Vec<(String, TensorView)> = Vec::new();
        for (n, d, s, b) in &owned {
            views.push((
                n.clone(),
                TensorView::new(*d, s.clone(), b).map_err(|e| Error::tensor(n, e.to_string()))?,
            ));
        }
        for (n, d, s, b) in &borrowed {
            views.push((
                n.clone(),
                TensorView::new(*d, s.clone(), b).map_err(|e| Error::tensor(n, e.to_string()))?,
            ));
        }
        for (n, v) in &views {
            weight_map.insert(n.clone(), Value::String(file_name.clone()));
            total_size += v.data().len() as u64;
        }
        let dst = out.join(&file_name);
        write_safetensors(views, ckpt.shard_metadata(file).cloned(), &dst)?;
    }
    if src.join("model.safetensors.index.json").is_file() {
        let index = serde_json::json!({ "metadata": { "total_size": total_size }, "weight_map": weight_map });
        let p = out.join("model.safetensors.index.json");
        std::fs::write(&p, serde_json::to_string_pretty(&index).unwrap_or_default())
            .map_err(|e| Error::io(&p, e))?;
    }
    write_config(src, cfg, plan, out)?;
    copy_other_files(src, out)
}

fn write_config(src: &Path, cfg: &ModelConfig, plan: &PrunePlan, out: &Path) -> Result<()> {
    let path = src.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    let mut c: Value =
        serde_json::from_str(&text).map_err(|e| Error::config("config.json", e.to_string()))?;
    let counts = plan.counts();
    let max = counts
        .iter()
        .copied()
        .max()
        .unwrap_or(cfg.moe.routing.experts);
    let obj = c
        .as_object_mut()
        .ok_or_else(|| Error::config("config.json", "is not an object"))?;
    for key in EXPERT_COUNT_KEYS {
        if obj.contains_key(key) {
            obj.insert(key.to_string(), max.into());
        }
    }
    if counts.iter().any(|n| *n != max) {
        let per_layer: Vec<usize> = (0..cfg.layers)
            .map(|l| {
                plan.layers
                    .iter()
                    .find(|p| p.layer == l)
                    .map_or(0, |p| p.keep.len())
            })
            .collect();
        obj.insert(LAYER_EXPERTS_KEY.to_string(), per_layer.into());
    }
    let dst = out.join("config.json");
    std::fs::write(&dst, serde_json::to_string_pretty(&c).unwrap_or_default())
        .map_err(|e| Error::io(&dst, e))
}

/// Tokenizer, generation config and anything else that is not weights or config.
fn copy_other_files(src: &Path, out: &Path) -> Result<()> {
    for entry in std::fs::read_dir(src).map_err(|e| Error::io(src, e))? {
        let p = entry.map_err(|e| Error::io(src, e))?.path();
        let name = p
            .file_name()
            .map(|f| f.to_string_lossy().to_string())
            .unwrap_or_default();
        let skip = name == "config.json"
            || name.ends_with(".safetensors")
            || name == "model.safetensors.index.json";
        if p.is_file() && !skip {
            std::fs::copy(&p, out.join(&name)).map_err(|e| Error::io(&p, e))?;
        }
    }
    Ok(())
}
