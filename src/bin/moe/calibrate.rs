//! `moe calibrate`: per-layer, per-expert routing statistics on calibration tokens.

use std::path::PathBuf;

use anyhow::Result;
use moe_gpu::model::collect_calibration::calibrate;
use moe_gpu::{Context, ModelOptions};

use crate::data::load_tokens;
use crate::out::outln;
use crate::plot;
use crate::progress;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model directory, or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// Calibration data: text (needs tokenizer.json) or token ids separated by spaces, commas
    /// or newlines. Without it, a built-in set is used.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Where to write the statistics (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Tokens per sequence (each runs from an empty KV cache).
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
    /// Sequences of the built-in pseudo-random ids (models without a tokenizer).
    #[arg(long, default_value_t = 8)]
    sequences: usize,
    /// Also draw the statistics as a PNG: each layer's expert frequency as a heatmap and the
    /// distribution of w_j/w_1.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    if let Some(path) = &a.plot {
        plot::check_path(path)?;
    }
    let ctx = Context::new()?;
    let options = ModelOptions {
        max_batch: a.seq_len.max(1),
        max_context: Some(a.seq_len.max(1)),
        ..Default::default()
    };
    let mut model = progress::load_model(&ctx, &a.model, &options)?;
    let data = load_tokens(
        &a.model,
        a.data.as_deref(),
        model.config.vocab,
        a.seq_len,
        a.sequences,
    )?;
    let bar = progress::counter("calibrating", "tokens")?;
    let name = a.model.display().to_string();
    let stats = calibrate(&ctx, &mut model, &data, &name, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let stats = stats?;
    stats.save(&a.out)?;
    if let Some(path) = &a.plot {
        plot::routing::plot(&stats, path)?;
    }
    outln!(
        "{} tokens over {} sequences → {}",
        stats.tokens,
        data.len(),
        a.out.display()
    )?;
    for s in &stats.layers {
        let used = s.count.iter().filter(|c| **c > 0).count();
        let top = s.frequency.iter().cloned().fold(0.0, f64::max);
        outln!(
            "layer {:>3}: {used}/{} experts used, busiest routed {:.1}% of tokens, median w2/w1 {:.3}",
            s.layer,
            s.experts,
            top * 100.0,
            s.auto_skip_beta()
        )?;
    }
    Ok(())
}
