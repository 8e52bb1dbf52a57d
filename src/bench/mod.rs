//! `moe bench`: ratios that carry over from a software adapter to a real GPU, measured in one
//! run at shapes that imitate real models (see [`shapes`]):
//! - sparse speedup: a whole MoE layer step against the same layer with every token routed to
//!   every expert (ideal: experts / k);
//! - grouped GEMM efficiency: the prefill expert GEMMs against the adapter's best plain dense
//!   matmul of the same FLOPs, both ours;
//! - decode bandwidth efficiency: a one-token layer step's weight bytes per second against a
//!   plain copy kernel's;
//! - host microseconds to record one layer step, and submits per step.
//!
//! GPU times come from timestamp queries where the adapter has them, else the wall clock. The
//! two (or three) sides of a ratio are timed in turn, round after round, and each ratio is the
//! median over the rounds of the ratio within a round, so that load from other processes,
//! which changes over seconds on a shared machine, hits both sides alike. Alongside the
//! decode figure, a plain read of the same bytes shows the most any kernel that reads its
//! weights once reaches against the copy on this adapter; alongside the grouped GEMMs, the
//! same rows spread evenly over the experts show what uneven routing costs.

pub mod attention_splits;
pub mod kernels;
pub mod layers;
pub mod report;
pub mod rounds;
pub mod shapes;

use crate::error::Result;
use crate::gpu::{Context, GpuTimer};
use crate::kernels::matmul::{ExpertFormat, Tiling, WeightFormat};
use crate::kernels::tiling::TileKind;

pub use report::{BenchReport, SCHEMA};
pub use shapes::{MODELS, RealModel, ScaledShape};

/// What to run.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// `quick`, `full` or `tiny`, reported as is.
    pub mode: String,
    /// Real model shapes to benchmark.
    pub models: Vec<RealModel>,
    /// Hidden and intermediate sizes are the real ones divided by this for the prefill figures.
    pub prefill_scale: usize,
    /// Tokens of the prefill step.
    pub prefill_tokens: usize,
    /// The decode figure uses the largest scale (at most `prefill_scale`, halving from it) at
    /// which one step reads at least this many weight bytes, so that launch overhead does not
    /// hide the bandwidth.
    pub decode_bytes: u64,
    /// Timings per figure; each figure is their median.
    pub repeats: usize,
    /// Storage formats of the expert weights (gate/up and down).
    pub format: ExpertFormat,
    /// Layer steps recorded per host-cost measurement.
    pub host_layers: usize,
    /// Tilings tried for the dense-matmul yardstick; the fastest counts.
    pub dense_tilings: Vec<Tiling>,
}

impl BenchConfig {
    /// About three minutes on lavapipe with two cores.
    pub fn quick() -> Self {
        Self {
            mode: "quick".into(),
            models: MODELS.to_vec(),
            prefill_scale: 8,
            prefill_tokens: 128,
            decode_bytes: 16 << 20,
            repeats: 3,
            format: ExpertFormat::uniform(WeightFormat::F16),
            host_layers: 64,
            dense_tilings: Tiling::candidates(TileKind::Prefill),
        }
    }

    /// Larger shapes and more repeats.
    pub fn full() -> Self {
        Self {
            mode: "full".into(),
            prefill_scale: 4,
            prefill_tokens: 256,
            decode_bytes: 32 << 20,
            repeats: 5,
            ..Self::quick()
        }
    }

    /// Seconds: for tests of the report's schema, not for figures.
    pub fn tiny() -> Self {
        Self {
            mode: "tiny".into(),
            models: vec![MODELS[3]],
            prefill_scale: 64,
            prefill_tokens: 16,
            decode_bytes: 0,
            repeats: 1,
            format: ExpertFormat::uniform(WeightFormat::F16),
            host_layers: 4,
            dense_tilings: vec![Tiling::PREFILL],
        }
    }
}

/// Runs every figure of `config` for every model; `progress` hears a line per step.
pub fn run(
    ctx: &Context,
    config: &BenchConfig,
    command: &str,
    progress: &mut dyn FnMut(&str),
) -> Result<BenchReport> {
    let timer = GpuTimer::new(ctx)?;
    let mut models = Vec::new();
    for model in &config.models {
        models.push(layers::bench_model(ctx, &timer, config, model, progress)?);
    }
    Ok(BenchReport {
        schema: SCHEMA,
        mode: config.mode.clone(),
        command: command.to_string(),
        adapter: report::AdapterReport {
            name: ctx.info.name.clone(),
            backend: format!("{:?}", ctx.info.backend),
            device_type: format!("{:?}", ctx.info.device_type),
            driver: format!("{} {}", ctx.info.driver, ctx.info.driver_info)
                .trim()
                .to_string(),
        },
        time_source: timer.source(),
        weight_format: config.format.name(),
        autotune: ctx.autotune(),
        repeats: config.repeats,
        models,
    })
}
