//! `moe prune`: remove (or merge) whole experts by calibration statistics and write a
//! standard Hugging Face checkpoint.

use std::path::PathBuf;
use std::sync::Arc;

use crate::out::outln;
use crate::progress;
use crate::recover::{self, RecoverArgs};
use anyhow::{Result, bail};
use moe_gpu::calibration::CalibrationStats;
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights};
use moe_gpu::prune::merge::merge_layer;
use moe_gpu::prune::{Keep, PruneMethod, Replacements, plan, write_pruned};

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model directory to prune.
    #[arg(long)]
    model: PathBuf,
    /// Calibration statistics written by `moe calibrate`.
    #[arg(long)]
    stats: PathBuf,
    /// Experts to keep per MoE layer: a count, a fraction in (0, 1], or `all`.
    #[arg(long)]
    keep: String,
    /// `adaptive` keeps more experts where importance is spread and fewer where it is
    /// concentrated (same total); `uniform` keeps the same count everywhere.
    #[arg(long, default_value = "uniform", value_parser = ["uniform", "adaptive"])]
    per_layer: String,
    /// How experts are ranked and what happens to the dropped ones.
    #[arg(long, default_value = "frequency", value_parser = ["frequency", "reap", "merge"])]
    method: String,
    /// Output directory for the pruned checkpoint.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    recover: RecoverArgs,
}

pub fn run(a: Args) -> Result<()> {
    if a.out == a.model {
        bail!("--out must differ from --model");
    }
    let cfg = ModelConfig::load(&a.model)?;
    let stats = CalibrationStats::load(&a.stats)?;
    let method = PruneMethod::parse(&a.method)?;
    let keep = Keep::parse(&a.keep)?;
    let mut p = plan(&cfg, &stats, keep, a.per_layer == "adaptive", method)?;
    let mut new = Replacements::default();
    let bar = progress::spinner("pruning")?;
    if method == PruneMethod::Merge {
        let ckpt = Arc::new(Checkpoint::open(&a.model)?);
        for lp in p.layers.iter_mut() {
            bar.set_message(format!("merging the experts of layer {}", lp.layer));
            let w = load_moe_weights(&ckpt, &cfg, lp.layer)?;
            let layer_stats = stats
                .layer(lp.layer)
                .ok_or_else(|| anyhow::anyhow!("the stats file has no layer {}", lp.layer))?;
            let merged = merge_layer(lp, layer_stats, w.experts.as_ref())?;
            new.experts.insert(lp.layer, merged);
        }
    }
    bar.finish_and_clear();
    let recovered = recover::run(&a.recover, &a.model, &cfg, &p, &mut new)?;
    let bar = progress::spinner(&format!("writing {}", a.out.display()))?;
    write_pruned(&a.model, &cfg, &p, &new, &a.out)?;
    bar.finish_and_clear();
    for note in &p.notes {
        eprintln!("note: {note}");
    }
    for lp in &p.layers {
        outln!(
            "layer {}: keep {} of {} experts {:?}{}",
            lp.layer,
            lp.keep.len(),
            cfg.experts_in(lp.layer),
            lp.keep,
            if lp.merges.is_empty() {
                String::new()
            } else {
                format!(", merged (dropped → kept) {:?}", lp.merges)
            }
        )?;
    }
    for r in &recovered {
        outln!(
            "layer {}: recovery on {} tokens: relative error {:.4} → {:.4}{}{}",
            r.layer,
            r.tokens,
            r.loss_before,
            r.loss_after,
            if r.router_refit { ", router refit" } else { "" },
            match r.experts_refit {
                0 => String::new(),
                n => format!(", {n} merged experts refit"),
            }
        )?;
    }
    outln!("wrote {}", a.out.display())?;
    Ok(())
}
