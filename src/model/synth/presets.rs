//! The config.json of each model `moe synth` imitates, with the values of the published
//! checkpoint (only `num_hidden_layers`, and what depends on it, changes with `--layers`).

use serde_json::{Value, json};

use crate::error::{Error, Result};

/// The models `moe synth --like` knows, by the name it takes.
pub const PRESETS: &[&str] = &[
    "olmoe-1b-7b",
    "qwen3-30b-a3b",
    "mixtral-8x7b",
    "deepseek-v2-lite",
    "moonlight-16b-a3b",
    "gpt-oss-20b",
    "qwen1.5-moe-a2.7b",
];

/// How the routed experts are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynthDtype {
    /// Every tensor in bfloat16, as most MoE checkpoints are released.
    Bf16,
    /// gpt-oss's release format: experts as MXFP4 blocks and scales, the rest in bfloat16.
    Mxfp4,
}

impl SynthDtype {
    /// `bf16` or `mxfp4`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "bf16" => Ok(Self::Bf16),
            "mxfp4" => Ok(Self::Mxfp4),
            other => Err(Error::input(format!(
                "unknown dtype `{other}` (bf16, mxfp4)"
            ))),
        }
    }
}

/// The dtype a preset is released in: MXFP4 for gpt-oss, bfloat16 for the others.
pub fn default_dtype(preset: &str) -> SynthDtype {
    if preset == "gpt-oss-20b" {
        SynthDtype::Mxfp4
    } else {
        SynthDtype::Bf16
    }
}

/// config.json of `preset` with `layers` decoder layers (default: the real count) and experts
/// stored as `dtype` (default: as released). MXFP4 exists only for gpt-oss.
pub fn preset_config(
    preset: &str,
    layers: Option<usize>,
    dtype: Option<SynthDtype>,
) -> Result<Value> {
    let text = base(preset).ok_or_else(|| {
        Error::input(format!(
            "unknown model `{preset}`; known: {}",
            PRESETS.join(", ")
        ))
    })?;
    let mut c: Value = serde_json::from_str(text)
        .map_err(|e| Error::config("config.json", format!("preset `{preset}`: {e}")))?;
    let layers = match layers {
        Some(0) => return Err(Error::input("the layer count must be at least 1")),
        Some(n) => n,
        None => c["num_hidden_layers"].as_u64().unwrap_or(1) as usize,
    };
    c["num_hidden_layers"] = json!(layers);
    if preset == "gpt-oss-20b" {
        let types: Vec<&str> = (0..layers)
            .map(|i| {
                if i % 2 == 0 {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect();
        c["layer_types"] = json!(types);
    }
    match dtype.unwrap_or(default_dtype(preset)) {
        SynthDtype::Bf16 => {}
        SynthDtype::Mxfp4 if preset == "gpt-oss-20b" => {
            c["quantization_config"] = json!({
                "modules_to_not_convert": [
                    "model.layers.*.self_attn",
                    "model.layers.*.mlp.router",
                    "model.embed_tokens",
                    "lm_head"
                ],
                "quant_method": "mxfp4"
            });
        }
        SynthDtype::Mxfp4 => {
            return Err(Error::input(format!(
                "mxfp4 experts exist only for gpt-oss-20b; `{preset}` is bf16"
            )));
        }
    }
    Ok(c)
}

/// The published config.json of `preset` (fields that do not change the math included, so
/// the file looks like the real one), as text: `json!` of them all exceeds the macro
/// recursion limit.
fn base(preset: &str) -> Option<&'static str> {
    Some(match preset {
        "olmoe-1b-7b" => {
            r#"{
            "architectures": ["OlmoeForCausalLM"],
            "model_type": "olmoe",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "clip_qkv": null,
            "bos_token_id": null,
            "eos_token_id": 50279,
            "pad_token_id": 1,
            "hidden_act": "silu",
            "hidden_size": 2048,
            "initializer_range": 0.02,
            "intermediate_size": 1024,
            "max_position_embeddings": 4096,
            "norm_topk_prob": false,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "num_experts": 64,
            "num_experts_per_tok": 8,
            "num_hidden_layers": 16,
            "output_router_logits": false,
            "rms_norm_eps": 1e-05,
            "rope_scaling": null,
            "rope_theta": 10000.0,
            "router_aux_loss_coef": 0.01,
            "tie_word_embeddings": false,
            "torch_dtype": "bfloat16",
            "use_cache": true,
            "vocab_size": 50304
        }"#
        }
        "qwen3-30b-a3b" => {
            r#"{
            "architectures": ["Qwen3MoeForCausalLM"],
            "model_type": "qwen3_moe",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "bos_token_id": 151643,
            "eos_token_id": 151645,
            "decoder_sparse_step": 1,
            "head_dim": 128,
            "hidden_act": "silu",
            "hidden_size": 2048,
            "initializer_range": 0.02,
            "intermediate_size": 6144,
            "max_position_embeddings": 40960,
            "max_window_layers": 48,
            "mlp_only_layers": [],
            "moe_intermediate_size": 768,
            "norm_topk_prob": true,
            "num_attention_heads": 32,
            "num_key_value_heads": 4,
            "num_experts": 128,
            "num_experts_per_tok": 8,
            "num_hidden_layers": 48,
            "output_router_logits": false,
            "rms_norm_eps": 1e-06,
            "rope_scaling": null,
            "rope_theta": 1000000.0,
            "router_aux_loss_coef": 0.001,
            "sliding_window": null,
            "tie_word_embeddings": false,
            "torch_dtype": "bfloat16",
            "use_cache": true,
            "use_sliding_window": false,
            "vocab_size": 151936
        }"#
        }
        "mixtral-8x7b" => {
            r#"{
            "architectures": ["MixtralForCausalLM"],
            "model_type": "mixtral",
            "attention_dropout": 0.0,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "hidden_act": "silu",
            "hidden_size": 4096,
            "initializer_range": 0.02,
            "intermediate_size": 14336,
            "max_position_embeddings": 32768,
            "num_attention_heads": 32,
            "num_key_value_heads": 8,
            "num_local_experts": 8,
            "num_experts_per_tok": 2,
            "num_hidden_layers": 32,
            "output_router_logits": false,
            "rms_norm_eps": 1e-05,
            "rope_theta": 1000000.0,
            "router_aux_loss_coef": 0.02,
            "sliding_window": null,
            "tie_word_embeddings": false,
            "torch_dtype": "bfloat16",
            "use_cache": true,
            "vocab_size": 32000
        }"#
        }
        "deepseek-v2-lite" => {
            r#"{
            "architectures": ["DeepseekV2ForCausalLM"],
            "model_type": "deepseek_v2",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "aux_loss_alpha": 0.001,
            "bos_token_id": 100000,
            "eos_token_id": 100001,
            "first_k_dense_replace": 1,
            "hidden_act": "silu",
            "hidden_size": 2048,
            "initializer_range": 0.02,
            "intermediate_size": 10944,
            "kv_lora_rank": 512,
            "max_position_embeddings": 163840,
            "moe_intermediate_size": 1408,
            "moe_layer_freq": 1,
            "n_group": 1,
            "n_routed_experts": 64,
            "n_shared_experts": 2,
            "norm_topk_prob": false,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "num_experts_per_tok": 6,
            "num_hidden_layers": 27,
            "pretraining_tp": 1,
            "q_lora_rank": null,
            "qk_nope_head_dim": 128,
            "qk_rope_head_dim": 64,
            "rms_norm_eps": 1e-06,
            "rope_scaling": {
                "beta_fast": 32,
                "beta_slow": 1,
                "factor": 40,
                "mscale": 0.707,
                "mscale_all_dim": 0.707,
                "original_max_position_embeddings": 4096,
                "type": "yarn"
            },
            "rope_theta": 10000,
            "routed_scaling_factor": 1.0,
            "scoring_func": "softmax",
            "seq_aux": true,
            "tie_word_embeddings": false,
            "topk_group": 1,
            "topk_method": "greedy",
            "torch_dtype": "bfloat16",
            "use_cache": true,
            "v_head_dim": 128,
            "vocab_size": 102400
        }"#
        }
        "moonlight-16b-a3b" => {
            r#"{
            "architectures": ["DeepseekV3ForCausalLM"],
            "model_type": "deepseek_v3",
            "attention_bias": false,
            "attention_dropout": 0.0,
            "aux_loss_alpha": 0.001,
            "bos_token_id": 163584,
            "eos_token_id": 163585,
            "first_k_dense_replace": 1,
            "hidden_act": "silu",
            "hidden_size": 2048,
            "initializer_range": 0.02,
            "intermediate_size": 11264,
            "kv_lora_rank": 512,
            "max_position_embeddings": 8192,
            "moe_intermediate_size": 1408,
            "moe_layer_freq": 1,
            "n_group": 1,
            "n_routed_experts": 64,
            "n_shared_experts": 2,
            "norm_topk_prob": true,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "num_experts_per_tok": 6,
            "num_hidden_layers": 27,
            "num_nextn_predict_layers": 0,
            "pretraining_tp": 1,
            "q_lora_rank": null,
            "qk_nope_head_dim": 128,
            "qk_rope_head_dim": 64,
            "rms_norm_eps": 1e-05,
            "rope_scaling": null,
            "rope_theta": 50000.0,
            "routed_scaling_factor": 2.446,
            "scoring_func": "sigmoid",
            "seq_aux": true,
            "tie_word_embeddings": false,
            "topk_group": 1,
            "topk_method": "noaux_tc",
            "torch_dtype": "bfloat16",
            "use_cache": true,
            "v_head_dim": 128,
            "vocab_size": 163840
        }"#
        }
        "gpt-oss-20b" => {
            r#"{
            "architectures": ["GptOssForCausalLM"],
            "model_type": "gpt_oss",
            "attention_bias": true,
            "attention_dropout": 0.0,
            "eos_token_id": 200002,
            "pad_token_id": 199999,
            "experts_per_token": 4,
            "head_dim": 64,
            "hidden_act": "silu",
            "hidden_size": 2880,
            "initial_context_length": 4096,
            "initializer_range": 0.02,
            "intermediate_size": 2880,
            "layer_types": [],
            "max_position_embeddings": 131072,
            "num_attention_heads": 64,
            "num_key_value_heads": 8,
            "num_local_experts": 32,
            "num_experts_per_tok": 4,
            "num_hidden_layers": 24,
            "output_router_logits": false,
            "rms_norm_eps": 1e-05,
            "rope_scaling": {
                "beta_fast": 32.0,
                "beta_slow": 1.0,
                "factor": 32.0,
                "original_max_position_embeddings": 4096,
                "rope_type": "yarn",
                "truncate": false
            },
            "rope_theta": 150000,
            "router_aux_loss_coef": 0.9,
            "sliding_window": 128,
            "swiglu_limit": 7.0,
            "tie_word_embeddings": false,
            "torch_dtype": "bfloat16",
            "use_cache": true,
            "vocab_size": 201088
        }"#
        }
        "qwen1.5-moe-a2.7b" => {
            r#"{
            "architectures": ["Qwen2MoeForCausalLM"],
            "model_type": "qwen2_moe",
            "attention_dropout": 0.0,
            "bos_token_id": 151643,
            "eos_token_id": 151643,
            "decoder_sparse_step": 1,
            "hidden_act": "silu",
            "hidden_size": 2048,
            "initializer_range": 0.02,
            "intermediate_size": 5632,
            "max_position_embeddings": 8192,
            "max_window_layers": 21,
            "moe_intermediate_size": 1408,
            "shared_expert_intermediate_size": 5632,
            "norm_topk_prob": false,
            "num_attention_heads": 16,
            "num_key_value_heads": 16,
            "num_experts": 60,
            "num_experts_per_tok": 4,
            "num_hidden_layers": 24,
            "output_router_logits": false,
            "rms_norm_eps": 1e-06,
            "rope_theta": 1000000.0,
            "router_aux_loss_coef": 0.001,
            "sliding_window": 32768,
            "tie_word_embeddings": false,
            "torch_dtype": "bfloat16",
            "use_cache": true,
            "use_sliding_window": false,
            "vocab_size": 151936
        }"#
        }
        _ => return None,
    })
}
