//! config.json of every supported architecture, parsed into one [`ModelConfig`]. A field that
//! changes the math and is not implemented is an error naming it, never silently ignored.

use std::path::Path;

use serde_json::Value;

use super::gguf_config::hf_config;
use crate::error::{Error, Result};
use crate::gguf::is_gguf;
pub use crate::model::arch::{Arch, MlpKind};
use crate::model::json::Json;
pub use crate::model::moe_config::MoeConfig;
use crate::model::moe_config::{layer_experts, mlp_kinds, moe_config};
pub use crate::model::rope_config::RopeConfig;
use crate::model::rope_config::rope_config;
use crate::spec::routing::RoutingSpec;

/// The most decoder layers a config may declare (real models have a few hundred at most).
pub const MAX_LAYERS: usize = 1 << 16;

/// The widest dimension (hidden size, MLP width, heads, head width, latent ranks, vocabulary) a
/// config may declare: products of two fit any integer the sizes are computed in.
pub const MAX_DIM: usize = 1 << 24;

/// Per-head or whole-projection RMSNorm on q and k.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QkNorm {
    /// No q/k norm.
    None,
    /// Qwen3: RMSNorm over each head's `head_dim`.
    PerHead,
    /// OLMoE: RMSNorm over the whole q / k projection.
    Full,
}

/// DeepSeek multi-head latent attention.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MlaConfig {
    /// Rank of the q compression (`q_lora_rank`); `None` projects q directly.
    pub q_lora_rank: Option<usize>,
    /// Rank of the joint k/v latent (`kv_lora_rank`).
    pub kv_lora_rank: usize,
    /// Per-head q/k width without rotary embedding (`qk_nope_head_dim`).
    pub qk_nope_head_dim: usize,
    /// Per-head q/k width with rotary embedding (`qk_rope_head_dim`).
    pub qk_rope_head_dim: usize,
    /// Per-head value width (`v_head_dim`).
    pub v_head_dim: usize,
}

#[derive(Debug, Clone, PartialEq)]
/// The attention shape from config.json.
pub struct AttentionConfig {
    /// Query heads (`num_attention_heads`).
    pub heads: usize,
    /// Key/value heads (`num_key_value_heads`).
    pub kv_heads: usize,
    /// Width of each head (`head_dim`, else `hidden_size / num_attention_heads`).
    pub head_dim: usize,
    /// The q/k norm of the architecture.
    pub qk_norm: QkNorm,
    /// gpt-oss per-head attention sinks.
    pub sinks: bool,
    /// Multi-head latent attention (DeepSeek), replacing the plain q/k/v projections.
    pub mla: Option<MlaConfig>,
    /// Keys per query on sliding-window layers (`sliding_window`).
    pub sliding_window: Option<usize>,
    /// Per layer: uses the sliding window.
    pub sliding_layers: Vec<bool>,
}

#[derive(Debug, Clone, PartialEq)]
/// A model's config.json, parsed into what the decoder needs.
pub struct ModelConfig {
    /// Architecture, from `model_type`.
    pub arch: Arch,
    /// Hidden size (`hidden_size`).
    pub hidden: usize,
    /// Decoder layers (`num_hidden_layers`).
    pub layers: usize,
    /// Vocabulary size (`vocab_size`).
    pub vocab: usize,
    /// Epsilon of the RMSNorms (`rms_norm_eps`).
    pub rms_eps: f64,
    /// Longest context the model was trained for (`max_position_embeddings`).
    pub max_positions: usize,
    /// The LM head reuses the embedding matrix (`tie_word_embeddings`).
    pub tie_embeddings: bool,
    /// Attention shape.
    pub attention: AttentionConfig,
    /// Rotary embedding.
    pub rope: RopeConfig,
    /// MoE layers' shape and routing.
    pub moe: MoeConfig,
    /// Per layer: MoE or dense MLP.
    pub mlp_kinds: Vec<MlpKind>,
    /// Routed experts of each layer (0 for dense layers); differs between layers only in
    /// checkpoints pruned per layer (`moe_gpu_experts_per_layer`).
    pub layer_experts: Vec<usize>,
    /// Width of dense MLP layers.
    pub dense_inter: usize,
    /// `bos_token_id`, if set.
    pub bos_token_id: Option<u32>,
    /// `eos_token_id` (one id or a list).
    pub eos_token_ids: Vec<u32>,
}

impl ModelConfig {
    /// Reads `dir/config.json`, or the hyperparameters of `dir` where it is a `.gguf` file.
    pub fn load(dir: &Path) -> Result<Self> {
        if is_gguf(dir) {
            let g = crate::gguf::GgufFile::open(dir)?;
            return Self::from_json(&hf_config(&g)?);
        }
        let path = dir.join("config.json");
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let value: Value = serde_json::from_str(&text).map_err(|e| {
            Error::config(
                "config.json",
                format!("{}: not valid JSON: {e}", path.display()),
            )
        })?;
        Self::from_json(&value)
    }

    /// Parses a config.json already read as JSON.
    pub fn from_json(value: &Value) -> Result<Self> {
        let c = Json(value);
        let model_type = c
            .opt_str("model_type")?
            .ok_or_else(|| Error::config("model_type", "is missing"))?;
        let arch = Arch::parse(model_type)?;
        let hidden = c.usize("hidden_size")?;
        let layers = c.usize("num_hidden_layers")?;
        let vocab = c.usize("vocab_size")?;
        for (field, value) in [
            ("hidden_size", hidden),
            ("num_hidden_layers", layers),
            ("vocab_size", vocab),
        ] {
            if value == 0 {
                return Err(Error::config(field, "must be positive"));
            }
        }
        // Per-layer tables are sized by the layer count: refuse a count no model has rather than
        // ask for terabytes (found by the loaders fuzz harness).
        if layers > MAX_LAYERS {
            return Err(Error::config(
                "num_hidden_layers",
                format!("is {layers}; at most {MAX_LAYERS} layers are supported"),
            ));
        }
        let rms_eps = c.f64_or("rms_norm_eps", 1e-6)?;
        if !(rms_eps.is_finite() && rms_eps > 0.0) {
            return Err(Error::config(
                "rms_norm_eps",
                format!("is {rms_eps}; it must be positive and finite"),
            ));
        }
        if let Some(act) = c
            .opt_str("hidden_act")?
            .filter(|a| arch != Arch::GptOss && *a != "silu")
        {
            return Err(Error::config(
                "hidden_act",
                format!("`{act}` is not supported (only silu)"),
            ));
        }
        if c.bool_or("mlp_bias", false)? {
            return Err(Error::config("mlp_bias", "MLP biases are not supported"));
        }
        let moe = moe_config(&c, arch, hidden)?;
        let mlp_kinds = mlp_kinds(&c, arch, layers)?;
        let layer_experts = layer_experts(&c, &moe, &mlp_kinds)?;
        let dense_inter = c.usize_or("intermediate_size", moe.inter)?;
        let attention = attention_config(&c, arch, hidden, layers)?;
        let max_positions = c.usize_or("max_position_embeddings", 4096)?;
        check_dims(&c, &moe, &attention, [hidden, vocab, dense_inter])?;
        let rope_dim = attention
            .mla
            .map_or(attention.head_dim, |m| m.qk_rope_head_dim);
        let rope = rope_config(&c, arch, rope_dim, max_positions)?;
        Ok(Self {
            arch,
            hidden,
            layers,
            vocab,
            rms_eps,
            max_positions,
            tie_embeddings: c.bool_or("tie_word_embeddings", false)?,
            attention,
            rope,
            moe,
            mlp_kinds,
            layer_experts,
            dense_inter,
            bos_token_id: c.opt_usize("bos_token_id")?.map(|v| v as u32),
            eos_token_ids: c
                .usize_list("eos_token_id")?
                .into_iter()
                .map(|v| v as u32)
                .collect(),
        })
    }

    /// Indices of the MoE layers.
    pub fn moe_layers(&self) -> Vec<usize> {
        (0..self.layers)
            .filter(|&i| self.mlp_kinds[i] == MlpKind::Moe)
            .collect()
    }

    /// Routed experts of `layer` (0 for a dense layer).
    pub fn experts_in(&self, layer: usize) -> usize {
        self.layer_experts.get(layer).copied().unwrap_or(0)
    }

    /// The routing of MoE layer `layer`.
    pub fn routing_of(&self, layer: usize) -> RoutingSpec {
        RoutingSpec {
            experts: self.experts_in(layer),
            ..self.moe.routing.clone()
        }
    }

    /// Indices of the dense-MLP layers.
    pub fn dense_layers(&self) -> Vec<usize> {
        (0..self.layers)
            .filter(|&i| self.mlp_kinds[i] == MlpKind::Dense)
            .collect()
    }
}

/// Refuses a width above [`MAX_DIM`], naming its key: sizes computed from it would overflow.
fn check_dims(
    c: &Json,
    moe: &MoeConfig,
    a: &AttentionConfig,
    [hidden, vocab, dense_inter]: [usize; 3],
) -> Result<()> {
    let moe_key = if c.get("moe_intermediate_size").is_some() {
        "moe_intermediate_size"
    } else {
        "intermediate_size"
    };
    let shared_key = if c.get("n_shared_experts").is_some() {
        "n_shared_experts"
    } else {
        "shared_expert_intermediate_size"
    };
    let mut dims = vec![
        ("hidden_size", hidden),
        ("vocab_size", vocab),
        ("intermediate_size", dense_inter),
        (moe_key, moe.inter),
        (shared_key, moe.shared_inter.unwrap_or(0)),
        ("num_attention_heads", a.heads),
        ("num_key_value_heads", a.kv_heads),
        ("head_dim", a.head_dim),
    ];
    if let Some(m) = a.mla {
        dims.extend([
            ("q_lora_rank", m.q_lora_rank.unwrap_or(0)),
            ("kv_lora_rank", m.kv_lora_rank),
            ("qk_nope_head_dim", m.qk_nope_head_dim),
            ("qk_rope_head_dim", m.qk_rope_head_dim),
            ("v_head_dim", m.v_head_dim),
        ]);
    }
    match dims.into_iter().find(|(_, v)| *v > MAX_DIM) {
        Some((key, value)) => Err(Error::config(
            key,
            format!("is {value}; at most {MAX_DIM} is supported"),
        )),
        None => Ok(()),
    }
}

fn attention_config(c: &Json, arch: Arch, hidden: usize, layers: usize) -> Result<AttentionConfig> {
    let heads = c.usize("num_attention_heads")?;
    if heads == 0 {
        return Err(Error::config("num_attention_heads", "must be positive"));
    }
    let kv_heads = c.usize_or("num_key_value_heads", heads)?;
    if kv_heads == 0 || heads % kv_heads != 0 {
        return Err(Error::config(
            "num_key_value_heads",
            format!("{kv_heads} does not divide num_attention_heads = {heads}"),
        ));
    }
    let head_dim = c.usize_or("head_dim", hidden / heads)?;
    let qk_norm = match arch {
        Arch::Qwen3Moe => QkNorm::PerHead,
        Arch::Olmoe => QkNorm::Full,
        _ => QkNorm::None,
    };
    if arch == Arch::Olmoe && c.get("clip_qkv").is_some() {
        return Err(Error::config("clip_qkv", "clipping q/k/v is not supported"));
    }
    let mla = match arch {
        Arch::DeepseekV2 | Arch::DeepseekV3 => Some(MlaConfig {
            q_lora_rank: c.opt_usize("q_lora_rank")?,
            kv_lora_rank: c.usize("kv_lora_rank")?,
            qk_nope_head_dim: c.usize("qk_nope_head_dim")?,
            qk_rope_head_dim: c.usize("qk_rope_head_dim")?,
            v_head_dim: c.usize("v_head_dim")?,
        }),
        _ => None,
    };
    let window = c.opt_usize("sliding_window")?.filter(|w| *w > 0);
    let sliding_layers: Vec<bool> = match arch {
        Arch::GptOss => match c.get("layer_types").and_then(|v| v.as_array()) {
            Some(types) => {
                if types.len() != layers {
                    return Err(Error::config(
                        "layer_types",
                        format!("has {} entries for {layers} layers", types.len()),
                    ));
                }
                types
                    .iter()
                    .map(|t| t.as_str() == Some("sliding_attention"))
                    .collect()
            }
            None => (0..layers).map(|i| i % 2 == 0).collect(),
        },
        Arch::Mixtral => vec![window.is_some(); layers],
        Arch::Qwen2Moe | Arch::Qwen3Moe => {
            if c.bool_or("use_sliding_window", false)? {
                return Err(Error::config(
                    "use_sliding_window",
                    "sliding-window attention for Qwen is not supported",
                ));
            }
            vec![false; layers]
        }
        _ => vec![false; layers],
    };
    let sliding_window = if sliding_layers.iter().any(|s| *s) {
        window
    } else {
        None
    };
    if sliding_layers.iter().any(|s| *s) && sliding_window.is_none() {
        return Err(Error::config(
            "sliding_window",
            "sliding layers need a positive sliding_window",
        ));
    }
    Ok(AttentionConfig {
        heads,
        kv_heads,
        head_dim,
        qk_norm,
        sinks: arch == Arch::GptOss,
        mla,
        sliding_window,
        sliding_layers,
    })
}
