//! A GGUF file's hyperparameters as the config.json the rest of the loader reads: each
//! llama.cpp architecture's keys (`{arch}.block_count`, `{arch}.expert_count`, ...) become the
//! Hugging Face fields of the matching `model_type`, so one parser validates both formats.
//!
//! Where llama.cpp fixes a routing choice in code rather than in a key (Qwen3-MoE and Mixtral
//! renormalise the top-k weights, Qwen2-MoE and OLMoE do not), the field is set as llama.cpp
//! computes it; `{arch}.expert_weights_norm`, where a file has it, overrides.

use serde_json::{Map, Value, json};

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::model::arch::Arch;

/// The supported `general.architecture`s and the `model_type` each loads as.
pub fn arch_of(g: &GgufFile) -> Result<Arch> {
    let name = g.string("general.architecture")?;
    Ok(match name {
        "qwen3moe" => Arch::Qwen3Moe,
        "qwen2moe" => Arch::Qwen2Moe,
        "olmoe" => Arch::Olmoe,
        "llama" if g.u64_opt("llama.expert_count")?.unwrap_or(0) > 0 => Arch::Mixtral,
        // llama.cpp's gating function 2 is sigmoid (DeepSeek-V3); 1 or none is softmax.
        "deepseek2" if g.u64_opt("deepseek2.expert_gating_func")? == Some(2) => Arch::DeepseekV3,
        "deepseek2" => Arch::DeepseekV2,
        "gpt-oss" => Arch::GptOss,
        other => {
            return Err(Error::config(
                "general.architecture",
                format!(
                    "`{other}` is not supported from GGUF (qwen3moe, qwen2moe, olmoe, \
                     deepseek2, gpt-oss and llama with experts, i.e. Mixtral, are)"
                ),
            ));
        }
    })
}

/// The GGUF key prefix of `arch` (`general.architecture`).
pub fn key_prefix(arch: Arch) -> &'static str {
    match arch {
        Arch::Qwen3Moe => "qwen3moe",
        Arch::Qwen2Moe => "qwen2moe",
        Arch::Olmoe => "olmoe",
        Arch::Mixtral => "llama",
        Arch::DeepseekV2 | Arch::DeepseekV3 => "deepseek2",
        Arch::GptOss => "gpt-oss",
    }
}

/// The config.json of the model in `g`.
pub fn hf_config(g: &GgufFile) -> Result<Value> {
    let arch = arch_of(g)?;
    let a = key_prefix(arch);
    let key = |k: &str| format!("{a}.{k}");
    let int = |k: &str| g.u64(&key(k));
    let mut c = Map::new();
    let mut set = |k: &str, v: Value| {
        c.insert(k.to_string(), v);
    };
    set("model_type", json!(arch.name()));
    set("hidden_size", json!(int("embedding_length")?));
    set("num_hidden_layers", json!(int("block_count")?));
    set("num_attention_heads", json!(int("attention.head_count")?));
    set(
        "num_key_value_heads",
        json!(uniform_count(g, &key("attention.head_count_kv"))?),
    );
    if matches!(arch, Arch::DeepseekV2 | Arch::DeepseekV3) {
        mla(g, a, &mut set)?;
    } else {
        // llama.cpp's converter writes the key only where config.json has `head_dim`;
        // without it llama.cpp takes hidden / heads, and so do we.
        let head_dim = match g.u64_opt(&key("attention.key_length"))? {
            Some(d) => d,
            None => {
                let heads = int("attention.head_count")?.max(1);
                int("embedding_length")? / heads
            }
        };
        let value_dim = g
            .u64_opt(&key("attention.value_length"))?
            .unwrap_or(head_dim);
        if value_dim != head_dim {
            return Err(Error::config(
                key("attention.value_length"),
                format!("is {value_dim}, the key length {head_dim}; they must match"),
            ));
        }
        set("head_dim", json!(head_dim));
    }
    set("vocab_size", json!(vocab_size(g, a)?));
    set("max_position_embeddings", json!(int("context_length")?));
    set(
        "rms_norm_eps",
        json!(g.f32(&key("attention.layer_norm_rms_epsilon"))?),
    );
    set(
        "rope_theta",
        json!(g.f32_opt(&key("rope.freq_base"))?.unwrap_or(10000.0)),
    );
    if let Some(rope) = rope_scaling(g, a, arch)? {
        set("rope_parameters", rope);
    }
    set("num_experts_per_tok", json!(int("expert_used_count")?));
    let experts = int("expert_count")?;
    let ff = int("feed_forward_length")?;
    let expert_ff = g.u64_opt(&key("expert_feed_forward_length"))?;
    match arch {
        Arch::Mixtral | Arch::GptOss => {
            set("num_local_experts", json!(experts));
            set("intermediate_size", json!(expert_ff.unwrap_or(ff)));
        }
        Arch::Olmoe => {
            set("num_experts", json!(experts));
            set("intermediate_size", json!(expert_ff.unwrap_or(ff)));
        }
        _ => {
            set("num_experts", json!(experts));
            set("intermediate_size", json!(ff));
            let expert_ff = expert_ff
                .ok_or_else(|| Error::config(key("expert_feed_forward_length"), "is missing"))?;
            set("moe_intermediate_size", json!(expert_ff));
            set("decoder_sparse_step", json!(1));
            set("mlp_only_layers", json!([]));
        }
    }
    if matches!(arch, Arch::DeepseekV2 | Arch::DeepseekV3) {
        deepseek_routing(g, a, arch, &mut set)?;
    }
    if arch == Arch::GptOss {
        let window = int("attention.sliding_window")?;
        set("sliding_window", json!(window));
        // llama.cpp's gpt-oss slides the window on even layers.
        let layers = int("block_count")?;
        let kinds: Vec<&str> = (0..layers)
            .map(|l| {
                if l % 2 == 0 {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect();
        set("layer_types", json!(kinds));
    }
    if arch == Arch::Qwen2Moe {
        let shared = g
            .u64_opt(&key("expert_shared_feed_forward_length"))?
            .unwrap_or(0);
        set("shared_expert_intermediate_size", json!(shared));
    }
    let norm = matches!(arch, Arch::Qwen3Moe | Arch::Mixtral);
    // gpt-oss softmaxes its top-k logits, which the config does not switch.
    let norm = g.bool_opt(&key("expert_weights_norm"))?.unwrap_or(norm);
    set("norm_topk_prob", json!(norm));
    set("tie_word_embeddings", json!(!g.contains("output.weight")));
    set(
        "bos_token_id",
        json!(g.u64_opt("tokenizer.ggml.bos_token_id")?),
    );
    set(
        "eos_token_id",
        json!(g.u64_opt("tokenizer.ggml.eos_token_id")?),
    );
    Ok(Value::Object(c))
}

/// `{arch}.vocab_size`, else the tokenizer's token count, else the embedding's rows.
fn vocab_size(g: &GgufFile, a: &str) -> Result<u64> {
    if let Some(v) = g.u64_opt(&format!("{a}.vocab_size"))? {
        return Ok(v);
    }
    if g.get("tokenizer.ggml.tokens").is_some() {
        return Ok(g.array("tokenizer.ggml.tokens")?.len() as u64);
    }
    let embed = g.tensor("token_embd.weight")?;
    Ok(embed.dims.get(1).copied().unwrap_or(0))
}

/// A count stored as one integer, or per layer as an array whose entries must all be equal.
fn uniform_count(g: &GgufFile, key: &str) -> Result<u64> {
    if let Ok(v) = g.u64(key) {
        return Ok(v);
    }
    let counts = g.i64s(key)?;
    match counts.first() {
        Some(&first) if first > 0 && counts.iter().all(|&c| c == first) => Ok(first as u64),
        _ => Err(Error::config(
            key,
            format!("is {counts:?}; per-layer counts that differ are not supported"),
        )),
    }
}

/// MLA's ranks and head sizes (`deepseek2`): `key_length_mla` is the per-head q/k size
/// (nope + rope), `value_length_mla` the value size, `rope.dimension_count` the rope part.
fn mla(g: &GgufFile, a: &str, set: &mut dyn FnMut(&str, Value)) -> Result<()> {
    let key = |k: &str| format!("{a}.{k}");
    let rope = g.u64(&key("rope.dimension_count"))?;
    let qk = g.u64(&key("attention.key_length_mla"))?;
    if qk <= rope {
        return Err(Error::config(
            key("attention.key_length_mla"),
            format!("is {qk}, not more than the rope size {rope}"),
        ));
    }
    let q_rank = g.u64_opt(&key("attention.q_lora_rank"))?.filter(|r| *r > 0);
    set("q_lora_rank", json!(q_rank));
    set(
        "kv_lora_rank",
        json!(g.u64(&key("attention.kv_lora_rank"))?),
    );
    set("qk_nope_head_dim", json!(qk - rope));
    set("qk_rope_head_dim", json!(rope));
    set(
        "v_head_dim",
        json!(g.u64(&key("attention.value_length_mla"))?),
    );
    set(
        "num_key_value_heads",
        json!(g.u64(&key("attention.head_count"))?),
    );
    Ok(())
}

/// DeepSeek's routing keys: shared experts, leading dense layers, the weight scale and groups.
fn deepseek_routing(
    g: &GgufFile,
    a: &str,
    arch: Arch,
    set: &mut dyn FnMut(&str, Value),
) -> Result<()> {
    let key = |k: &str| format!("{a}.{k}");
    let experts = g.u64(&key("expert_count"))?;
    set("n_routed_experts", json!(experts));
    set(
        "n_shared_experts",
        json!(g.u64_opt(&key("expert_shared_count"))?.unwrap_or(0)),
    );
    let dense = g.u64_opt(&key("leading_dense_block_count"))?.unwrap_or(0);
    set("first_k_dense_replace", json!(dense));
    let scale = g.f32_opt(&key("expert_weights_scale"))?.unwrap_or(1.0);
    set("routed_scaling_factor", json!(scale));
    let groups = g.u64_opt(&key("expert_group_count"))?.unwrap_or(1);
    let used = g.u64_opt(&key("expert_group_used_count"))?.unwrap_or(1);
    set("n_group", json!(groups));
    set("topk_group", json!(used));
    let method = match arch {
        Arch::DeepseekV3 => "noaux_tc",
        _ if groups > 1 => "group_limited_greedy",
        _ => "greedy",
    };
    set("topk_method", json!(method));
    if arch == Arch::DeepseekV3 {
        set("scoring_func", json!("sigmoid"));
    }
    Ok(())
}

/// `{arch}.rope.scaling.*` as `rope_parameters`: none, or YaRN as llama.cpp applies it
/// (its correction range is rounded to whole dimensions: `truncate`).
fn rope_scaling(g: &GgufFile, a: &str, arch: Arch) -> Result<Option<Value>> {
    let key = |k: &str| format!("{a}.rope.scaling.{k}");
    let theta = g
        .f32_opt(&format!("{a}.rope.freq_base"))?
        .unwrap_or(10000.0);
    match g.string_opt(&key("type"))? {
        None | Some("none") => Ok(None),
        Some("yarn") => {
            let mut p = Map::new();
            p.insert("rope_type".into(), json!("yarn"));
            p.insert("rope_theta".into(), json!(theta));
            p.insert("factor".into(), json!(g.f32(&key("factor"))?));
            let original = g.u64(&key("original_context_length"))?;
            p.insert("original_max_position_embeddings".into(), json!(original));
            p.insert(
                "beta_fast".into(),
                json!(g.f32_opt(&key("yarn_beta_fast"))?.unwrap_or(32.0)),
            );
            p.insert(
                "beta_slow".into(),
                json!(g.f32_opt(&key("yarn_beta_slow"))?.unwrap_or(1.0)),
            );
            p.insert("truncate".into(), json!(true));
            if let Some(m) = g.f32_opt(&key("yarn_log_multiplier"))?
                && matches!(arch, Arch::DeepseekV2 | Arch::DeepseekV3)
            {
                // llama.cpp stores 0.1 · mscale_all_dim.
                p.insert("mscale_all_dim".into(), json!(m / 0.1));
                p.insert("mscale".into(), json!(m / 0.1));
            }
            Ok(Some(Value::Object(p)))
        }
        Some(other) => Err(Error::config(
            key("type"),
            format!("`{other}` is not supported (none and yarn are)"),
        )),
    }
}
