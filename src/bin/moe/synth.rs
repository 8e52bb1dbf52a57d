//! `moe synth`: writes a Hugging Face checkpoint with random weights shaped like a published MoE
//! model, one shard at a time, printing a line to stderr per file and a summary to stdout.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context as _, Result};
use moe_gpu::model::synth::SynthPlan;
use moe_gpu::model::synth::presets::{PRESETS, SynthDtype};
use moe_gpu::model::synth::writer::SHARD_BYTES;

use crate::out::outln;

#[derive(clap::Args)]
pub struct Args {
    /// The model to imitate: its config.json values, tensor names, shapes and sharding.
    #[arg(long, value_name = "NAME", value_parser = clap::builder::PossibleValuesParser::new(PRESETS))]
    like: String,
    /// Decoder layers to write (default: the model's own count).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=65536))]
    layers: Option<u64>,
    /// How to store the routed experts (default: as released; mxfp4 only for gpt-oss-20b).
    #[arg(long, value_parser = ["bf16", "mxfp4"])]
    dtype: Option<String>,
    /// Seed of the random weights; the same seed writes the same bytes.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Directory to write config.json and the safetensors files into (created if needed).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn run(a: Args) -> Result<()> {
    let dtype = a.dtype.as_deref().map(SynthDtype::parse).transpose()?;
    let plan = SynthPlan::preset(&a.like, a.layers.map(|n| n as usize), dtype, a.seed)
        .with_context(|| format!("--like {}", a.like))?;
    let gb = |b: u64| b as f64 / 1e9;
    let start = Instant::now();
    let written = plan.write(&a.out, SHARD_BYTES, |w| {
        eprintln!(
            "wrote {} ({:.2} GB, {} tensors) in {:.1} s ({:.2} GB/s)",
            w.path.display(),
            gb(w.bytes),
            w.tensors,
            w.seconds,
            gb(w.bytes) / w.seconds.max(1e-9)
        );
    })?;
    let layers = plan.config["num_hidden_layers"].as_u64().unwrap_or(0);
    outln!(
        "{}: {layers} layers, {:.2} B parameters, {:.2} GB in {} file(s) under {} in {:.1} s",
        a.like,
        plan.params() as f64 / 1e9,
        gb(plan.bytes()),
        written.len(),
        a.out.display(),
        start.elapsed().as_secs_f64()
    )?;
    Ok(())
}
