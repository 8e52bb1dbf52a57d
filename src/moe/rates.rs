//! The cost model's starting rates ([`Rates`]), measured on this machine: a timed upload (the
//! bus), the grouped decode GEMMs on resident random experts of the layer's format (the GPU's
//! expert rate), the CPU expert kernels on the same expert at 1 and 8 tokens, and a submit's
//! round trip. Each adapter, thread count and expert shape is measured once per process; the
//! probes' buffers are freed after and not counted as the model's.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cpu::CpuExperts;
use crate::error::{Error, Result};
use crate::gpu::{Context, GpuTimer, median};
use crate::kernels::expert_arena::ExpertArena;
use crate::kernels::tiling::{TileKind, Tiling};
use crate::kernels::tune::{ExpertGemms, GroupedRun};
use crate::moe::cost_model::Rates;
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::weight_format::ExpertFormat;
use crate::spec::weights::{ExpertSource, ExpertWeights, PackedExpert};
use crate::synthetic::{Rng, random_mlp};

/// Most bytes of the random expert the rates are measured on: a real expert's width is cut to
/// fit (the rates are per byte), so that measuring a Mixtral layer takes milliseconds.
const PROBE_BYTES: u64 = 16 << 20;

/// Bytes of the timed upload.
const TRANSFER_BYTES: u64 = 16 << 20;

/// The rates for layers like `spec` on `ctx`'s adapter with `cpu`'s threads.
pub(crate) fn measured(ctx: &Context, cpu: &CpuExperts, spec: &MoeLayerSpec) -> Result<Rates> {
    static MEASURED: Mutex<Vec<(String, Rates)>> = Mutex::new(Vec::new());
    let key = format!(
        "{} {:?} {} {}x{} {} {}",
        ctx.info.name,
        ctx.info.backend,
        cpu.threads(),
        spec.hidden,
        spec.inter,
        spec.format.name(),
        spec.expert_bias
    );
    let mut known = MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, r)) = known.iter().find(|(k, _)| *k == key) {
        return Ok(*r);
    }
    let probe = Probe::new(spec);
    let (cpu_bps, per_token) = cpu_rate(cpu, &probe)?;
    let rates = ctx.transient(|| -> Result<Rates> {
        Ok(Rates {
            upload_bps: upload_rate(ctx)?,
            gpu_bps: gpu_rate(ctx, &probe)?,
            cpu_bps,
            per_token,
            cpu_overhead: best_of(3, || {
                ctx.queue.submit([]);
                ctx.wait()
            })?
            .as_secs_f64(),
        })
    })?;
    known.push((key, rates));
    Ok(rates)
}

/// A random expert of a layer's hidden size and format, its width cut to [`PROBE_BYTES`].
struct Probe {
    gemms: ExpertGemms,
    packed: PackedExpert,
    bytes: f64,
}

impl Probe {
    fn new(spec: &MoeLayerSpec) -> Self {
        let (h, f, bias) = (spec.hidden, spec.format, spec.expert_bias);
        let mut inter = spec.inter;
        while inter > 32 && ExpertArena::expert_bytes(h, inter, f, bias) > PROBE_BYTES {
            inter = (inter / 2).next_multiple_of(32);
        }
        Self {
            gemms: ExpertGemms {
                hidden: h,
                inter,
                glu: spec.glu,
                bias,
                format: f,
            },
            packed: random_mlp(&mut Rng::new(7), h, inter, bias).pack(f, h, inter),
            bytes: ExpertArena::expert_bytes(h, inter, f, bias) as f64,
        }
    }
}

/// The shortest of `n` timed runs of `run`.
fn best_of(n: usize, mut run: impl FnMut() -> Result<()>) -> Result<Duration> {
    let mut best = Duration::MAX;
    for _ in 0..n {
        let start = Instant::now();
        run()?;
        best = best.min(start.elapsed());
    }
    Ok(best.max(Duration::from_nanos(1)))
}

/// A transient buffer the measurements copy into or out of: made with
/// [`Context::create_buffer`], so it is not counted among the model's allocations.
fn probe(ctx: &Context, label: &str) -> Result<wgpu::Buffer> {
    let usage = wgpu::BufferUsages::COPY_DST | wgpu::BufferUsages::COPY_SRC;
    ctx.create_buffer(label, TRANSFER_BYTES, usage)
}

/// Bytes per second of a queued write of [`TRANSFER_BYTES`] that is submitted and waited for.
fn upload_rate(ctx: &Context) -> Result<f64> {
    let buffer = probe(ctx, "upload rate probe")?;
    let data = vec![0u8; TRANSFER_BYTES as usize];
    let t = best_of(3, || {
        ctx.queue.write_buffer(&buffer, 0, &data);
        ctx.queue.submit([]);
        ctx.wait()
    })?;
    Ok(TRANSFER_BYTES as f64 / t.as_secs_f64())
}

/// Bytes per second at which the grouped decode GEMMs compute [`GPU_PROBE_EXPERTS`] resident
/// experts of one token each (the decode tiling's defaults; median of 3 after a warm-up).
fn gpu_rate(ctx: &Context, probe: &Probe) -> Result<f64> {
    let g = &probe.gemms;
    let arena = ExpertArena::new(ctx, g.hidden, g.inter, GPU_PROBE_EXPERTS, g.format, g.bias)?;
    for slot in 0..GPU_PROBE_EXPERTS {
        let source = SingleExpert(&probe.packed);
        arena.upload_from(ctx, slot, &source, 0, g.bias)?;
    }
    let slots: Vec<u32> = (0..GPU_PROBE_EXPERTS as u32).collect();
    let table = ctx.storage_with("GPU rate probe table", &slots)?;
    let tiling = Tiling::default_for(TileKind::Decode);
    let run = GroupedRun::new(ctx, (&arena, &table), g, &slots, GPU_PROBE_EXPERTS, tiling)?;
    let timer = GpuTimer::new(ctx)?;
    let mut times = Vec::with_capacity(3);
    run.time(ctx, &timer)?;
    for _ in 0..3 {
        times.push(run.time(ctx, &timer)?);
    }
    let t = median(&mut times).max(1e-9);
    Ok(GPU_PROBE_EXPERTS as f64 * probe.bytes / t)
}

/// Experts the GPU rate is measured on, one token each.
const GPU_PROBE_EXPERTS: usize = 4;

/// The probe's one expert as an [`ExpertSource`].
struct SingleExpert<'a>(&'a PackedExpert);

impl ExpertSource for SingleExpert<'_> {
    fn num_experts(&self) -> usize {
        1
    }

    fn load(&self, expert: usize) -> Result<ExpertWeights> {
        Err(Error::input(format!(
            "the rate probe holds packed expert 0, not {expert}"
        )))
    }

    fn load_packed(&self, _: usize, format: ExpertFormat) -> Result<Option<PackedExpert>> {
        Ok((format == self.0.format).then(|| self.0.clone()))
    }
}

/// Bytes per second of one token through the probe expert on the CPU, and the extra time of
/// each further token relative to the first (from 8 tokens).
fn cpu_rate(cpu: &CpuExperts, probe: &Probe) -> Result<(f64, f64)> {
    let g = &probe.gemms;
    let h = g.hidden;
    let x = Rng::new(8).normals(8 * h, 1.0);
    let mut out = vec![0.0f32; 8 * h];
    let mut run = |n: usize| {
        best_of(2, || {
            let (x, out) = (&x[..n * h], &mut out[..n * h]);
            cpu.forward(&probe.packed, h, g.inter, g.glu, x, n, out)
        })
    };
    run(1)?;
    let one = run(1)?.as_secs_f64();
    let eight = run(8)?.as_secs_f64();
    Ok((probe.bytes / one, ((eight / one - 1.0) / 7.0).max(0.0)))
}
