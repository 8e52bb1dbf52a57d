//! Layer-level measurements of one model shape: sparse against dense, the grouped GEMMs
//! against dense matmuls, decode against a copy, host encoding cost and submits.

use std::time::Instant;

use crate::bench::BenchConfig;
use crate::bench::kernels::{CopyRun, DenseRun};
use crate::bench::report::{
    DecodeBandwidth, GemmEfficiency, HostCost, ModelReport, SparseSpeedup, Submits,
};
use crate::bench::rounds::Rounds;
use crate::bench::shapes::{RealModel, ScaledShape};
use crate::error::Result;
use crate::gpu::{Context, GpuTimer, Recorder, median};
use crate::kernels::copy::CopyMode;
use crate::kernels::expert_arena::ExpertArena;
use crate::kernels::matmul::{ExpertFormat, Tiling, WeightFormat};
use crate::kernels::tiling::TileKind;
use crate::kernels::tune::{ExpertGemms, GroupedRun};
use crate::moe::layer::{ForwardOptions, MoeLayer, MoeStep};
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::routing::DynamicActivation;
use crate::spec::weights::{ExpertSource, ExpertWeights, MoeWeights, SharedExpert};
use crate::synthetic::Rng;

/// Experts made on demand from a seed: uniform values with the variance of the usual
/// 1/√fan-in initialisation, so a large layer never sits in host memory whole.
struct SyntheticExperts {
    hidden: usize,
    inter: usize,
    experts: usize,
    bias: bool,
    seed: u64,
}

fn uniform(rng: &mut Rng, n: usize, std: f32) -> Vec<f32> {
    let a = std * 3f32.sqrt();
    (0..n)
        .map(|_| (rng.uniform() as f32 * 2.0 - 1.0) * a)
        .collect()
}

fn mlp(rng: &mut Rng, hidden: usize, inter: usize, bias: bool) -> ExpertWeights {
    let (si, so) = (1.0 / (hidden as f32).sqrt(), 1.0 / (inter as f32).sqrt());
    let mut b = |n| bias.then(|| uniform(rng, n, 0.1));
    let (gate_bias, up_bias, down_bias) = (b(inter), b(inter), b(hidden));
    ExpertWeights {
        gate: uniform(rng, inter * hidden, si),
        up: uniform(rng, inter * hidden, si),
        down: uniform(rng, hidden * inter, so),
        gate_bias,
        up_bias,
        down_bias,
    }
}

impl ExpertSource for SyntheticExperts {
    fn num_experts(&self) -> usize {
        self.experts
    }

    fn load(&self, expert: usize) -> Result<ExpertWeights> {
        let mut rng = Rng::new(
            self.seed
                .wrapping_mul(1_000_003)
                .wrapping_add(expert as u64),
        );
        Ok(mlp(&mut rng, self.hidden, self.inter, self.bias))
    }
}

/// Deterministic synthetic weights for `spec`, experts generated on demand.
pub fn synthetic_weights(spec: &MoeLayerSpec, seed: u64) -> MoeWeights {
    let mut rng = Rng::new(seed);
    let (h, e) = (spec.hidden, spec.routing.experts);
    MoeWeights {
        router: uniform(&mut rng, e * h, 2.0 / (h as f32).sqrt()),
        router_bias: spec.routing.router_bias.then(|| uniform(&mut rng, e, 0.5)),
        correction: None,
        shared: spec.shared_inter.map(|si| SharedExpert {
            mlp: mlp(&mut rng, h, si, spec.expert_bias),
            gate: None,
            packed: None,
        }),
        experts: std::sync::Arc::new(SyntheticExperts {
            hidden: h,
            inter: spec.inter,
            experts: e,
            bias: spec.expert_bias,
            seed,
        }),
    }
}

/// Bytes one step reads for one expert, and for the router and shared expert together.
pub fn weight_bytes(spec: &MoeLayerSpec) -> (u64, u64) {
    let (h, e) = (spec.hidden, spec.routing.experts);
    let expert = ExpertArena::expert_bytes(h, spec.inter, spec.format, spec.expert_bias);
    let router = WeightFormat::F32.matrix_bytes(e, h);
    let shared = spec.shared_inter.map_or(0, |si| {
        ExpertArena::expert_bytes(h, si, spec.format, spec.expert_bias)
    });
    (expert, router + shared)
}

/// The decode figure's scale: halving from the prefill scale until one step would read at
/// least `config.decode_bytes` in f16, but never so far that the layer's gate/up weights
/// outgrow one storage binding (they would be split, and the figure compares unsplit kernels).
/// Sizing by f16 whatever the format gives every format (f32 where the binding allows) the
/// same shapes, so their times compare directly.
fn decode_scale(ctx: &Context, model: &RealModel, config: &BenchConfig) -> usize {
    let fits = |scale: usize| {
        let spec = model.layer_spec(scale, model.top_k, config.format);
        let gate_up = spec
            .format
            .gate_up
            .matrix_bytes(2 * spec.inter, spec.hidden);
        gate_up * model.experts as u64 <= ctx.max_binding()
    };
    let mut scale = config.prefill_scale.max(1);
    while scale > 1 && fits(scale / 2) {
        let spec = model.layer_spec(scale, model.top_k, ExpertFormat::uniform(WeightFormat::F16));
        let (expert, _) = weight_bytes(&spec);
        if expert * model.top_k as u64 >= config.decode_bytes {
            break;
        }
        scale /= 2;
    }
    scale
}

/// Measures every figure of [`ModelReport`] for `model`, reporting progress lines to `progress`.
pub fn bench_model(
    ctx: &Context,
    timer: &GpuTimer,
    config: &BenchConfig,
    model: &RealModel,
    progress: &mut dyn FnMut(&str),
) -> Result<ModelReport> {
    let (scale, tokens, reps) = (
        config.prefill_scale,
        config.prefill_tokens.max(1),
        config.repeats,
    );
    let shape = model.scaled(scale);
    let act = DynamicActivation::default();
    progress(&format!(
        "{}: building layers (H={}, I={}, E={}, k={})",
        model.name, shape.hidden, shape.inter, shape.experts, shape.top_k
    ));
    let sparse_spec = model.layer_spec(scale, model.top_k, config.format);
    let dense_spec = model.layer_spec(scale, model.experts, config.format);
    let (expert_bytes, fixed_bytes) = weight_bytes(&sparse_spec);
    let per_layer_upload = expert_bytes * model.experts as u64 + fixed_bytes;
    let sparse = MoeLayer::new(
        ctx,
        sparse_spec.clone(),
        &synthetic_weights(&sparse_spec, 11),
        tokens,
    )?;
    let dense = MoeLayer::new(
        ctx,
        dense_spec.clone(),
        &synthetic_weights(&dense_spec, 11),
        tokens,
    )?;
    let x = Rng::new(3).normals(tokens * shape.hidden, 1.0);
    for layer in [&sparse, &dense] {
        ctx.queue
            .write_buffer(&layer.x, 0, bytemuck::cast_slice(&x));
    }

    progress(&format!("{}: sparse vs dense, {tokens} tokens", model.name));
    let step = |layer: &MoeLayer| timer.time(ctx, |enc| record_step(ctx, layer, enc, tokens, &act));
    let rounds = Rounds::run(reps, &mut [&mut || step(&sparse), &mut || step(&dense)])?;
    drop(dense);
    let ideal = model.experts as f64 / model.top_k as f64;
    let round_ratios = rounds.ratios(1, 0);
    let measured = median(&mut round_ratios.clone());
    let sparse_speedup = SparseSpeedup {
        shape,
        tokens,
        sparse_ms: rounds.ms(0),
        dense_ms: rounds.ms(1),
        round_ratios,
        measured,
        ideal,
        fraction_of_ideal: measured / ideal,
    };

    progress(&format!("{}: grouped GEMMs vs dense matmuls", model.name));
    let routed = sparse.forward_with(
        ctx,
        &x,
        &ForwardOptions {
            capture_routing: true,
            ..Default::default()
        },
    )?;
    let ids = routed.topk_ids.unwrap_or_default();
    let gemm = ExpertGemms {
        hidden: shape.hidden,
        inter: shape.inter,
        glu: sparse_spec.glu,
        bias: sparse_spec.expert_bias,
        format: sparse_spec.format,
    };
    let rows = ids.len();
    let flops = gemm.flops(rows);
    let grouped_tiling = sparse.tiling(TileKind::Prefill);
    // The fastest dense tiling is picked first, then re-timed interleaved with the grouped
    // GEMMs, so neither the pick's luck nor load from other processes favours either side.
    let mut best: Option<(f64, DenseRun, Tiling)> = None;
    for &tiling in &config.dense_tilings {
        let run = DenseRun::new(ctx, &gemm, rows, tiling)?;
        run.time(ctx, timer)?;
        let mut t = (0..reps)
            .map(|_| run.time(ctx, timer))
            .collect::<Result<Vec<f64>>>()?;
        let secs = median(&mut t);
        if best.as_ref().is_none_or(|(b, _, _)| secs < *b) {
            best = Some((secs, run, tiling));
        }
    }
    let (dense_run, dense_tiling) = match best {
        Some((_, run, tiling)) => (run, tiling),
        None => (
            DenseRun::new(ctx, &gemm, rows, Tiling::PREFILL)?,
            Tiling::PREFILL,
        ),
    };
    let slots = sparse.expert_slots();
    let grouped = GroupedRun::new(ctx, slots, &gemm, &ids, model.top_k, grouped_tiling)?;
    // The same rows spread evenly over the experts: the gap between this and the real routing
    // is what uneven expert loads cost in partly filled tiles.
    let even_ids: Vec<u32> = (0..rows)
        .map(|r| (r * model.experts / rows.max(1)) as u32)
        .collect();
    let even = GroupedRun::new(ctx, slots, &gemm, &even_ids, model.top_k, grouped_tiling)?;
    let rounds = Rounds::run(
        reps,
        &mut [
            &mut || grouped.time(ctx, timer),
            &mut || dense_run.time(ctx, timer),
            &mut || even.time(ctx, timer),
        ],
    )?;
    let (grouped_ms, dense_ms) = (rounds.ms(0), rounds.ms(1));
    let round_ratios = rounds.ratios(1, 0);
    let gflops = |ms: f64| flops / (ms * 1e-3) / 1e9;
    let grouped_gemm_efficiency = GemmEfficiency {
        shape,
        tokens,
        rows,
        flops,
        grouped_ms,
        grouped_gflop_per_s: gflops(grouped_ms),
        grouped_tiling,
        dense_ms,
        dense_gflop_per_s: gflops(dense_ms),
        dense_tiling,
        value: median(&mut round_ratios.clone()),
        round_ratios,
        even_routing_ms: rounds.ms(2),
        even_routing_value: median(&mut rounds.ratios(1, 2)),
    };

    progress(&format!("{}: host encoding cost and submits", model.name));
    let host_us_per_layer = host_cost(ctx, &sparse, shape, config.host_layers, &act)?;
    let before = ctx.submit_count();
    sparse.forward(ctx, &x)?;
    let submits_per_step = Submits {
        shape,
        tokens,
        value: ctx.submit_count() - before,
    };
    let prefill_tiling = grouped_tiling;
    drop(sparse);

    let dscale = decode_scale(ctx, model, config);
    let dshape = model.scaled(dscale);
    progress(&format!(
        "{}: decode vs copy (H={}, I={})",
        model.name, dshape.hidden, dshape.inter
    ));
    let dspec = model.layer_spec(dscale, model.top_k, config.format);
    let decoder = MoeLayer::new(ctx, dspec.clone(), &synthetic_weights(&dspec, 13), 1)?;
    let (dexpert, dfixed) = weight_bytes(&dspec);
    let bytes = dexpert * model.top_k as u64 + dfixed;
    // Copies and reads of the step's size, cycling through as many bytes as the layer's routed
    // experts (up to 16 sources), so that every side reads what its previous run did not.
    let resident = dexpert * model.experts as u64;
    let copy = CopyRun::new(ctx, timer, CopyMode::Copy, bytes, resident)?;
    let read = CopyRun::new(ctx, timer, CopyMode::Read, bytes, resident)?;
    // A new token every step, as in generation: each step routes to other experts, so the
    // weights come from memory rather than from a cache that still holds the last step's.
    let mut tokens_rng = Rng::new(4);
    let rounds = Rounds::run(
        reps,
        &mut [
            &mut || {
                let token = tokens_rng.normals(dshape.hidden, 1.0);
                ctx.queue
                    .write_buffer(&decoder.x, 0, bytemuck::cast_slice(&token));
                timer.time(ctx, |enc| record_step(ctx, &decoder, enc, 1, &act))
            },
            &mut || copy.time(ctx, timer),
            &mut || read.time(ctx, timer),
        ],
    )?;
    let (layer_ms, copy_ms, read_ms) = (rounds.ms(0), rounds.ms(1), rounds.ms(2));
    let gb_per_s = |bytes: u64, ms: f64| bytes as f64 / (ms * 1e-3) / 1e9;
    let copy_moved = 2 * copy.bytes;
    // Per round: (weight bytes / layer time) / (copy bytes moved / copy time).
    let vs_copy = |i: usize, bytes: u64| -> Vec<f64> {
        let scale = bytes as f64 / copy_moved as f64;
        rounds.ratios(1, i).iter().map(|r| r * scale).collect()
    };
    let round_ratios = vs_copy(0, bytes);
    let decode_bandwidth_efficiency = DecodeBandwidth {
        shape: dshape,
        tokens: 1,
        weight_bytes: bytes,
        layer_ms,
        weight_gb_per_s: gb_per_s(bytes, layer_ms),
        copy_bytes_moved: copy_moved,
        copy_groups: copy.groups,
        copy_ms,
        copy_gb_per_s: gb_per_s(copy_moved, copy_ms),
        read_bytes: read.bytes,
        read_groups: read.groups,
        read_ms,
        read_gb_per_s: gb_per_s(read.bytes, read_ms),
        read_vs_copy: median(&mut vs_copy(2, read.bytes)),
        value: median(&mut round_ratios.clone()),
        round_ratios,
    };
    let decode_tiling = decoder.tiling(TileKind::Decode);
    let decode_upload = dexpert * model.experts as u64 + dfixed;

    Ok(ModelReport {
        model: model.name,
        real: *model,
        prefill_tiling,
        decode_tiling,
        sparse_speedup,
        grouped_gemm_efficiency,
        decode_bandwidth_efficiency,
        host_us_per_layer,
        submits_per_step,
        uploaded_bytes: 2 * per_layer_upload + decode_upload,
    })
}

/// Records `layers` one-token steps of `layer` into one encoder and divides the host time.
fn host_cost(
    ctx: &Context,
    layer: &MoeLayer,
    shape: ScaledShape,
    layers: usize,
    act: &DynamicActivation,
) -> Result<HostCost> {
    let layers = layers.max(1);
    let mut samples = Vec::new();
    for _ in 0..9 {
        let start = Instant::now();
        let mut rec = Recorder::new(ctx);
        for _ in 0..layers {
            layer.record(ctx, &mut rec, &MoeStep::new(1, act))?;
        }
        let commands = rec.into_encoder().finish();
        let elapsed = start.elapsed();
        ctx.discard(commands);
        samples.push(elapsed.as_secs_f64() * 1e6 / layers as f64);
    }
    Ok(HostCost {
        shape,
        tokens: 1,
        layers_encoded: layers,
        value: median(&mut samples),
    })
}

/// Records one step of `layer` after what `encoder` holds, for a [`GpuTimer`].
pub fn record_step(
    ctx: &Context,
    layer: &MoeLayer,
    encoder: wgpu::CommandEncoder,
    tokens: usize,
    act: &DynamicActivation,
) -> Result<wgpu::CommandEncoder> {
    let mut rec = Recorder::with_encoder(ctx, encoder);
    layer.record(ctx, &mut rec, &MoeStep::new(tokens, act))?;
    Ok(rec.into_encoder())
}
