//! `moe cache-sim`: replays a routing trace (recorded with `--trace-out`, or a synthetic
//! Zipf-skewed one) through each cache policy and through Belady's optimal MIN policy at the
//! same slot count, and reports hit rates and each policy's ratio to the optimum.

use std::path::PathBuf;

use crate::out::outln;
use crate::plot;
use crate::progress;
use anyhow::{Result, bail};
use moe_gpu::moe::Policy;
use moe_gpu::moe::cachesim::{PolicyResult, SimReport, compare};
use moe_gpu::moe::residency::DEFAULT_LFU_HALF_LIFE;
use moe_gpu::moe::routing_trace::{RoutingTrace, ZipfTrace};

#[derive(clap::Args)]
pub struct Args {
    /// A routing trace written by `--trace-out` (`block`, `demo`).
    #[arg(long, value_name = "TRACE.json", required_unless_present = "zipf")]
    trace: Option<PathBuf>,
    /// Generate a synthetic trace instead: each token picks k experts with probability
    /// ∝ 1 / rank^EXPONENT (0 = uniform; real routers are often around 0.5 to 1.2).
    #[arg(long, value_name = "EXPONENT", conflicts_with = "trace")]
    zipf: Option<f64>,
    /// Slots per MoE layer to simulate; repeat or separate with commas (each at least k).
    /// With `--plot` and no `--slots`, the table shows the plot's slot counts.
    #[arg(
        long,
        value_name = "N",
        value_delimiter = ',',
        required_unless_present = "plot"
    )]
    slots: Vec<usize>,
    /// Synthetic trace: experts per layer.
    #[arg(long, default_value_t = 64)]
    experts: usize,
    /// Synthetic trace: experts per token.
    #[arg(long, default_value_t = 8)]
    top_k: usize,
    /// Synthetic trace: MoE layers.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    /// Synthetic trace: steps.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Synthetic trace: tokens per step (1 = decode).
    #[arg(long, default_value_t = 1)]
    tokens_per_step: usize,
    /// Synthetic trace: seed of the random routing.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Half-life in steps of the LFU policy's counts.
    #[arg(long, value_name = "STEPS", default_value_t = DEFAULT_LFU_HALF_LIFE)]
    lfu_half_life: f64,
    /// Write the synthetic trace here, to replay it later or elsewhere.
    #[arg(long, value_name = "TRACE.json")]
    save_trace: Option<PathBuf>,
    /// Print one JSON array of reports instead of the table.
    #[arg(long)]
    json: bool,
    /// Also draw hit rate against slots per layer (from k to every expert) as a PNG, one line
    /// per policy and one for Belady's MIN.
    #[arg(long, value_name = "FILE.png")]
    plot: Option<PathBuf>,
}

pub fn run(a: Args) -> Result<()> {
    let trace = match (&a.trace, a.zipf) {
        (Some(path), _) => RoutingTrace::load(path)?,
        (None, Some(exponent)) => ZipfTrace {
            experts: a.experts,
            top_k: a.top_k,
            layers: a.layers,
            steps: a.steps,
            tokens_per_step: a.tokens_per_step,
            exponent,
            seed: a.seed,
        }
        .generate()?,
        (None, None) => bail!("give --trace FILE or --zipf EXPONENT"),
    };
    if let Some(path) = &a.save_trace {
        trace.save(path)?;
    }
    let policies = [Policy::Lru, Policy::parse("lfu", a.lfu_half_life)?];
    let plotted = match &a.plot {
        Some(path) => {
            plot::check_path(path)?;
            sweep(trace.top_k, trace.experts)
        }
        None => Vec::new(),
    };
    let shown = if a.slots.is_empty() {
        plotted.clone()
    } else {
        a.slots.clone()
    };
    let mut slots: Vec<usize> = shown.iter().chain(&plotted).copied().collect();
    slots.sort_unstable();
    slots.dedup();
    let bar = progress::counter("simulating", "slot counts")?;
    bar.set_length(slots.len() as u64);
    let all: Result<Vec<SimReport>, _> = slots
        .iter()
        .map(|&n| {
            let report = compare(&trace, n, &policies);
            bar.inc(1);
            report
        })
        .collect();
    bar.finish_and_clear();
    let all = all?;
    let pick = |wanted: &[usize]| -> Vec<SimReport> {
        all.iter()
            .filter(|r| wanted.contains(&r.slots))
            .cloned()
            .collect()
    };
    if let Some(path) = &a.plot {
        let title = format!(
            "Expert cache hit rate: {} layers, {} steps, {} experts, k = {}",
            trace.layers.len(),
            trace.steps.len(),
            trace.experts,
            trace.top_k
        );
        plot::hits::plot(&pick(&plotted), &title, path)?;
    }
    let reports = pick(&shown);
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&reports)?)?;
        return Ok(());
    }
    outln!(
        "trace: {} layers, {} steps, {} expert activations ({} experts, k = {})",
        trace.layers.len(),
        trace.steps.len(),
        trace.accesses(),
        trace.experts,
        trace.top_k
    )?;
    outln!(
        "{:>11}  {:<24} {:>10} {:>10} {:>9} {:>7}",
        "slots/layer",
        "policy",
        "hits",
        "misses",
        "hit rate",
        "vs MIN"
    )?;
    for r in &reports {
        for p in std::iter::once(&r.optimal).chain(&r.policies) {
            outln!("{:>11}  {}", r.slots, row(p))?;
        }
    }
    Ok(())
}

/// Slot counts from `k` to every expert resident, at most [`SWEEP_POINTS`] of them, evenly
/// spread with both ends included.
fn sweep(k: usize, experts: usize) -> Vec<usize> {
    let (lo, hi) = (k.max(1), experts.max(k.max(1)));
    let n = (hi - lo + 1).min(SWEEP_POINTS);
    if n == 1 {
        return vec![lo];
    }
    let mut v: Vec<usize> = (0..n).map(|i| lo + i * (hi - lo) / (n - 1)).collect();
    v.dedup();
    v
}

/// Most slot counts a plot simulates.
const SWEEP_POINTS: usize = 32;

fn row(p: &PolicyResult) -> String {
    let ratio = p
        .ratio_to_optimal
        .map_or("-".to_string(), |r| format!("{r:.3}"));
    format!(
        "{:<24} {:>10} {:>10} {:>8.1}% {:>7}",
        p.policy,
        p.hits,
        p.misses,
        100.0 * p.hit_rate,
        ratio
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_plotted_slot_counts_run_from_k_to_every_expert() {
        assert_eq!(sweep(2, 5), vec![2, 3, 4, 5]);
        let v = sweep(8, 64);
        assert_eq!(v.len(), SWEEP_POINTS);
        assert_eq!((v[0], v[v.len() - 1]), (8, 64));
        assert!(v.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(sweep(4, 4), vec![4]);
    }
}
