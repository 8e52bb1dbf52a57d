//! `moe cache-sim`: replays a routing trace (recorded with `--trace-out`, or a synthetic
//! Zipf-skewed one) through each cache policy and through Belady's optimal MIN policy at the
//! same slot count, and reports hit rates and each policy's ratio to the optimum.

use std::path::PathBuf;

use crate::out::outln;
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
    #[arg(long, value_name = "N", value_delimiter = ',', required = true)]
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
    let bar = progress::counter("simulating", "slot counts")?;
    bar.set_length(a.slots.len() as u64);
    let reports: Result<Vec<SimReport>, _> = a
        .slots
        .iter()
        .map(|&n| {
            let report = compare(&trace, n, &policies);
            bar.inc(1);
            report
        })
        .collect();
    bar.finish_and_clear();
    let reports = reports?;
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
