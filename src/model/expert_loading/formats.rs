//! The formats a checkpoint's routed experts reach the GPU in by default (the ones that hold
//! them as they are stored), and a GGUF file's expert matrices repacked into them.

use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::kernels::gguf_formats::{pack_gguf, pack_gguf_stacked};
use crate::kernels::matmul::{ExpertFormat, WeightFormat};
use crate::model::checkpoint::Checkpoint;
use crate::model::config::{Arch, MlpKind, ModelConfig};
use crate::model::gguf_names::expert_name;
use crate::spec::weights::PackedExpert;

/// The formats a checkpoint's routed experts are stored in, per decoder layer, where the GPU
/// reads them as they are: a GGUF file's types matrix by matrix ([`gguf_expert_format`]);
/// [`WeightFormat::Mxfp4`] for a gpt-oss release with MXFP4 experts (`*_blocks` /
/// `*_scales`); else [`WeightFormat::F32`] (the checkpoint's values, widened). Dense layers'
/// entries are unused.
pub fn native_expert_formats(ckpt: &Checkpoint, cfg: &ModelConfig) -> Result<Vec<ExpertFormat>> {
    if ckpt.gguf().is_some() {
        return (0..cfg.layers)
            .map(|l| match cfg.mlp_kinds[l] {
                MlpKind::Moe => gguf_expert_format(ckpt, cfg, l),
                MlpKind::Dense => Ok(ExpertFormat::uniform(WeightFormat::F32)),
            })
            .collect();
    }
    let mxfp4 = cfg.arch == Arch::GptOss
        && cfg.moe_layers().iter().any(|&l| {
            ckpt.contains(&format!(
                "{}experts.gate_up_proj_blocks",
                cfg.arch.mlp_prefix(l)
            ))
        });
    let f = if mxfp4 {
        WeightFormat::Mxfp4
    } else {
        WeightFormat::F32
    };
    Ok(vec![ExpertFormat::uniform(f); cfg.layers])
}

/// The GPU formats that hold MoE layer `layer`'s expert matrices of a GGUF checkpoint without
/// loss ([`WeightFormat::of_gguf`]); the gate and up tensors, which the GPU holds as one
/// matrix, must share a type.
pub fn gguf_expert_format(
    ckpt: &Checkpoint,
    cfg: &ModelConfig,
    layer: usize,
) -> Result<ExpertFormat> {
    let p = format!("{}experts.0.", cfg.arch.mlp_prefix(layer));
    // The names the GGUF views are given (gguf_names), not a copy of them.
    let [g, u, d] = ["gate", "up", "down"].map(|proj| expert_name(cfg.arch, proj));
    let ty = |n: &str| -> Result<GgmlType> {
        let name = format!("{p}{n}.weight");
        match ckpt.gguf_block_bytes(&name)? {
            Some((ty, _)) => Ok(ty),
            None => Err(Error::tensor(name, "is not stored as a GGUF tensor")),
        }
    };
    let (gate, up, down) = (ty(g)?, ty(u)?, ty(d)?);
    if gate != up {
        return Err(Error::tensor(
            format!("blk.{layer}.ffn_up_exps.weight"),
            format!(
                "is {up} and the gate experts {gate}; the GPU holds gate and up as one matrix \
                 in one format, so load this file with an explicit expert format (--dtype)"
            ),
        ));
    }
    Ok(ExpertFormat {
        gate_up: WeightFormat::of_gguf(gate),
        down: WeightFormat::of_gguf(down),
    })
}

/// The gate, up and down matrices `names` (`[inter, hidden]`, `[inter, hidden]`, `[hidden,
/// inter]`) of a GGUF checkpoint repacked without loss, in the formats that hold their types;
/// `None` where they are not GGUF tensors read as stored, gate and up differ in type, or those
/// formats are not `want` (checked before any repacking).
pub(crate) fn gguf_packed(
    ckpt: &Checkpoint,
    names: &[String; 3],
    hidden: usize,
    inter: usize,
    want: Option<ExpertFormat>,
) -> Result<Option<PackedExpert>> {
    let mut blocks = Vec::with_capacity(3);
    for name in names {
        match ckpt.gguf_block_bytes(name)? {
            Some(b) => blocks.push(b),
            None => return Ok(None),
        }
    }
    let [(gate_ty, gate), (up_ty, up), (down_ty, down)] = blocks[..] else {
        return Ok(None);
    };
    let format = ExpertFormat {
        gate_up: WeightFormat::of_gguf(gate_ty),
        down: WeightFormat::of_gguf(down_ty),
    };
    if gate_ty != up_ty || want.is_some_and(|w| w != format) {
        return Ok(None);
    }
    let (_, gate_up) = pack_gguf_stacked(gate_ty, &[(gate, inter), (up, inter)], hidden)?;
    let (_, down) = pack_gguf(down_ty, down, hidden, inter)?;
    Ok(Some(PackedExpert {
        format,
        gate_up,
        down,
        bias: None,
    }))
}
