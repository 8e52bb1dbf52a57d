//! llama.cpp's tensor names (`blk.3.ffn_gate_exps.weight`) as the Hugging Face names the loader
//! asks for (`model.layers.3.mlp.experts.7.gate_proj.weight`), with how each view is read:
//! a tensor as it is, one expert of a stacked `[E, rows, k]` tensor, a vector as a `[1, n]`
//! matrix, or Q/K rows put back in Hugging Face's RoPE order where llama.cpp's converter
//! interleaved them (the `llama` architecture).

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::gguf::GgufFile;
use crate::model::arch::Arch;
use crate::model::config::ModelConfig;

/// How a Hugging Face tensor is read from a GGUF tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GgufView {
    /// The GGUF tensor as it is (its dims reversed are the Hugging Face shape).
    Whole(String),
    /// Slice `expert` of a stacked `[E, rows, k]` expert tensor.
    Expert(String, usize),
    /// A vector of `n` values read as a `[1, n]` matrix.
    Row(String),
    /// Q or K rows of `heads` heads in llama.cpp's interleaved RoPE order, read back in Hugging
    /// Face's half-split order.
    Unpermuted(String, usize),
    /// MLA's `kv_b_proj` from current llama.cpp's split form: per head, `attn_k_b` `[kv_lora,
    /// nope]` transposed, then `attn_v_b` `[v, kv_lora]`.
    KvB(String, String),
}

impl GgufView {
    /// The GGUF tensor the view reads.
    pub fn tensor(&self) -> &str {
        match self {
            Self::Whole(t)
            | Self::Expert(t, _)
            | Self::Row(t)
            | Self::Unpermuted(t, _)
            | Self::KvB(t, _) => t,
        }
    }
}

/// Every tensor of `g` under its Hugging Face name; a GGUF tensor with no Hugging Face
/// counterpart here is an error naming it.
pub fn hf_views(g: &GgufFile, cfg: &ModelConfig) -> Result<HashMap<String, GgufView>> {
    let mut views = HashMap::new();
    for t in g.tensors() {
        for (hf, view) in views_of(&t.name, cfg)? {
            views.insert(hf, view);
        }
    }
    Ok(views)
}

fn views_of(gguf: &str, cfg: &ModelConfig) -> Result<Vec<(String, GgufView)>> {
    let whole = |hf: &str| Ok(vec![(hf.to_string(), GgufView::Whole(gguf.to_string()))]);
    match gguf {
        "token_embd.weight" => return whole("model.embed_tokens.weight"),
        "output_norm.weight" => return whole("model.norm.weight"),
        "output.weight" => return whole("lm_head.weight"),
        _ => {}
    }
    let unknown = || {
        Error::tensor(
            gguf,
            format!(
                "has no counterpart in a {} model here (an unsupported GGUF layout?)",
                cfg.arch.name()
            ),
        )
    };
    let rest = gguf.strip_prefix("blk.").ok_or_else(unknown)?;
    let (layer, suffix) = rest.split_once('.').ok_or_else(unknown)?;
    let layer: usize = layer.parse().map_err(|_| unknown())?;
    if layer >= cfg.layers {
        return Err(Error::tensor(
            gguf,
            format!("is in layer {layer}; the model has {} layers", cfg.layers),
        ));
    }
    let p = format!("model.layers.{layer}.");
    let m = cfg.arch.mlp_prefix(layer);
    // llama.cpp's converter interleaves Q/K rows for the `llama` architecture only.
    let llama_rope = cfg.arch == Arch::Mixtral;
    let view = |hf: String| Ok(vec![(hf, GgufView::Whole(gguf.to_string()))]);
    let attn = |proj: &str, heads: usize| {
        let hf = format!("{p}self_attn.{proj}.weight");
        if llama_rope {
            Ok(vec![(hf, GgufView::Unpermuted(gguf.to_string(), heads))])
        } else {
            view(hf)
        }
    };
    let shared = |proj: &str| {
        let name = cfg.arch.shared_expert_name();
        view(format!("{m}{name}.{proj}_proj.weight"))
    };
    let experts = |proj: &str| {
        let hf = expert_name(cfg.arch, proj);
        (0..cfg.experts_in(layer))
            .map(|x| {
                let view = GgufView::Expert(gguf.to_string(), x);
                (format!("{m}experts.{x}.{hf}.weight"), view)
            })
            .collect()
    };
    let expert_biases = |proj: &str| {
        let hf = expert_name(cfg.arch, proj);
        (0..cfg.experts_in(layer))
            .map(|x| {
                let view = GgufView::Expert(gguf.to_string(), x);
                (format!("{m}experts.{x}.{hf}.bias"), view)
            })
            .collect()
    };
    let a = &cfg.attention;
    match suffix {
        "attn_norm.weight" => view(format!("{p}input_layernorm.weight")),
        "ffn_norm.weight" | "post_attention_norm.weight" => {
            view(format!("{p}post_attention_layernorm.weight"))
        }
        "attn_q_a.weight" => view(format!("{p}self_attn.q_a_proj.weight")),
        "attn_q_a_norm.weight" => view(format!("{p}self_attn.q_a_layernorm.weight")),
        "attn_q_b.weight" => view(format!("{p}self_attn.q_b_proj.weight")),
        "attn_kv_a_mqa.weight" => view(format!("{p}self_attn.kv_a_proj_with_mqa.weight")),
        "attn_kv_a_norm.weight" => view(format!("{p}self_attn.kv_a_layernorm.weight")),
        "attn_kv_b.weight" => view(format!("{p}self_attn.kv_b_proj.weight")),
        "attn_k_b.weight" => Ok(vec![(
            format!("{p}self_attn.kv_b_proj.weight"),
            GgufView::KvB(gguf.to_string(), format!("blk.{layer}.attn_v_b.weight")),
        )]),
        // Read with attn_k_b, as one kv_b_proj.
        "attn_v_b.weight" => Ok(Vec::new()),
        "attn_sinks.weight" => view(format!("{p}self_attn.sinks")),
        "attn_output.bias" => view(format!("{p}self_attn.o_proj.bias")),
        "exp_probs_b.bias" => view(format!("{m}gate.e_score_correction_bias")),
        "ffn_gate_inp.bias" => view(format!("{m}{}.bias", cfg.arch.router_name())),
        "ffn_gate_exps.bias" => Ok(expert_biases("gate")),
        "ffn_up_exps.bias" => Ok(expert_biases("up")),
        "ffn_down_exps.bias" => Ok(expert_biases("down")),
        "attn_q.weight" => attn("q_proj", a.heads),
        "attn_k.weight" => attn("k_proj", a.kv_heads),
        "attn_v.weight" => view(format!("{p}self_attn.v_proj.weight")),
        "attn_output.weight" => view(format!("{p}self_attn.o_proj.weight")),
        "attn_q.bias" => view(format!("{p}self_attn.q_proj.bias")),
        "attn_k.bias" => view(format!("{p}self_attn.k_proj.bias")),
        "attn_v.bias" => view(format!("{p}self_attn.v_proj.bias")),
        "attn_q_norm.weight" => view(format!("{p}self_attn.q_norm.weight")),
        "attn_k_norm.weight" => view(format!("{p}self_attn.k_norm.weight")),
        "ffn_gate_inp.weight" => view(format!("{m}{}.weight", cfg.arch.router_name())),
        "ffn_gate.weight" => view(format!("{m}gate_proj.weight")),
        "ffn_up.weight" => view(format!("{m}up_proj.weight")),
        "ffn_down.weight" => view(format!("{m}down_proj.weight")),
        "ffn_gate_shexp.weight" => shared("gate"),
        "ffn_up_shexp.weight" => shared("up"),
        "ffn_down_shexp.weight" => shared("down"),
        "ffn_gate_inp_shexp.weight" => Ok(vec![(
            format!("{m}shared_expert_gate.weight"),
            GgufView::Row(gguf.to_string()),
        )]),
        "ffn_gate_exps.weight" => Ok(experts("gate")),
        "ffn_up_exps.weight" => Ok(experts("up")),
        "ffn_down_exps.weight" => Ok(experts("down")),
        _ => Err(unknown()),
    }
}

/// The Hugging Face name of a routed expert's `gate`, `up` or `down` matrix.
pub(crate) fn expert_name(arch: Arch, proj: &str) -> &'static str {
    match (arch, proj) {
        (Arch::Mixtral, "gate") => "w1",
        (Arch::Mixtral, "up") => "w3",
        (Arch::Mixtral, _) => "w2",
        (_, "gate") => "gate_proj",
        (_, "up") => "up_proj",
        _ => "down_proj",
    }
}

/// Rows of a `[heads · d, k]` Q or K matrix in llama.cpp's interleaved RoPE order back in Hugging
/// Face's order: within each head, GGUF row `2i + j` is Hugging Face row `j · d/2 + i`.
pub fn unpermute_rows(w: &[f32], heads: usize, k: usize) -> Vec<f32> {
    let rows = w.len() / k.max(1);
    let d = rows / heads.max(1);
    let mut out = vec![0.0; w.len()];
    for h in 0..heads {
        for i in 0..d / 2 {
            for j in 0..2 {
                let from = (h * d + 2 * i + j) * k;
                let to = (h * d + j * d / 2 + i) * k;
                out[to..to + k].copy_from_slice(&w[from..from + k]);
            }
        }
    }
    out
}

/// kv_b_proj `[heads · (nope + v), kv_lora]` from per-head `k_b` (`[heads, kv_lora, nope]`) and
/// `v_b` (`[heads, v, kv_lora]`).
pub fn join_kv_b(k_b: &[f32], v_b: &[f32], heads: usize, kv_lora: usize) -> Vec<f32> {
    let nope = k_b.len() / (heads * kv_lora).max(1);
    let v = v_b.len() / (heads * kv_lora).max(1);
    let mut out = Vec::with_capacity(k_b.len() + v_b.len());
    for h in 0..heads {
        let k = &k_b[h * kv_lora * nope..(h + 1) * kv_lora * nope];
        for n in 0..nope {
            out.extend((0..kv_lora).map(|r| k[r * nope + n]));
        }
        out.extend_from_slice(&v_b[h * v * kv_lora..(h + 1) * v * kv_lora]);
    }
    out
}
