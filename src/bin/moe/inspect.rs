//! `moe inspect`: architecture, layers, experts, routing, parameters and bytes of a checkpoint,
//! and the GPU memory plan of loading it with the given options.

use std::path::PathBuf;

use crate::out::{out, outln};
use anyhow::{Context as _, Result, bail};
use moe_gpu::format_bytes;
use moe_gpu::kernels::matmul::WeightFormat;
use moe_gpu::model::expected_tensors::check_tensors;
use moe_gpu::model::memory::MemoryPlan;
use moe_gpu::model::non_finite::NonFinite;
use moe_gpu::model::summary::ModelSummary;
use moe_gpu::model::{Checkpoint, ModelConfig, ModelOptions};
use moe_gpu::moe::budget::ArenaLimits;
use moe_gpu::moe::{ExpertBudget, ResidencyOptions, parse_bytes};

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model directory, or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
    /// Tokens per forward step the memory plan is sized for.
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_batch: usize,
    /// KV-cache length of the plan (default: min(max_position_embeddings, 4096)).
    #[arg(long, value_name = "N")]
    max_context: Option<usize>,
    /// VRAM for routed experts in the plan (e.g. 512M, 2G); default: this adapter's automatic
    /// budget.
    #[arg(long, value_name = "BYTES")]
    expert_budget: Option<String>,
    /// Expert weight format of the plan [default: the checkpoint's own: mxfp4 for a gpt-oss
    /// MXFP4 checkpoint, else f32].
    #[arg(long, value_parser = crate::weight_formats())]
    dtype: Option<String>,
    /// Also read every tensor and report its NaN and infinite values (exits non-zero if any).
    #[arg(long)]
    verify: bool,
}

pub fn run(a: Args) -> Result<()> {
    let s = ModelSummary::from_dir(&a.model)?;
    let cfg = ModelConfig::load(&a.model)?;
    let ckpt = Checkpoint::open(&a.model)?;
    let budget = match &a.expert_budget {
        Some(b) => ExpertBudget::Bytes(parse_bytes(b).context("--expert-budget")?),
        None => ExpertBudget::Auto,
    };
    let options = ModelOptions {
        max_batch: a.max_batch,
        max_context: a.max_context,
        expert_format: a.dtype.as_deref().map(WeightFormat::parse).transpose()?,
        residency: ResidencyOptions {
            budget,
            ..Default::default()
        },
        ..Default::default()
    };
    check(&cfg, &ckpt)?;
    let non_finite = if a.verify { verify(&ckpt)? } else { Vec::new() };
    let ctx = moe_gpu::Context::new()?;
    let plan = MemoryPlan::new(&cfg, &ckpt, &options, ArenaLimits::of(&ctx))?;
    if a.json {
        let mut value = serde_json::to_value(&s)?;
        value["memory"] = serde_json::to_value(&plan)?;
        if a.verify {
            value["non_finite"] = serde_json::to_value(&non_finite)?;
        }
        outln!("{}", serde_json::to_string_pretty(&value)?)?;
    } else {
        out!("{}{}", s.report(), report(&plan))?;
        if a.verify {
            outln!("verify                       {}", verified(&non_finite))?;
        }
    }
    if !non_finite.is_empty() {
        bail!("{}", verified(&non_finite));
    }
    Ok(())
}

/// Every tensor the config asks for, by name, shape and dtype: each mismatch is an error line;
/// tensors nothing reads are warnings.
fn check(cfg: &ModelConfig, ckpt: &Checkpoint) -> Result<()> {
    let found = check_tensors(cfg, ckpt)?;
    for name in &found.unexpected {
        eprintln!(
            "warning: tensor {name} is not used by a {} model",
            cfg.arch.name()
        );
    }
    if !found.errors.is_empty() {
        bail!(
            "the checkpoint does not match config.json:\n  {}",
            found.errors.join("\n  ")
        );
    }
    Ok(())
}

/// Reads every tensor, in name order, for NaN and infinity.
fn verify(ckpt: &Checkpoint) -> Result<Vec<NonFinite>> {
    let mut names: Vec<&str> = ckpt.names().collect();
    names.sort_unstable();
    let mut found = Vec::new();
    for name in names {
        found.extend(ckpt.non_finite(name)?);
    }
    Ok(found)
}

/// One line per tensor with NaN or infinite values, or that every value is finite.
fn verified(found: &[NonFinite]) -> String {
    if found.is_empty() {
        return "every value is finite".into();
    }
    let lines: Vec<String> = found
        .iter()
        .map(|f| {
            format!(
                "tensor {}: {} NaN or infinite values, the first at flat index {} ({})",
                f.tensor, f.count, f.first, f.value
            )
        })
        .collect();
    format!(
        "{} tensors are not finite:\n  {}",
        found.len(),
        lines.join("\n  ")
    )
}

/// The adapter's memory and whether the plan fits it.
fn fit(p: &MemoryPlan) -> String {
    let (Some(memory), Some(budget)) = (p.device_memory, p.fitting_budget) else {
        return "unknown: the backend reports none (MOE_GPU_DEVICE_MEMORY states it)".into();
    };
    let memory_text = format_bytes(memory);
    if p.least > memory {
        format!("{memory_text}: does not fit, even with the smallest expert budget")
    } else if p.fits == Some(true) {
        format!("{memory_text}: fits")
    } else {
        format!(
            "{memory_text}: fits with an expert budget of at most {} (the default budget \
             shrinks to it)",
            format_bytes(budget)
        )
    }
}

fn report(p: &MemoryPlan) -> String {
    let mib = |b: u64| format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64);
    let mut s = format!(
        "memory plan                  max_batch {}, max_context {}, {} experts\n",
        p.max_batch, p.max_context, p.expert_format
    );
    let rows = [
        (
            "  expert slots",
            format!(
                "{} ({} per MoE layer × {} layers)",
                mib(p.expert_slots),
                p.slots_per_layer,
                p.moe_layers
            ),
        ),
        ("  other weights", mib(p.other_weights)),
        ("  KV cache", mib(p.kv_cache)),
        ("  activations", mib(p.activations)),
        ("  staging", mib(p.staging)),
        ("  total", mib(p.total)),
        ("  least (k experts)", mib(p.least)),
        ("device memory", fit(p)),
    ];
    for (k, v) in rows {
        s.push_str(&format!("{k:<28} {v}\n"));
    }
    s
}
