//! `moe block`: one MoE block of a checkpoint, input and output as safetensors.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result, bail};
use moe_gpu::Context;
use moe_gpu::kernels::INVALID;
use moe_gpu::kernels::expert_arena::ExpertArena;
use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::model::{
    Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec_for, native_expert_formats,
};
use moe_gpu::moe::activation_policy::ActivationSummary;
use moe_gpu::moe::{ForwardOptions, LayerBuild, MoeLayer, ResidencyStats};

use crate::activation::activation_policy;
use crate::io::{OutTensor, write_safetensors};
use crate::residency_args::ResidencyArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model directory (config.json + safetensors), or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Decoder layer index (must be an MoE layer).
    #[arg(long, value_parser = layer_index)]
    layer: usize,
    /// safetensors file holding `input`: f32 [tokens, hidden].
    #[arg(long)]
    input: PathBuf,
    /// Where to write output, topk_ids, topk_weights and router_logits.
    #[arg(long)]
    output: PathBuf,
    /// Expert weight format on the GPU (routed and shared experts; attention, dense layers and
    /// the router stay f32): int8 has one scale per row, int4 and mxfp4 one per 32 values, and GGUF's q8_0 … q6_k are llama.cpp's types
    /// [default: the checkpoint's own: mxfp4 for a gpt-oss MXFP4 checkpoint, else f32].
    #[arg(long, value_parser = crate::weight_formats())]
    dtype: Option<String>,
    /// Use this many experts per token instead of the checkpoint's k (≤ k).
    #[arg(long)]
    top_k: Option<usize>,
    /// Drop a selected expert whose weight is below β × the top weight: a number in [0, 1],
    /// or `auto` for the per-layer median of w2/w1 from --calibration (the NAEE rule).
    #[arg(long)]
    skip_threshold: Option<String>,
    /// Keep the smallest expert set whose routing probability reaches p (bounded by k).
    #[arg(long)]
    top_p: Option<f32>,
    /// Calibration statistics from `moe calibrate` (needed by --skip-threshold auto).
    #[arg(long)]
    calibration: Option<PathBuf>,
    /// Tokens per step: the input runs in steps of this many tokens (default: all, at most
    /// 4096). Small steps on a small expert budget make the cache evict between steps.
    #[arg(long, value_name = "N")]
    chunk_tokens: Option<usize>,
    /// For one block the expert budget is that one layer's.
    #[command(flatten)]
    residency: ResidencyArgs,
}

pub fn run(a: Args) -> Result<()> {
    let cfg = ModelConfig::load(&a.model)?;
    let ckpt = Arc::new(Checkpoint::open(&a.model)?);
    let format = match &a.dtype {
        Some(name) => ExpertFormat::uniform(WeightFormat::parse(name)?),
        None => *native_expert_formats(&ckpt, &cfg)?
            .get(a.layer)
            .ok_or_else(|| anyhow::anyhow!("layer {} of {}", a.layer, cfg.layers))?,
    };
    let input = Checkpoint::open_file(&a.input)?;
    let shape = input.shape("input")?.to_vec();
    if shape.len() != 2 || shape[1] != cfg.hidden || shape[0] == 0 {
        bail!(
            "{}: tensor `input` has shape {shape:?}, expected [tokens, {}]",
            a.input.display(),
            cfg.hidden
        );
    }
    let x = input.f32_any("input")?;
    let tokens = shape[0];
    let chunk = match a.chunk_tokens {
        Some(0) => bail!("--chunk-tokens must be at least 1"),
        Some(n) => n.min(tokens),
        None => tokens.min(4096),
    };
    let ctx = Context::new()?;
    let weights = load_moe_weights(&ckpt, &cfg, a.layer)?;
    let spec = moe_layer_spec_for(&cfg, a.layer, format);
    let options = a.residency.options()?;
    let slots = options.placement(&ctx, &spec, 1)?.slots();
    let build = LayerBuild {
        max_tokens: chunk,
        io: None,
        buffers: None,
        slots,
        residency: &options,
        layer: a.layer,
        pool: None,
    };
    let layer = MoeLayer::build(&ctx, spec, &weights, build).context("building the MoE layer")?;
    let (policy, calibration) = activation_policy(
        a.top_k,
        a.skip_threshold.as_deref(),
        a.top_p,
        a.calibration.as_deref(),
    )?;
    let activation = policy.for_layer(a.layer, calibration.as_ref())?;
    let out = layer.forward_with(
        &ctx,
        &x,
        &ForwardOptions {
            capture_routing: true,
            activation,
        },
    )?;
    let (h, e, k) = (cfg.hidden, cfg.experts_in(a.layer), cfg.moe.routing.top_k);
    let raw_ids = out.topk_ids.unwrap_or_default();
    let spec = layer.spec.clone();
    let summary = ActivationSummary::from_ids(
        &raw_ids,
        k,
        ExpertArena::expert_bytes(spec.hidden, spec.inter, spec.format, spec.expert_bias),
    );
    let ids: Vec<i64> = raw_ids
        .iter()
        .map(|&id| if id == INVALID { -1 } else { id as i64 })
        .collect();
    // Non-finite router logits already failed the forward (the router status word).
    if let Some(at) = out.output.iter().position(|v| !v.is_finite()) {
        bail!(
            "layer {}: output of token {}, column {} is {}; not writing {}",
            a.layer,
            at / h,
            at % h,
            out.output[at],
            a.output.display()
        );
    }
    write_safetensors(
        &a.output,
        &[
            OutTensor::f32("output", vec![tokens, h], &out.output),
            OutTensor::i64("topk_ids", vec![tokens, k], &ids),
            OutTensor::f32(
                "topk_weights",
                vec![tokens, k],
                &out.topk_weights.unwrap_or_default(),
            ),
            OutTensor::f32(
                "router_logits",
                vec![tokens, e],
                &out.router_logits.unwrap_or_default(),
            ),
        ],
    )?;
    eprintln!(
        "layer {} of {}: {tokens} tokens in steps of {chunk} → {} on {}",
        a.layer,
        cfg.arch.name(),
        a.output.display(),
        ctx.describe()
    );
    eprintln!(
        "activated experts per token: {:.2} of k = {} ({:.0} expert weight bytes per token, {:.0} saved)",
        summary.activated_experts_per_token,
        k,
        summary.weight_bytes_per_token,
        summary.weight_bytes_saved_per_token
    );
    let residency = ResidencyStats::from_layers(vec![layer.stats()]);
    a.residency.finish(&residency, k)
}

/// `--layer`: a decoder layer index from 0; a negative one is refused with the reason.
fn layer_index(text: &str) -> Result<usize, String> {
    match text.parse::<i64>() {
        Ok(i) if i < 0 => Err(format!(
            "layers count from 0 (0 to num_hidden_layers - 1); {i} counts from the end, \
             which is not supported"
        )),
        _ => text
            .parse()
            .map_err(|_| format!("`{text}` is not a layer index (0, 1, 2, ...)")),
    }
}
