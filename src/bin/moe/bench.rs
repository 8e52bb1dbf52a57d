//! `moe bench`: sparse speedup, grouped GEMM efficiency, decode bandwidth efficiency, host cost
//! and submits per step, at shapes that imitate real models (see `moe_gpu::bench`).

use crate::out::{out, outln};
use crate::progress;
use anyhow::{Result, bail};
use moe_gpu::bench::{self, BenchConfig, MODELS, RealModel};
use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::{Context, ContextOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Smaller shapes and fewer repeats: about three minutes on a two-core software adapter.
    #[arg(long)]
    quick: bool,
    /// Print one JSON object (every figure with its shape and unit) instead of text.
    #[arg(long)]
    json: bool,
    /// Only these models (repeatable): Mixtral-8x7B, Qwen3-30B-A3B, DeepSeek-V2-Lite,
    /// OLMoE-1B-7B, gpt-oss-20b.
    #[arg(long = "model")]
    models: Vec<String>,
    /// Divide the real hidden and intermediate sizes by this for the prefill figures
    /// [default: 8 with --quick, else 4].
    #[arg(long)]
    scale: Option<usize>,
    /// Tokens of the prefill step [default: 128 with --quick, else 256].
    #[arg(long)]
    tokens: Option<usize>,
    /// Timings per figure (the median is reported) [default: 3 with --quick, else 5].
    #[arg(long)]
    repeats: Option<usize>,
    /// Expert weight format on the GPU (routed and shared experts; attention, dense layers and
    /// the router stay f32): int8 has one scale per row, int4 and mxfp4 one per 32 values, and GGUF's q8_0 … q6_k are llama.cpp's types.
    #[arg(long, default_value = "f16", value_parser = crate::weight_formats())]
    dtype: String,
    /// Use the fixed default tilings instead of the autotuner's (same as MOE_GPU_TUNE=0).
    #[arg(long)]
    no_tune: bool,
}

pub fn run(a: Args) -> Result<()> {
    let mut config = if a.quick {
        BenchConfig::quick()
    } else {
        BenchConfig::full()
    };
    if !a.models.is_empty() {
        config.models = a
            .models
            .iter()
            .map(|name| {
                RealModel::by_name(name).ok_or_else(|| {
                    let names: Vec<&str> = MODELS.iter().map(|m| m.name).collect();
                    anyhow::anyhow!("unknown model `{name}`; choose from {}", names.join(", "))
                })
            })
            .collect::<Result<_>>()?;
    }
    if let Some(s) = a.scale {
        if s == 0 {
            bail!("--scale must be at least 1");
        }
        config.prefill_scale = s;
    }
    if let Some(t) = a.tokens {
        if t == 0 {
            bail!("--tokens must be at least 1");
        }
        config.prefill_tokens = t;
    }
    if let Some(r) = a.repeats {
        config.repeats = r.max(1);
    }
    config.format = ExpertFormat::uniform(WeightFormat::parse(&a.dtype)?);
    let mut options = ContextOptions::from_env()?;
    if a.no_tune {
        options.autotune = false;
    }
    let ctx = Context::with_options(&options)?;
    let command = std::env::args().collect::<Vec<_>>().join(" ");
    eprintln!("moe bench ({}) on {}", config.mode, ctx.describe());
    let bar = progress::spinner("measuring")?;
    let report = bench::run(&ctx, &config, &command, &mut |line| {
        bar.suspend(|| eprintln!("  {line}"));
        bar.set_message(line.to_string());
    });
    bar.finish_and_clear();
    let report = report?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?)?;
    } else {
        out!("{}", report.to_text())?;
    }
    Ok(())
}
