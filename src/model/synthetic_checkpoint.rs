//! A synthetic OLMoE-style checkpoint with deterministic random weights, written as a real
//! Hugging Face model directory (config.json + model.safetensors) so that it loads through the
//! same path as a downloaded model. It drives `moe demo` and tests that need shapes the
//! fixtures do not have.

use std::path::Path;

use safetensors::Dtype;
use safetensors::tensor::TensorView;
use serde_json::json;

use crate::error::{Error, Result};
use crate::model::safetensors_file::write_safetensors;
use crate::synthetic::Rng;

/// The shape of a synthetic OLMoE model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyntheticShape {
    /// Decoder layers.
    pub layers: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Routed experts per layer.
    pub experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Expert width (`intermediate_size`).
    pub inter: usize,
    /// Vocabulary size.
    pub vocab: usize,
    /// `max_position_embeddings`.
    pub max_positions: usize,
}

impl SyntheticShape {
    /// OLMoE-1B-7B (16 layers, hidden 2048, 16 heads, 64 experts of 1024, top-8, vocab 50304)
    /// scaled down to run in seconds on a software adapter; the routing shape is kept.
    pub const OLMOE_SMALL: SyntheticShape = SyntheticShape {
        layers: 4,
        hidden: 256,
        heads: 8,
        kv_heads: 8,
        experts: 64,
        top_k: 8,
        inter: 128,
        vocab: 4096,
        max_positions: 4096,
    };

    fn check(&self) -> Result<()> {
        let s = self;
        let positive = [
            s.layers, s.hidden, s.heads, s.kv_heads, s.experts, s.top_k, s.inter,
        ];
        if positive.contains(&0) || s.vocab == 0 {
            return Err(Error::input(format!("synthetic model: zero size in {s:?}")));
        }
        if !s.hidden.is_multiple_of(s.heads)
            || !(s.hidden / s.heads).is_multiple_of(2)
            || !s.heads.is_multiple_of(s.kv_heads)
            || s.top_k > s.experts
        {
            return Err(Error::input(format!(
                "synthetic model: heads must divide hidden into even head dims, kv_heads must \
                 divide heads and top_k ≤ experts ({s:?})"
            )));
        }
        if s.bytes().is_none() {
            return Err(Error::input(format!(
                "synthetic model: the checkpoint's size overflows 2^64 bytes ({s:?})"
            )));
        }
        Ok(())
    }

    /// Bytes of the f32 weights (an upper bound when `kv_heads < heads`), or None if the
    /// count overflows `u64`.
    pub fn bytes(&self) -> Option<u64> {
        let s = self;
        let [layers, hidden, experts, inter, vocab] =
            [s.layers, s.hidden, s.experts, s.inter, s.vocab].map(|v| v as u64);
        let expert = inter.checked_mul(hidden)?.checked_mul(3)?;
        let moe = experts.checked_mul(expert.checked_add(hidden)?)?;
        let attention = hidden.checked_mul(hidden)?.checked_mul(4)?;
        let layer = moe
            .checked_add(attention)?
            .checked_add(hidden.checked_mul(4)?)?;
        let embeddings = vocab.checked_mul(hidden)?.checked_mul(2)?;
        layers
            .checked_mul(layer)?
            .checked_add(embeddings)?
            .checked_add(hidden)?
            .checked_mul(4)
    }
}

/// Writes config.json and model.safetensors of an OLMoE model with `shape` into `dir`.
/// Weights are N(0, 1/fan_in), norms 1 + N(0, 0.1²) and routers N(0, (2/√hidden)²), so that
/// routing is spread over the experts as in trained models; the same seed gives the same files.
pub fn write_olmoe(dir: &Path, shape: &SyntheticShape, seed: u64) -> Result<()> {
    shape.check()?;
    let s = shape;
    let hd = s.hidden / s.heads;
    let config = json!({
        "architectures": ["OlmoeForCausalLM"],
        "model_type": "olmoe",
        "hidden_size": s.hidden,
        "intermediate_size": s.inter,
        "num_hidden_layers": s.layers,
        "num_attention_heads": s.heads,
        "num_key_value_heads": s.kv_heads,
        "num_experts": s.experts,
        "num_experts_per_tok": s.top_k,
        "norm_topk_prob": false,
        "vocab_size": s.vocab,
        "max_position_embeddings": s.max_positions,
        "rms_norm_eps": 1e-5,
        "rope_parameters": {"rope_theta": 10000.0, "rope_type": "default"},
        "tie_word_embeddings": false,
        "hidden_act": "silu",
        "eos_token_id": null,
    });
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).map_err(|e| Error::io(&path, e))?;

    let mut rng = Rng::new(seed);
    let mut tensors: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    let mut add = |name: String, shape: Vec<usize>, values: Vec<f32>| {
        tensors.push((name, shape, values));
    };
    let linear =
        |rng: &mut Rng, out: usize, inp: usize| rng.normals(out * inp, (inp as f32).powf(-0.5));
    let norm = |rng: &mut Rng, n: usize| rng.normals(n, 0.1).iter().map(|v| 1.0 + v).collect();
    add(
        "model.embed_tokens.weight".into(),
        vec![s.vocab, s.hidden],
        rng.normals(s.vocab * s.hidden, 1.0),
    );
    for l in 0..s.layers {
        let p = format!("model.layers.{l}.");
        let a = format!("{p}self_attn.");
        add(
            format!("{p}input_layernorm.weight"),
            vec![s.hidden],
            norm(&mut rng, s.hidden),
        );
        add(
            format!("{p}post_attention_layernorm.weight"),
            vec![s.hidden],
            norm(&mut rng, s.hidden),
        );
        add(
            format!("{a}q_proj.weight"),
            vec![s.heads * hd, s.hidden],
            linear(&mut rng, s.heads * hd, s.hidden),
        );
        add(
            format!("{a}k_proj.weight"),
            vec![s.kv_heads * hd, s.hidden],
            linear(&mut rng, s.kv_heads * hd, s.hidden),
        );
        add(
            format!("{a}v_proj.weight"),
            vec![s.kv_heads * hd, s.hidden],
            linear(&mut rng, s.kv_heads * hd, s.hidden),
        );
        add(
            format!("{a}o_proj.weight"),
            vec![s.hidden, s.heads * hd],
            linear(&mut rng, s.hidden, s.heads * hd),
        );
        add(
            format!("{a}q_norm.weight"),
            vec![s.heads * hd],
            norm(&mut rng, s.heads * hd),
        );
        add(
            format!("{a}k_norm.weight"),
            vec![s.kv_heads * hd],
            norm(&mut rng, s.kv_heads * hd),
        );
        let m = format!("{p}mlp.");
        add(
            format!("{m}gate.weight"),
            vec![s.experts, s.hidden],
            rng.normals(s.experts * s.hidden, 2.0 / (s.hidden as f32).sqrt()),
        );
        for e in 0..s.experts {
            let x = format!("{m}experts.{e}.");
            add(
                format!("{x}gate_proj.weight"),
                vec![s.inter, s.hidden],
                linear(&mut rng, s.inter, s.hidden),
            );
            add(
                format!("{x}up_proj.weight"),
                vec![s.inter, s.hidden],
                linear(&mut rng, s.inter, s.hidden),
            );
            add(
                format!("{x}down_proj.weight"),
                vec![s.hidden, s.inter],
                linear(&mut rng, s.hidden, s.inter),
            );
        }
    }
    add(
        "model.norm.weight".into(),
        vec![s.hidden],
        norm(&mut rng, s.hidden),
    );
    add(
        "lm_head.weight".into(),
        vec![s.vocab, s.hidden],
        linear(&mut rng, s.vocab, s.hidden),
    );

    let bytes: Vec<Vec<u8>> = tensors
        .iter()
        .map(|(_, _, v)| bytemuck::cast_slice(v).to_vec())
        .collect();
    let views = tensors
        .iter()
        .zip(&bytes)
        .map(|((name, shape, _), b)| {
            TensorView::new(Dtype::F32, shape.clone(), b)
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::tensor(name, e.to_string()))
        })
        .collect::<Result<Vec<_>>>()?;
    let path = dir.join("model.safetensors");
    write_safetensors(views, None, &path)
}
