//! Every tensor of a checkpoint with a given config.json: names, dtypes, shapes and layouts as
//! the released checkpoints of each architecture store them, and how each is initialised. The
//! list is derived from the [`ModelConfig`] the loader parses, so what is written is what the
//! loader reads.

use safetensors::Dtype;
use serde_json::Value;

use crate::error::{Error, Result};
use crate::model::arch::{Arch, MlpKind};
use crate::model::config::{ModelConfig, QkNorm};

/// Standard deviation of the weights, as the models' `initializer_range`.
pub const WEIGHT_STD: f32 = 0.02;

/// Standard deviation of a router's logits on a unit-RMS hidden state. Untrained routers
/// (std 0.02) give near-uniform routing; trained ones are peaked, and logits spread like
/// N(0, 2.5²) put most of the softmax mass on a few experts without being one-hot: a mean
/// top-1 probability of about 0.63 of 8 experts, 0.40 of 64 and 0.33 of 128, against 1/8,
/// 1/64 and 1/128 for uniform.
pub const ROUTER_LOGIT_STD: f32 = 2.5;

/// How a tensor's values are drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Init {
    /// N(0, std²), quantised to the tensor's dtype.
    Normal(f32),
    /// Every element the same (norm weights are 1).
    Const(f32),
    /// MXFP4 blocks: uniform random FP4 codes, two per byte.
    Mxfp4Blocks,
    /// MXFP4 block exponents around 2⁻⁷, so that the values' std is about [`WEIGHT_STD`].
    Mxfp4Scales,
}

/// One tensor of the checkpoint.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorPlan {
    /// Name in the safetensors files.
    pub name: String,
    /// Element type as stored.
    pub dtype: Dtype,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// How its values are drawn.
    pub init: Init,
}

impl TensorPlan {
    /// Elements.
    pub fn elements(&self) -> u64 {
        self.shape.iter().map(|d| *d as u64).product()
    }

    /// Bytes of its data.
    pub fn bytes(&self) -> u64 {
        self.elements() * self.dtype.bitsize() as u64 / 8
    }

    /// Model parameters it holds: elements, two per byte of MXFP4 blocks, none in scales.
    pub fn params(&self) -> u64 {
        match self.init {
            Init::Mxfp4Blocks => self.elements() * 2,
            Init::Mxfp4Scales => 0,
            _ => self.elements(),
        }
    }
}

struct List(Vec<TensorPlan>);

impl List {
    fn add(&mut self, name: String, dtype: Dtype, shape: &[usize], init: Init) {
        self.0.push(TensorPlan {
            name,
            dtype,
            shape: shape.to_vec(),
            init,
        });
    }

    fn weight(&mut self, name: String, shape: &[usize]) {
        self.add(name, Dtype::BF16, shape, Init::Normal(WEIGHT_STD));
    }

    fn norm(&mut self, name: String, width: usize) {
        self.add(name, Dtype::BF16, &[width], Init::Const(1.0));
    }

    /// `{prefix}{gate,up,down}_proj.weight`.
    fn mlp(&mut self, prefix: &str, hidden: usize, inter: usize) {
        self.weight(format!("{prefix}gate_proj.weight"), &[inter, hidden]);
        self.weight(format!("{prefix}up_proj.weight"), &[inter, hidden]);
        self.weight(format!("{prefix}down_proj.weight"), &[hidden, inter]);
    }
}

/// Whether config.json asks for gpt-oss's MXFP4 experts (`quantization_config.quant_method`).
pub fn is_mxfp4(config: &Value) -> bool {
    config
        .pointer("/quantization_config/quant_method")
        .and_then(Value::as_str)
        == Some("mxfp4")
}

/// Every tensor of a checkpoint with `config`, in file order: embeddings, each layer's norms,
/// attention and MLP, the final norm and the LM head.
pub fn tensor_plan(config: &Value) -> Result<Vec<TensorPlan>> {
    let cfg = ModelConfig::from_json(config)?;
    let mxfp4 = is_mxfp4(config);
    if mxfp4 && cfg.arch != Arch::GptOss {
        return Err(Error::config(
            "quantization_config",
            format!(
                "MXFP4 experts exist only for gpt_oss, not {}",
                cfg.arch.name()
            ),
        ));
    }
    let (h, v) = (cfg.hidden, cfg.vocab);
    let mut t = List(Vec::new());
    t.weight("model.embed_tokens.weight".into(), &[v, h]);
    for l in 0..cfg.layers {
        let p = format!("model.layers.{l}.");
        t.norm(format!("{p}input_layernorm.weight"), h);
        attention(&mut t, &cfg, &format!("{p}self_attn."))?;
        t.norm(format!("{p}post_attention_layernorm.weight"), h);
        let mp = cfg.arch.mlp_prefix(l);
        match cfg.mlp_kinds[l] {
            MlpKind::Dense => t.mlp(&mp, h, cfg.dense_inter),
            MlpKind::Moe => moe(&mut t, &cfg, l, &mp, mxfp4)?,
        }
    }
    t.norm("model.norm.weight".into(), h);
    if !cfg.tie_embeddings {
        t.weight("lm_head.weight".into(), &[v, h]);
    }
    Ok(t.0)
}

fn attention(t: &mut List, cfg: &ModelConfig, p: &str) -> Result<()> {
    let a = &cfg.attention;
    let (h, heads) = (cfg.hidden, a.heads);
    if let Some(m) = a.mla {
        let qk = m.qk_nope_head_dim + m.qk_rope_head_dim;
        match m.q_lora_rank {
            None => t.weight(format!("{p}q_proj.weight"), &[heads * qk, h]),
            Some(r) => {
                t.weight(format!("{p}q_a_proj.weight"), &[r, h]);
                t.norm(format!("{p}q_a_layernorm.weight"), r);
                t.weight(format!("{p}q_b_proj.weight"), &[heads * qk, r]);
            }
        }
        let kvr = m.kv_lora_rank;
        t.weight(
            format!("{p}kv_a_proj_with_mqa.weight"),
            &[kvr + m.qk_rope_head_dim, h],
        );
        t.norm(format!("{p}kv_a_layernorm.weight"), kvr);
        t.weight(
            format!("{p}kv_b_proj.weight"),
            &[heads * (m.qk_nope_head_dim + m.v_head_dim), kvr],
        );
        t.weight(format!("{p}o_proj.weight"), &[h, heads * m.v_head_dim]);
        return Ok(());
    }
    let (q, kv) = (heads * a.head_dim, a.kv_heads * a.head_dim);
    // Qwen2-MoE has q/k/v biases, gpt-oss biases on every projection.
    let biases: &[&str] = match cfg.arch {
        Arch::Qwen2Moe => &["q_proj", "k_proj", "v_proj"],
        Arch::GptOss => &["q_proj", "k_proj", "v_proj", "o_proj"],
        _ => &[],
    };
    for (name, out, inp) in [
        ("q_proj", q, h),
        ("k_proj", kv, h),
        ("v_proj", kv, h),
        ("o_proj", h, q),
    ] {
        t.weight(format!("{p}{name}.weight"), &[out, inp]);
        if biases.contains(&name) {
            t.weight(format!("{p}{name}.bias"), &[out]);
        }
    }
    match a.qk_norm {
        QkNorm::None => {}
        QkNorm::PerHead => {
            t.norm(format!("{p}q_norm.weight"), a.head_dim);
            t.norm(format!("{p}k_norm.weight"), a.head_dim);
        }
        QkNorm::Full => {
            t.norm(format!("{p}q_norm.weight"), q);
            t.norm(format!("{p}k_norm.weight"), kv);
        }
    }
    if a.sinks {
        t.weight(format!("{p}sinks"), &[heads]);
    }
    Ok(())
}

fn moe(t: &mut List, cfg: &ModelConfig, layer: usize, p: &str, mxfp4: bool) -> Result<()> {
    let (h, e, i) = (cfg.hidden, cfg.experts_in(layer), cfg.moe.inter);
    let router = if cfg.arch == Arch::GptOss {
        "router"
    } else {
        "gate"
    };
    let router_std = ROUTER_LOGIT_STD / (h as f32).sqrt();
    t.add(
        format!("{p}{router}.weight"),
        Dtype::BF16,
        &[e, h],
        Init::Normal(router_std),
    );
    if cfg.moe.routing.router_bias {
        t.weight(format!("{p}{router}.bias"), &[e]);
    }
    if cfg.moe.routing.correction_bias {
        // DeepSeek-V3 keeps the selection bias in f32.
        t.add(
            format!("{p}gate.e_score_correction_bias"),
            Dtype::F32,
            &[e],
            Init::Normal(WEIGHT_STD),
        );
    }
    if let Some(si) = cfg.moe.shared_inter {
        if cfg.arch == Arch::Qwen2Moe {
            t.mlp(&format!("{p}shared_expert."), h, si);
            t.weight(format!("{p}shared_expert_gate.weight"), &[1, h]);
        } else {
            t.mlp(&format!("{p}shared_experts."), h, si);
        }
    }
    let x = format!("{p}experts.");
    match cfg.arch {
        Arch::GptOss if mxfp4 => {
            for (name, out, inp) in [("gate_up_proj", 2 * i, h), ("down_proj", h, i)] {
                if !inp.is_multiple_of(32) {
                    return Err(Error::config(
                        "quantization_config",
                        format!("MXFP4 needs {name}'s input size {inp} to be a multiple of 32"),
                    ));
                }
                let blocks = [e, out, inp / 32, 16];
                t.add(
                    format!("{x}{name}_blocks"),
                    Dtype::U8,
                    &blocks,
                    Init::Mxfp4Blocks,
                );
                t.add(
                    format!("{x}{name}_scales"),
                    Dtype::U8,
                    &blocks[..3],
                    Init::Mxfp4Scales,
                );
                t.weight(format!("{x}{name}_bias"), &[e, out]);
            }
        }
        Arch::GptOss => {
            t.weight(format!("{x}gate_up_proj"), &[e, h, 2 * i]);
            t.weight(format!("{x}gate_up_proj_bias"), &[e, 2 * i]);
            t.weight(format!("{x}down_proj"), &[e, i, h]);
            t.weight(format!("{x}down_proj_bias"), &[e, h]);
        }
        Arch::Mixtral => {
            for n in 0..e {
                t.weight(format!("{x}{n}.w1.weight"), &[i, h]);
                t.weight(format!("{x}{n}.w2.weight"), &[h, i]);
                t.weight(format!("{x}{n}.w3.weight"), &[i, h]);
            }
        }
        _ => {
            for n in 0..e {
                t.mlp(&format!("{x}{n}."), h, i);
            }
        }
    }
    Ok(())
}
