//! The MoE half of config.json: expert counts and widths, the routing family of each
//! architecture, and which layers are MoE.

use crate::error::{Error, Result};
use crate::kernels::matmul::Glu;
use crate::model::arch::{Arch, MlpKind};
use crate::model::json::Json;
use crate::spec::routing::{GroupScore, RoutingSpec, Scoring};

/// The MoE part shared by every MoE layer of a model.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeConfig {
    /// Routing of the MoE layers.
    pub routing: RoutingSpec,
    /// Routed expert width.
    pub inter: usize,
    /// Shared expert width, if the layers have one.
    pub shared_inter: Option<usize>,
    /// Gated activation of the experts.
    pub glu: Glu,
    /// Experts carry biases (gpt-oss).
    pub expert_bias: bool,
}

pub(crate) fn moe_config(c: &Json, arch: Arch, hidden: usize) -> Result<MoeConfig> {
    let experts = c.first_usize(&["num_local_experts", "num_experts", "n_routed_experts"])?;
    let top_k = c.usize("num_experts_per_tok")?;
    let norm = c.bool_or("norm_topk_prob", false)?;
    let mut routing = RoutingSpec::softmax(experts, top_k, norm);
    let mut glu = Glu::Silu;
    let mut expert_bias = false;
    let mut shared_inter = None;
    let inter = match arch {
        Arch::Mixtral => {
            routing.renormalize = true;
            c.usize("intermediate_size")?
        }
        Arch::Olmoe => c.usize("intermediate_size")?,
        Arch::Qwen3Moe => c.usize("moe_intermediate_size")?,
        Arch::Qwen2Moe => {
            let si = c.usize_or("shared_expert_intermediate_size", 0)?;
            if si > 0 {
                shared_inter = Some(si);
                routing.shared_gate = true;
            }
            c.usize("moe_intermediate_size")?
        }
        Arch::DeepseekV2 | Arch::DeepseekV3 => {
            let mi = c.usize("moe_intermediate_size")?;
            let ns = c.usize_or("n_shared_experts", 0)?;
            if ns > 0 {
                shared_inter = Some(mi.checked_mul(ns).ok_or_else(|| {
                    Error::config(
                        "n_shared_experts",
                        format!("{ns} shared experts of {mi} overflow the shared width"),
                    )
                })?);
            }
            routing.scale = c.f64_or("routed_scaling_factor", 1.0)? as f32;
            deepseek_routing(c, arch, &mut routing)?;
            mi
        }
        Arch::GptOss => {
            routing.scoring = Scoring::TopKThenSoftmax;
            routing.renormalize = false;
            routing.router_bias = true;
            expert_bias = true;
            glu = Glu::ClampedSwiglu {
                limit: c.f64_or("swiglu_limit", 7.0)? as f32,
                alpha: c.f64_or("swiglu_alpha", 1.702)? as f32,
            };
            c.usize("intermediate_size")?
        }
    };
    if inter == 0 {
        return Err(Error::config("moe_intermediate_size", "must be positive"));
    }
    let _ = hidden;
    routing.validate()?;
    Ok(MoeConfig {
        routing,
        inter,
        shared_inter,
        glu,
        expert_bias,
    })
}

fn deepseek_routing(c: &Json, arch: Arch, r: &mut RoutingSpec) -> Result<()> {
    let method = c.opt_str("topk_method")?;
    let scoring = c.opt_str("scoring_func")?;
    let group = |r: &mut RoutingSpec, score| -> Result<()> {
        r.group = score;
        r.n_group = c.usize("n_group")?;
        r.topk_group = c.usize("topk_group")?;
        Ok(())
    };
    match arch {
        Arch::DeepseekV2 => {
            if let Some(s) = scoring.filter(|s| *s != "softmax") {
                return Err(Error::config(
                    "scoring_func",
                    format!("`{s}` is not supported for deepseek_v2 (softmax)"),
                ));
            }
            // transformers never renormalises DeepSeek-V2 weights; real checkpoints agree.
            r.renormalize = false;
            match method.unwrap_or("greedy") {
                "greedy" => {}
                "group_limited_greedy" => group(r, GroupScore::Max)?,
                other => {
                    return Err(Error::config(
                        "topk_method",
                        format!(
                            "`{other}` is not supported for deepseek_v2 (greedy, group_limited_greedy)"
                        ),
                    ));
                }
            }
        }
        _ => {
            if let Some(s) = scoring.filter(|s| *s != "sigmoid") {
                return Err(Error::config(
                    "scoring_func",
                    format!("`{s}` is not supported for deepseek_v3 (sigmoid)"),
                ));
            }
            if let Some(m) = method.filter(|m| *m != "noaux_tc") {
                return Err(Error::config(
                    "topk_method",
                    format!("`{m}` is not supported for deepseek_v3 (noaux_tc)"),
                ));
            }
            r.scoring = Scoring::Sigmoid;
            r.correction_bias = true;
            r.renorm_eps = 1e-20;
            group(r, GroupScore::TopTwoSum)?;
        }
    }
    Ok(())
}

/// Experts per layer: the config's count, or `moe_gpu_experts_per_layer` after per-layer pruning.
pub(crate) fn layer_experts(c: &Json, moe: &MoeConfig, kinds: &[MlpKind]) -> Result<Vec<usize>> {
    const KEY: &str = "moe_gpu_experts_per_layer";
    let uniform: Vec<usize> = kinds
        .iter()
        .map(|k| {
            if *k == MlpKind::Moe {
                moe.routing.experts
            } else {
                0
            }
        })
        .collect();
    if c.get(KEY).is_none() {
        return Ok(uniform);
    }
    let per = c.usize_list(KEY)?;
    if per.len() != kinds.len() {
        return Err(Error::config(
            KEY,
            format!("has {} entries for {} layers", per.len(), kinds.len()),
        ));
    }
    for (layer, (&n, kind)) in per.iter().zip(kinds).enumerate() {
        if *kind == MlpKind::Moe {
            RoutingSpec {
                experts: n,
                ..moe.routing.clone()
            }
            .validate()
            .map_err(|e| Error::config(KEY, format!("layer {layer}: {e}")))?;
        }
    }
    Ok(per)
}

pub(crate) fn mlp_kinds(c: &Json, arch: Arch, layers: usize) -> Result<Vec<MlpKind>> {
    let kind = |moe: bool| if moe { MlpKind::Moe } else { MlpKind::Dense };
    Ok(match arch {
        Arch::Qwen2Moe | Arch::Qwen3Moe => {
            let step = c.usize_or("decoder_sparse_step", 1)?;
            if step == 0 {
                return Err(Error::config("decoder_sparse_step", "must be at least 1"));
            }
            let only = c.usize_list("mlp_only_layers")?;
            (0..layers)
                .map(|i| kind(!only.contains(&i) && (i + 1) % step == 0))
                .collect()
        }
        Arch::DeepseekV2 | Arch::DeepseekV3 => {
            let first = c.usize_or("first_k_dense_replace", 0)?;
            let freq = c.usize_or("moe_layer_freq", 1)?;
            if freq == 0 {
                return Err(Error::config("moe_layer_freq", "must be at least 1"));
            }
            (0..layers)
                .map(|i| kind(i >= first && i % freq == 0))
                .collect()
        }
        _ => vec![MlpKind::Moe; layers],
    })
}
