//! Criterion benches of the figures `moe bench` reports, at the OLMoE-1B-7B shape scaled by 8
//! (H=256, I=128, E=64, k=8) in f16: GPU times from timestamp queries where the adapter has
//! them (wall clock otherwise), with throughputs so Criterion prints the rates whose ratios
//! carry over to real GPUs: FLOP/s of the grouped expert GEMMs against plain dense matmuls of
//! the same FLOPs, weight bytes/s of a decode layer step against a plain copy, and a sparse
//! layer step against its dense equivalent (every token on every expert). Run with
//! `cargo bench --bench moe`; `moe bench` reports the ratios themselves. `cpu_expert_olmoe`
//! times one full-size OLMoE expert on the CPU (`moe_gpu::cpu`) per packed weight byte.

use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use moe_gpu::bench::kernels::{CopyRun, DenseRun};
use moe_gpu::bench::layers::{record_step, synthetic_weights, weight_bytes};
use moe_gpu::bench::shapes::RealModel;
use moe_gpu::cpu::CpuExperts;
use moe_gpu::gpu::{GpuTimer, Recorder};
use moe_gpu::kernels::copy::CopyMode;
use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::kernels::tiling::TileKind;
use moe_gpu::kernels::tune::{ExpertGemms, GroupedRun};
use moe_gpu::moe::{DynamicActivation, ForwardOptions, MoeLayer, MoeStep};
use moe_gpu::spec::layer_spec::Glu;
use moe_gpu::synthetic::{Rng, random_mlp};
use moe_gpu::{Context, Result};

const SCALE: usize = 8;
const TOKENS: usize = 128;

fn model() -> RealModel {
    RealModel::by_name("OLMoE-1B-7B").expect("OLMoE-1B-7B is a bench model")
}

fn context() -> Context {
    Context::new().expect("a GPU adapter (on Linux: apt-get install mesa-vulkan-drivers)")
}

/// Criterion's iteration count, timed on the GPU: the sum of `iters` single runs.
fn gpu_iters(iters: u64, mut run: impl FnMut() -> Result<f64>) -> Duration {
    let total: f64 = (0..iters).map(|_| run().expect("GPU run")).sum();
    Duration::from_secs_f64(total)
}

fn expert_gemms(c: &mut Criterion) {
    let ctx = context();
    let timer = GpuTimer::new(&ctx).expect("GPU timer");
    let m = model();
    let spec = m.layer_spec(SCALE, m.top_k, ExpertFormat::uniform(WeightFormat::F16));
    let layer =
        MoeLayer::new(&ctx, spec.clone(), &synthetic_weights(&spec, 11), TOKENS).expect("layer");
    let x = Rng::new(3).normals(TOKENS * spec.hidden, 1.0);
    let routed = layer
        .forward_with(
            &ctx,
            &x,
            &ForwardOptions {
                capture_routing: true,
                ..Default::default()
            },
        )
        .expect("routing");
    let ids = routed.topk_ids.unwrap_or_default();
    let g = ExpertGemms {
        hidden: spec.hidden,
        inter: spec.inter,
        glu: spec.glu,
        bias: spec.expert_bias,
        format: spec.format,
    };
    let tiling = layer.tiling(TileKind::Prefill);
    let grouped =
        GroupedRun::new(&ctx, layer.expert_slots(), &g, &ids, m.top_k, tiling).expect("grouped");
    let dense = DenseRun::new(&ctx, &g, ids.len(), tiling).expect("dense");
    let mut group = c.benchmark_group("expert_gemms_olmoe_div8_t128");
    group.throughput(Throughput::Elements(g.flops(ids.len()) as u64));
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    group.bench_function("grouped", |b| {
        b.iter_custom(|n| gpu_iters(n, || grouped.time(&ctx, &timer)))
    });
    group.bench_function("dense_same_flops", |b| {
        b.iter_custom(|n| gpu_iters(n, || dense.time(&ctx, &timer)))
    });
    group.finish();
}

fn layer_steps(c: &mut Criterion) {
    let ctx = context();
    let timer = GpuTimer::new(&ctx).expect("GPU timer");
    let m = model();
    let act = DynamicActivation::default();
    let mut group = c.benchmark_group("layer_step_olmoe_div8_t128");
    group.sample_size(10).sampling_mode(SamplingMode::Flat);
    for (name, k) in [("sparse", m.top_k), ("dense_equivalent", m.experts)] {
        let spec = m.layer_spec(SCALE, k, ExpertFormat::uniform(WeightFormat::F16));
        let layer = MoeLayer::new(&ctx, spec.clone(), &synthetic_weights(&spec, 11), TOKENS)
            .expect("layer");
        let x = Rng::new(3).normals(TOKENS * spec.hidden, 1.0);
        ctx.queue
            .write_buffer(&layer.x, 0, bytemuck::cast_slice(&x));
        group.bench_function(name, |b| {
            b.iter_custom(|n| {
                gpu_iters(n, || {
                    timer.time(&ctx, |enc| record_step(&ctx, &layer, enc, TOKENS, &act))
                })
            })
        });
    }
    group.finish();
}

fn decode_bandwidth(c: &mut Criterion) {
    let ctx = context();
    let timer = GpuTimer::new(&ctx).expect("GPU timer");
    let m = model();
    let act = DynamicActivation::default();
    // Scale 2: one step reads about 25 MB of f16 expert weights.
    let spec = m.layer_spec(2, m.top_k, ExpertFormat::uniform(WeightFormat::F16));
    let layer = MoeLayer::new(&ctx, spec.clone(), &synthetic_weights(&spec, 13), 1).expect("layer");
    let token = Rng::new(4).normals(spec.hidden, 1.0);
    ctx.queue
        .write_buffer(&layer.x, 0, bytemuck::cast_slice(&token));
    let (expert, fixed) = weight_bytes(&spec);
    let bytes = expert * m.top_k as u64 + fixed;
    let pool = expert * m.experts as u64;
    let copy = CopyRun::new(&ctx, &timer, CopyMode::Copy, bytes, pool).expect("copy");
    let read = CopyRun::new(&ctx, &timer, CopyMode::Read, bytes, pool).expect("read");
    let mut group = c.benchmark_group("decode_olmoe_div2");
    group.sample_size(20);
    group.throughput(Throughput::Bytes(bytes));
    group.bench_function("layer_step_weight_bytes", |b| {
        b.iter_custom(|n| {
            gpu_iters(n, || {
                timer.time(&ctx, |enc| record_step(&ctx, &layer, enc, 1, &act))
            })
        })
    });
    group.throughput(Throughput::Bytes(2 * copy.bytes));
    group.bench_function("copy_read_plus_write_bytes", |b| {
        b.iter_custom(|n| gpu_iters(n, || copy.time(&ctx, &timer)))
    });
    group.throughput(Throughput::Bytes(read.bytes));
    group.bench_function("read_bytes", |b| {
        b.iter_custom(|n| gpu_iters(n, || read.time(&ctx, &timer)))
    });
    group.finish();
}

fn host_encode(c: &mut Criterion) {
    let ctx = context();
    let m = model();
    let act = DynamicActivation::default();
    let spec = m.layer_spec(SCALE, m.top_k, ExpertFormat::uniform(WeightFormat::F16));
    let layer =
        MoeLayer::new(&ctx, spec.clone(), &synthetic_weights(&spec, 11), TOKENS).expect("layer");
    c.bench_function("host_encode_one_layer_step", |b| {
        b.iter_custom(|n| {
            let start = Instant::now();
            let mut rec = Recorder::new(&ctx);
            for _ in 0..n {
                layer
                    .record(&ctx, &mut rec, &MoeStep::new(1, &act))
                    .expect("record");
            }
            let commands = rec.into_encoder().finish();
            let elapsed = start.elapsed();
            ctx.discard(commands);
            elapsed
        })
    });
}

/// One OLMoE-1B-7B expert (hidden 2048, inter 1024) and one expert of the bench model (hidden
/// 512, inter 256) on the CPU, one thread per core, for 1 and 8 tokens in the hot formats:
/// time per expert and packed weight bytes per second.
fn cpu_experts(c: &mut Criterion) {
    let m = model();
    let cpu = CpuExperts::new(0).expect("CPU expert threads");
    let mut group = c.benchmark_group("cpu_expert_olmoe");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    for (hidden, inter) in [(m.hidden, m.inter), (512, 256)] {
        let weights = random_mlp(&mut Rng::new(5), hidden, inter, false);
        for format in [
            WeightFormat::F16,
            WeightFormat::Bf16,
            WeightFormat::Q8_0,
            WeightFormat::Q4_0,
            WeightFormat::Q4K,
            WeightFormat::Q6K,
            WeightFormat::Int4,
            WeightFormat::Mxfp4,
        ] {
            let packed = weights.pack(ExpertFormat::uniform(format), hidden, inter);
            let bytes = 4 * (packed.gate_up.len() + packed.down.len()) as u64;
            group.throughput(Throughput::Bytes(bytes));
            for n in [1, 8] {
                let x = Rng::new(6).normals(n * hidden, 1.0);
                let mut out = vec![0.0; n * hidden];
                let name = format!("h{hidden}_{format}_n{n}_t{}", cpu.threads());
                group.bench_function(name, |b| {
                    b.iter(|| {
                        cpu.forward(&packed, hidden, inter, Glu::Silu, &x, n, &mut out)
                            .expect("CPU expert")
                    })
                });
            }
        }
    }
    group.finish();
}

criterion_group!(
    benches,
    expert_gemms,
    layer_steps,
    decode_bandwidth,
    host_encode,
    cpu_experts
);
criterion_main!(benches);
