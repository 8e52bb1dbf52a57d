//! `moe demo`: a built-in synthetic MoE model with deterministic random weights, shaped like
//! OLMoE-1B-7B (64 experts, top-8) but scaled to run in seconds on a software adapter.

use std::time::Instant;

use anyhow::Result;
use moe_gpu::Context;
use moe_gpu::gpu::{Staging, decode};
use moe_gpu::kernels::INVALID;
use moe_gpu::kernels::matmul::{Glu, WeightFormat};
use moe_gpu::moe::{DynamicActivation, MoeLayer, MoeLayerSpec, RoutingSpec};
use moe_gpu::synthetic::{Rng, random_moe_weights};

#[derive(clap::Args)]
pub struct Args {
    /// MoE layers in the stack.
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 128)]
    inter: usize,
    #[arg(long, default_value_t = 64)]
    experts: usize,
    #[arg(long, default_value_t = 8)]
    top_k: usize,
    /// Tokens in the prefill step.
    #[arg(long, default_value_t = 64)]
    prompt_tokens: usize,
    /// Single-token decode steps after the prefill.
    #[arg(long, default_value_t = 16)]
    decode_steps: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

pub fn run(a: Args) -> Result<()> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.describe());
    let spec = MoeLayerSpec {
        hidden: a.hidden,
        inter: a.inter,
        routing: RoutingSpec::softmax(a.experts, a.top_k, false),
        glu: Glu::Silu,
        expert_bias: false,
        shared_inter: None,
        format: WeightFormat::F32,
    };
    println!(
        "model: {} MoE layers, hidden {}, {} experts of width {}, top-{} (OLMoE-1B-7B scaled down)",
        a.layers, a.hidden, a.experts, a.inter, a.top_k
    );
    let max_tokens = a.prompt_tokens.max(1);
    let bytes = (max_tokens * a.hidden * 4) as u64;
    let buffers: Vec<wgpu::Buffer> = (0..=a.layers)
        .map(|i| ctx.storage(&format!("activations {i}"), bytes))
        .collect::<Result<_, _>>()?;
    let mut layers = Vec::new();
    for l in 0..a.layers {
        let w = random_moe_weights(&spec, a.seed + l as u64);
        let layer = MoeLayer::with_io(
            &ctx,
            spec.clone(),
            &w,
            max_tokens,
            buffers[l].clone(),
            buffers[l + 1].clone(),
        )?;
        layer.upload_all(&ctx, &w)?;
        layers.push(layer);
    }
    let mut rng = Rng::new(a.seed);
    let mut histogram = vec![vec![0u64; a.experts]; a.layers];
    // Runs every layer on `tokens` random tokens in one submit; returns seconds and per-layer ids.
    let mut step = |tokens: usize| -> Result<(f64, Vec<Vec<u32>>)> {
        let x = rng.normals(tokens * a.hidden, 1.0);
        ctx.queue
            .write_buffer(&buffers[0], 0, bytemuck::cast_slice(&x));
        let t0 = Instant::now();
        let mut encoder = ctx.device.create_command_encoder(&Default::default());
        for layer in &layers {
            encoder = layer.encode(&ctx, encoder, tokens, &DynamicActivation::default())?;
        }
        let pair_bytes = (tokens * a.top_k * 4) as u64;
        let staging = Staging::new(&ctx, "ids", pair_bytes * a.layers as u64);
        for (l, layer) in layers.iter().enumerate() {
            staging.copy_from(
                &mut encoder,
                layer.ids_buffer(),
                0,
                l as u64 * pair_bytes,
                pair_bytes,
            );
        }
        ctx.queue.submit([encoder.finish()]);
        let raw = staging.read_bytes(&ctx, pair_bytes * a.layers as u64)?;
        let secs = t0.elapsed().as_secs_f64();
        let ids = (0..a.layers)
            .map(|l| decode(&raw, l as u64 * pair_bytes, tokens * a.top_k))
            .collect();
        Ok((secs, ids))
    };
    let mut count = |ids: Vec<Vec<u32>>| {
        for (hist, layer_ids) in histogram.iter_mut().zip(ids) {
            for id in layer_ids.into_iter().filter(|id| *id != INVALID) {
                hist[id as usize] += 1;
            }
        }
    };
    // The first step pays for the driver compiling every pipeline; it is not timed.
    let (warmup, _) = step(a.prompt_tokens)?;
    println!("warm-up (pipeline compilation): {:.1} ms", warmup * 1e3);
    let (prefill, ids) = step(a.prompt_tokens)?;
    count(ids);
    println!(
        "prefill: {} tokens in {:.1} ms ({:.0} tokens/s)",
        a.prompt_tokens,
        prefill * 1e3,
        a.prompt_tokens as f64 / prefill
    );
    let mut decode_total = 0.0;
    for _ in 0..a.decode_steps {
        let (secs, ids) = step(1)?;
        decode_total += secs;
        count(ids);
    }
    if a.decode_steps > 0 {
        println!(
            "decode: {} steps, {:.2} ms per step (one submit per step)",
            a.decode_steps,
            decode_total * 1e3 / a.decode_steps as f64
        );
    }
    println!("expert histogram (tokens routed to each expert, all steps):");
    for (l, hist) in histogram.iter().enumerate() {
        let used = hist.iter().filter(|c| **c > 0).count();
        let cells: Vec<String> = hist.iter().map(|c| c.to_string()).collect();
        println!(
            "  layer {l}: {used}/{} experts used: [{}]",
            a.experts,
            cells.join(" ")
        );
    }
    Ok(())
}
