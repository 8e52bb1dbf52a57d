//! `moe demo`: a built-in synthetic decoder shaped like OLMoE-1B-7B (64 experts, top-8, q/k
//! norms) with deterministic random weights, scaled down to run in seconds on a software
//! adapter. It is written as a real checkpoint to a temporary directory and loaded through
//! `Model`, then runs a prefill and greedy decode steps, timing each and counting which experts
//! every layer used.

use std::time::Instant;

use anyhow::{Context as _, Result};
use moe_gpu::kernels::INVALID;
use moe_gpu::model::sampling::argmax;
use moe_gpu::model::synthetic::{SyntheticShape, write_olmoe};
use moe_gpu::synthetic::Rng;
use moe_gpu::{Context, Logits, Model, ModelOptions};

#[derive(clap::Args)]
pub struct Args {
    /// Decoder layers (all MoE).
    #[arg(long, default_value_t = 4)]
    layers: usize,
    #[arg(long, default_value_t = 256)]
    hidden: usize,
    #[arg(long, default_value_t = 8)]
    heads: usize,
    #[arg(long, default_value_t = 128)]
    inter: usize,
    #[arg(long, default_value_t = 64)]
    experts: usize,
    #[arg(long, default_value_t = 8)]
    top_k: usize,
    #[arg(long, default_value_t = 4096)]
    vocab: usize,
    /// Tokens in the prompt (one prefill step).
    #[arg(long, default_value_t = 64)]
    prompt_tokens: usize,
    /// Greedy decode steps after the prefill.
    #[arg(long, default_value_t = 16)]
    decode_steps: usize,
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

/// Removes the demo checkpoint when the demo ends, however it ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(a: Args) -> Result<()> {
    let ctx = Context::new()?;
    println!("adapter: {}", ctx.describe());
    let shape = SyntheticShape {
        layers: a.layers,
        hidden: a.hidden,
        heads: a.heads,
        kv_heads: a.heads,
        experts: a.experts,
        top_k: a.top_k,
        inter: a.inter,
        vocab: a.vocab,
        max_positions: (a.prompt_tokens + a.decode_steps).max(1),
    };
    let dir = TempDir(std::env::temp_dir().join(format!("moe-gpu-demo-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).with_context(|| format!("creating {}", dir.0.display()))?;
    write_olmoe(&dir.0, &shape, a.seed)?;
    println!(
        "model: OLMoE-style, {} layers, hidden {}, {} heads, {} experts of width {}, top-{}, \
         vocab {} (OLMoE-1B-7B scaled down, random weights, seed {})",
        a.layers, a.hidden, a.heads, a.experts, a.inter, a.top_k, a.vocab, a.seed
    );
    let t0 = Instant::now();
    let mut model = Model::load_with(
        &ctx,
        &dir.0,
        &ModelOptions {
            max_batch: a.prompt_tokens.max(1),
            ..Default::default()
        },
    )?;
    println!("load: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3);

    let mut rng = Rng::new(a.seed);
    let prompt: Vec<u32> = (0..a.prompt_tokens.max(1))
        .map(|_| rng.below(a.vocab) as u32)
        .collect();
    // The first forward pays for the driver compiling every pipeline; it is not timed.
    let t0 = Instant::now();
    model.forward(&ctx, &prompt, Logits::Last)?;
    println!(
        "warm-up (pipeline compilation): {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    );

    let mut histogram = vec![vec![0u64; a.experts]; a.layers];
    model.reset();
    let t0 = Instant::now();
    let logits = model.forward(&ctx, &prompt, Logits::Last)?;
    let prefill = t0.elapsed().as_secs_f64();
    count_experts(&ctx, &model, prompt.len(), &mut histogram)?;
    println!(
        "prefill: {} tokens in {:.1} ms ({:.0} tokens/s, one submit)",
        prompt.len(),
        prefill * 1e3,
        prompt.len() as f64 / prefill
    );
    let mut token = argmax(&logits);
    let mut generated = vec![token];
    let mut times = Vec::new();
    for _ in 0..a.decode_steps {
        let t0 = Instant::now();
        let logits = model.forward(&ctx, &[token], Logits::Last)?;
        token = argmax(&logits);
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        count_experts(&ctx, &model, 1, &mut histogram)?;
        generated.push(token);
    }
    if !times.is_empty() {
        let cells: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        println!(
            "decode: {} steps, {mean:.2} ms per step ({:.1} tokens/s, one submit each); per step ms: [{}]",
            times.len(),
            1e3 / mean,
            cells.join(" ")
        );
    }
    let ids: Vec<String> = generated.iter().map(|t| t.to_string()).collect();
    println!("greedy tokens: {}", ids.join(" "));
    println!("expert histogram (tokens routed to each expert, prefill and decode):");
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

/// Adds the expert ids of the last step's `tokens` tokens to each layer's histogram (a small
/// readback outside the timed step).
fn count_experts(
    ctx: &Context,
    model: &Model,
    tokens: usize,
    histogram: &mut [Vec<u64>],
) -> Result<()> {
    for (l, layer) in model.moe_layers() {
        let ids: Vec<u32> = ctx.read_back(layer.ids_buffer(), tokens * layer.top_k())?;
        for id in ids.into_iter().filter(|id| *id != INVALID) {
            histogram[l][id as usize] += 1;
        }
    }
    Ok(())
}
