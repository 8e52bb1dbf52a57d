//! Timing of GPU work: timestamp queries written into the command stream where the device has
//! them (lavapipe and llvmpipe GL do), the host's wall clock around submit + wait otherwise.
//! Used by the autotuner and the benchmarks; never by a test's pass/fail decision.

use std::time::Instant;

use crate::error::Result;
use crate::gpu::buffer::Staging;
use crate::gpu::context::Context;

/// Where a [`GpuTimer`]'s figures come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeSource {
    /// Timestamps written by the device before and after the work.
    Timestamps,
    /// Host time from submit to the end of the wait (includes submit and wake-up latency).
    WallClock,
}

struct Queries {
    set: wgpu::QuerySet,
    resolve: wgpu::Buffer,
    staging: Staging,
    ns_per_tick: f64,
}

/// Measures how long recorded GPU work takes, built once and reused for every measurement.
pub struct GpuTimer {
    queries: Option<Queries>,
}

impl GpuTimer {
    /// A timer using timestamp queries where the device has them, host wall-clock time otherwise.
    pub fn new(ctx: &Context) -> Result<Self> {
        let wanted =
            wgpu::Features::TIMESTAMP_QUERY | wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS;
        if !ctx.features.contains(wanted) {
            return Ok(Self { queries: None });
        }
        let bytes = 2 * wgpu::QUERY_SIZE as u64;
        let resolve_usage = wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC;
        let queries = Queries {
            set: ctx.device.create_query_set(&wgpu::QuerySetDescriptor {
                label: Some("gpu timer"),
                ty: wgpu::QueryType::Timestamp,
                count: 2,
            }),
            resolve: ctx.create_buffer("gpu timer resolve", bytes, resolve_usage)?,
            staging: Staging::new(ctx, "gpu timer readback", bytes)?,
            ns_per_tick: ctx.queue.get_timestamp_period() as f64,
        };
        Ok(Self {
            queries: Some(queries),
        })
    }

    /// Which clock the measurements come from.
    pub fn source(&self) -> TimeSource {
        if self.queries.is_some() {
            TimeSource::Timestamps
        } else {
            TimeSource::WallClock
        }
    }

    /// Records `work` into a fresh encoder (it may submit in the middle and hand back a new
    /// one), submits, waits, and returns the seconds the work took.
    pub fn time(
        &self,
        ctx: &Context,
        work: impl FnOnce(wgpu::CommandEncoder) -> Result<wgpu::CommandEncoder>,
    ) -> Result<f64> {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        let Some(q) = &self.queries else {
            let start = Instant::now();
            let encoder = work(encoder)?;
            ctx.submit([encoder.finish()])?;
            ctx.wait()?;
            return Ok(start.elapsed().as_secs_f64());
        };
        encoder.write_timestamp(&q.set, 0);
        let mut encoder = work(encoder)?;
        encoder.write_timestamp(&q.set, 1);
        encoder.resolve_query_set(&q.set, 0..2, &q.resolve, 0);
        q.staging
            .copy_from(&mut encoder, &q.resolve, 0, 0, 2 * wgpu::QUERY_SIZE as u64);
        ctx.submit([encoder.finish()])?;
        let ticks: Vec<u64> = q.staging.read(ctx, 2)?;
        Ok(ticks[1].saturating_sub(ticks[0]) as f64 * q.ns_per_tick * 1e-9)
    }

    /// The median of `repeats` timings of `work`, after one untimed run that pays for pipeline
    /// compilation and first-touch costs.
    pub fn median(
        &self,
        ctx: &Context,
        repeats: usize,
        mut work: impl FnMut(wgpu::CommandEncoder) -> Result<wgpu::CommandEncoder>,
    ) -> Result<f64> {
        self.time(ctx, &mut work)?;
        let mut times = Vec::with_capacity(repeats.max(1));
        for _ in 0..repeats.max(1) {
            times.push(self.time(ctx, &mut work)?);
        }
        Ok(median(&mut times))
    }
}

/// The median of `values` (the mean of the middle two for an even count); 0 when empty.
pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}
