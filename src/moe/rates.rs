//! The cost model's starting rates ([`Rates`]), measured on this machine: a timed upload (the
//! bus), a timed copy inside VRAM (how fast the GPU reads weights), the CPU expert kernels on
//! a random expert of the layer's format at 1 and 8 tokens, and a submit's round trip. Each
//! adapter, thread count and expert shape is measured once per process.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::cpu::CpuExperts;
use crate::error::Result;
use crate::gpu::Context;
use crate::kernels::expert_arena::ExpertArena;
use crate::moe::cost_model::Rates;
use crate::spec::layer_spec::MoeLayerSpec;
use crate::synthetic::{Rng, random_mlp};

/// Most bytes of the random expert the CPU rate is measured on: a real expert's width is cut
/// to fit (the rate is per byte), so that measuring a Mixtral layer takes milliseconds.
const PROBE_BYTES: u64 = 16 << 20;

/// Bytes of the timed upload and of each timed VRAM copy.
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
    let (cpu_bps, per_token) = cpu_rate(cpu, spec)?;
    let rates = Rates {
        upload_bps: upload_rate(ctx)?,
        gpu_bps: vram_read_rate(ctx)?,
        cpu_bps,
        per_token,
        cpu_overhead: best_of(3, || {
            ctx.queue.submit([]);
            ctx.wait()
        })?
        .as_secs_f64(),
    };
    known.push((key, rates));
    Ok(rates)
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

/// Bytes per second the GPU reads in four copies of [`TRANSFER_BYTES`] inside VRAM.
fn vram_read_rate(ctx: &Context) -> Result<f64> {
    let src = probe(ctx, "VRAM rate probe source")?;
    let dst = probe(ctx, "VRAM rate probe target")?;
    let t = best_of(2, || {
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for _ in 0..4 {
            encoder.copy_buffer_to_buffer(&src, 0, &dst, 0, TRANSFER_BYTES);
        }
        ctx.queue.submit([encoder.finish()]);
        ctx.wait()
    })?;
    Ok(4.0 * TRANSFER_BYTES as f64 / t.as_secs_f64())
}

/// Bytes per second of one token through a random expert of `spec`'s format, and the extra
/// time of each further token relative to the first (from 8 tokens).
fn cpu_rate(cpu: &CpuExperts, spec: &MoeLayerSpec) -> Result<(f64, f64)> {
    let (h, f, bias) = (spec.hidden, spec.format, spec.expert_bias);
    let mut inter = spec.inter;
    while inter > 32 && ExpertArena::expert_bytes(h, inter, f, bias) > PROBE_BYTES {
        inter = (inter / 2).next_multiple_of(32);
    }
    let packed = random_mlp(&mut Rng::new(7), h, inter, bias).pack(f, h, inter);
    let bytes = ExpertArena::expert_bytes(h, inter, f, bias) as f64;
    let x = Rng::new(8).normals(8 * h, 1.0);
    let mut out = vec![0.0f32; 8 * h];
    let mut run = |n: usize| {
        best_of(2, || {
            cpu.forward(
                &packed,
                h,
                inter,
                spec.glu,
                &x[..n * h],
                n,
                &mut out[..n * h],
            )
        })
    };
    run(1)?;
    let one = run(1)?.as_secs_f64();
    let eight = run(8)?.as_secs_f64();
    Ok((bytes / one, ((eight / one - 1.0) / 7.0).max(0.0)))
}
