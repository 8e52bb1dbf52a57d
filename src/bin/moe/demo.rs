//! `moe demo`: a built-in synthetic MoE model with deterministic random weights, shaped like
//! OLMoE-1B-7B (64 experts, top-8) but scaled to run in seconds on a software adapter.

use std::time::Instant;

use anyhow::Result;
use moe_gpu::Context;
use moe_gpu::gpu::{Staging, decode};
use moe_gpu::kernels::matmul::{Glu, WeightFormat};
use moe_gpu::moe::{DynamicActivation, MoeLayerSpec, MoeStack, MoeWeights, RoutingSpec};
use moe_gpu::synthetic::{Rng, random_moe_weights};

use crate::residency_args::ResidencyArgs;

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
    #[command(flatten)]
    residency: ResidencyArgs,
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
    let weights: Vec<MoeWeights> = (0..a.layers)
        .map(|l| random_moe_weights(&spec, a.seed + l as u64))
        .collect();
    let stack = MoeStack::new(&ctx, &spec, &weights, max_tokens, &a.residency.options()?)?;
    let layers = &stack.layers;
    let mut rng = Rng::new(a.seed);
    // Runs every layer on `tokens` random tokens (one submit where every expert is resident)
    // and feeds the routing it reads back into resident layers' statistics.
    let mut step = |tokens: usize| -> Result<f64> {
        let x = rng.normals(tokens * a.hidden, 1.0);
        ctx.queue
            .write_buffer(stack.input(), 0, bytemuck::cast_slice(&x));
        let t0 = Instant::now();
        let encoder = ctx.device.create_command_encoder(&Default::default());
        let mut encoder = stack.encode(&ctx, encoder, tokens, &DynamicActivation::default())?;
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
        for (l, layer) in layers.iter().enumerate() {
            let ids: Vec<u32> = decode(&raw, l as u64 * pair_bytes, tokens * a.top_k);
            layer.observe_routing(tokens, &ids);
        }
        Ok(secs)
    };
    // The first run pays for the driver compiling every pipeline; a throwaway one-layer
    // stack takes it, so that neither the timings nor the cache statistics include it.
    let warm = MoeStack::new(&ctx, &spec, &weights[..1], max_tokens, &Default::default())?;
    let t0 = Instant::now();
    warm.forward(
        &ctx,
        &vec![0.5; a.prompt_tokens * a.hidden],
        &DynamicActivation::default(),
    )?;
    drop(warm);
    println!(
        "warm-up (pipeline compilation): {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );
    let prefill = step(a.prompt_tokens)?;
    println!(
        "prefill: {} tokens in {:.1} ms ({:.0} tokens/s)",
        a.prompt_tokens,
        prefill * 1e3,
        a.prompt_tokens as f64 / prefill
    );
    let mut decode_total = 0.0;
    for _ in 0..a.decode_steps {
        decode_total += step(1)?;
    }
    let stats = stack.stats();
    if a.decode_steps > 0 {
        let submits = if stats.readbacks == 0 {
            "one submit per step".to_string()
        } else {
            "one readback per layer and step".to_string()
        };
        println!(
            "decode: {} steps, {:.2} ms per step ({submits})",
            a.decode_steps,
            decode_total * 1e3 / a.decode_steps as f64
        );
    }
    println!("expert histogram (tokens routed to each expert, all steps):");
    for l in &stats.per_layer {
        let used = l.histogram.iter().filter(|c| **c > 0).count();
        let cells: Vec<String> = l.histogram.iter().map(|c| c.to_string()).collect();
        println!(
            "  layer {}: {used}/{} experts used: [{}]",
            l.layer,
            a.experts,
            cells.join(" ")
        );
    }
    a.residency.finish(&stats, a.top_k)
}
