//! Every tensor config.json asks of a checkpoint, by name, with its shape and how it is stored:
//! the list `moe inspect` checks a checkpoint against, and the expert loader checks its layers
//! with.

use std::collections::HashSet;

use crate::error::Result;
use crate::model::arch::MlpKind;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::{ModelConfig, QkNorm};
use crate::model::expert_loading::expert_tensors;
use crate::model::tensor_spec::ExpectedTensor;

/// What checking a checkpoint against its config found.
#[derive(Debug, Default)]
pub struct TensorCheck {
    /// A missing tensor, or one of the wrong shape or dtype, each as an error message.
    pub errors: Vec<String>,
    /// Tensors the config does not ask for, sorted.
    pub unexpected: Vec<String>,
}

/// Checks every tensor of [`expected_tensors`] in `ckpt`, and lists the tensors nothing asks for.
pub fn check_tensors(cfg: &ModelConfig, ckpt: &Checkpoint) -> Result<TensorCheck> {
    let expected = expected_tensors(cfg, ckpt)?;
    let errors = expected
        .iter()
        .filter_map(|t| t.check(ckpt).err().map(|e| e.to_string()))
        .collect();
    let known: HashSet<&str> = expected.iter().map(|t| t.name.as_str()).collect();
    let mut unexpected: Vec<String> = ckpt
        .names()
        .filter(|n| !known.contains(n))
        .map(String::from)
        .collect();
    unexpected.sort();
    Ok(TensorCheck { errors, unexpected })
}

/// Every tensor `cfg` asks of `ckpt` (which tells the gpt-oss expert layouts apart).
pub fn expected_tensors(cfg: &ModelConfig, ckpt: &Checkpoint) -> Result<Vec<ExpectedTensor>> {
    let (h, vocab) = (cfg.hidden, cfg.vocab);
    let f = |name: String, shape: &[usize]| ExpectedTensor::float(name, shape);
    let mut t = vec![
        f("model.embed_tokens.weight".into(), &[vocab, h]),
        f("model.norm.weight".into(), &[h]),
    ];
    if !cfg.tie_embeddings {
        t.push(f("lm_head.weight".into(), &[vocab, h]));
    }
    for l in 0..cfg.layers {
        let p = format!("model.layers.{l}.");
        t.push(f(format!("{p}input_layernorm.weight"), &[h]));
        t.push(f(format!("{p}post_attention_layernorm.weight"), &[h]));
        attention_tensors(cfg, &format!("{p}self_attn."), &mut t);
        match cfg.mlp_kinds[l] {
            MlpKind::Dense => mlp_tensors(&cfg.arch.mlp_prefix(l), h, cfg.dense_inter, &mut t),
            MlpKind::Moe => moe_tensors(cfg, ckpt, l, &mut t)?,
        }
    }
    Ok(t)
}

/// `{prefix}{gate,up,down}_proj.weight` of a SwiGLU MLP (as `load_mlp` loads it).
fn mlp_tensors(prefix: &str, h: usize, inter: usize, t: &mut Vec<ExpectedTensor>) {
    for (name, shape) in [
        ("gate", [inter, h]),
        ("up", [inter, h]),
        ("down", [h, inter]),
    ] {
        t.push(ExpectedTensor::float(
            format!("{prefix}{name}_proj.weight"),
            &shape,
        ));
    }
}

/// A projection `{prefix}{name}.weight` [n, k] and its optional bias [n] (`Linear::load`).
fn linear(t: &mut Vec<ExpectedTensor>, prefix: &str, name: &str, n: usize, k: usize) {
    t.push(ExpectedTensor::float(
        format!("{prefix}{name}.weight"),
        &[n, k],
    ));
    t.push(ExpectedTensor {
        optional: true,
        ..ExpectedTensor::float(format!("{prefix}{name}.bias"), &[n])
    });
}

/// A layer's attention: standard (`attention_block.rs`) or latent (`mla.rs`).
fn attention_tensors(cfg: &ModelConfig, p: &str, t: &mut Vec<ExpectedTensor>) {
    let a = &cfg.attention;
    let (heads, kvh, hd, h) = (a.heads, a.kv_heads, a.head_dim, cfg.hidden);
    let norm = |t: &mut Vec<ExpectedTensor>, name: &str, width: usize| {
        t.push(ExpectedTensor::float(format!("{p}{name}.weight"), &[width]));
    };
    let Some(m) = a.mla else {
        linear(t, p, "q_proj", heads * hd, h);
        linear(t, p, "k_proj", kvh * hd, h);
        linear(t, p, "v_proj", kvh * hd, h);
        match a.qk_norm {
            QkNorm::None => {}
            QkNorm::PerHead => {
                norm(t, "q_norm", hd);
                norm(t, "k_norm", hd);
            }
            QkNorm::Full => {
                norm(t, "q_norm", heads * hd);
                norm(t, "k_norm", kvh * hd);
            }
        }
        if a.sinks {
            t.push(ExpectedTensor::float(format!("{p}sinks"), &[heads]));
        }
        linear(t, p, "o_proj", h, heads * hd);
        return;
    };
    let qk = m.qk_nope_head_dim + m.qk_rope_head_dim;
    match m.q_lora_rank {
        None => linear(t, p, "q_proj", heads * qk, h),
        Some(r) => {
            linear(t, p, "q_a_proj", r, h);
            norm(t, "q_a_layernorm", r);
            linear(t, p, "q_b_proj", heads * qk, r);
        }
    }
    let kvr = m.kv_lora_rank;
    linear(t, p, "kv_a_proj_with_mqa", kvr + m.qk_rope_head_dim, h);
    norm(t, "kv_a_layernorm", kvr);
    linear(
        t,
        p,
        "kv_b_proj",
        heads * (m.qk_nope_head_dim + m.v_head_dim),
        kvr,
    );
    linear(t, p, "o_proj", h, heads * m.v_head_dim);
}

/// An MoE layer: router (as `load_moe_weights` loads it), shared expert, routed experts.
fn moe_tensors(
    cfg: &ModelConfig,
    ckpt: &Checkpoint,
    l: usize,
    t: &mut Vec<ExpectedTensor>,
) -> Result<()> {
    let (h, e, p) = (cfg.hidden, cfg.experts_in(l), cfg.arch.mlp_prefix(l));
    let routing = &cfg.moe.routing;
    let router = cfg.arch.router_name();
    t.push(ExpectedTensor::float(
        format!("{p}{router}.weight"),
        &[e, h],
    ));
    if routing.router_bias {
        t.push(ExpectedTensor::float(format!("{p}{router}.bias"), &[e]));
    }
    if routing.correction_bias {
        let name = format!("{p}gate.e_score_correction_bias");
        t.push(ExpectedTensor::float(name, &[e]));
    }
    if let Some(si) = cfg.moe.shared_inter {
        mlp_tensors(&format!("{p}{}.", cfg.arch.shared_expert_name()), h, si, t);
        if routing.shared_gate {
            let name = format!("{p}shared_expert_gate.weight");
            t.push(ExpectedTensor::float(name, &[1, h]));
        }
    }
    t.extend(expert_tensors(ckpt, cfg, l)?);
    Ok(())
}
