//! `moe bench-attention`: a decode step's attention over long KV caches, split-KV against the
//! unsplit kernel, at real models' attention shapes (see `moe_gpu::bench::attention_splits`).

use crate::out::outln;
use anyhow::{Result, bail};
use moe_gpu::Context;
use moe_gpu::bench::attention_splits::{ATTENTION_SHAPES, AttentionFigure, bench_attention};
use moe_gpu::gpu::GpuTimer;

#[derive(clap::Args)]
pub struct Args {
    /// Cache positions the query attends over; repeat or separate with commas.
    #[arg(long, value_delimiter = ',', default_values_t = [512, 2048, 4096])]
    positions: Vec<usize>,
    /// Only these shapes (repeatable): Mixtral-8x7B, Qwen3-30B-A3B, OLMoE-1B-7B, gpt-oss-20b,
    /// DeepSeek-V2-Lite (a prefix is enough).
    #[arg(long = "model")]
    models: Vec<String>,
    /// Timings per figure, alternating the two kernels (the median is reported).
    #[arg(long, default_value_t = 7)]
    repeats: usize,
    /// Print one JSON array of figures instead of the table.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    if a.positions.contains(&0) {
        bail!("--positions must be at least 1");
    }
    let shapes: Vec<_> = ATTENTION_SHAPES
        .iter()
        .filter(|s| a.models.is_empty() || a.models.iter().any(|m| s.name.starts_with(m.as_str())))
        .collect();
    if shapes.is_empty() {
        let names: Vec<&str> = ATTENTION_SHAPES.iter().map(|s| s.name).collect();
        bail!("no shape matches --model; choose from {}", names.join(", "));
    }
    let ctx = Context::new()?;
    let timer = GpuTimer::new(&ctx)?;
    eprintln!(
        "moe bench-attention on {} ({:?} times)",
        ctx.describe(),
        timer.source()
    );
    let mut figures: Vec<AttentionFigure> = Vec::new();
    for shape in shapes {
        for &positions in &a.positions {
            let f = bench_attention(&ctx, &timer, shape, positions, a.repeats)?;
            eprintln!("  {} at {positions} positions: {:.2}×", f.model, f.speedup);
            figures.push(f);
        }
    }
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&figures)?)?;
        return Ok(());
    }
    outln!(
        "{:<32} {:>9} {:>11} {:>7} {:>6} {:>9} {:>8}",
        "shape (heads/kv heads, qk/v)",
        "positions",
        "unsplit ms",
        "splits",
        "chunk",
        "split ms",
        "speedup"
    )?;
    for f in &figures {
        let s = &f.shape;
        outln!(
            "{:<32} {:>9} {:>11.3} {:>7} {:>6} {:>9.3} {:>7.2}×",
            format!(
                "{} {}/{}, {}/{}",
                short(f.model),
                s.heads,
                s.kv_heads,
                s.qk_dim,
                s.v_dim
            ),
            f.positions,
            f.unsplit_ms,
            f.splits,
            f.chunk,
            f.split_ms,
            f.speedup
        )?;
    }
    Ok(())
}

/// The model name without its parenthesised note.
fn short(name: &str) -> &str {
    name.split(" (").next().unwrap_or(name)
}
