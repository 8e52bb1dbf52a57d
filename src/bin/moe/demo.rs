//! `moe demo`: a built-in synthetic decoder shaped like OLMoE-1B-7B (64 experts, top-8, q/k
//! norms) with deterministic random weights, scaled down to run in seconds on a software
//! adapter. It is written as a real checkpoint to a temporary directory and loaded through
//! `Model`, then runs a prefill and greedy decode steps, timing each and counting which experts
//! every layer used (a small readback per step, inside the timings). The expert residency options turn on the expert cache.

use std::time::Instant;

use anyhow::{Context as _, Result};
use moe_gpu::model::sampling::argmax;
use moe_gpu::model::synthetic_checkpoint::{SyntheticShape, write_olmoe};
use moe_gpu::synthetic::Rng;
use moe_gpu::{Context, Logits, Model, ModelOptions};

use crate::demo_limits::{DEFAULT, Sizes};
use crate::out::outln;
use crate::progress;
use crate::residency_args::ResidencyArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Decoder layers (all MoE).
    #[arg(long, default_value_t = DEFAULT.layers)]
    layers: usize,
    /// Hidden size of the model.
    #[arg(long, default_value_t = DEFAULT.hidden)]
    hidden: usize,
    /// Attention heads (they must divide --hidden).
    #[arg(long, default_value_t = DEFAULT.heads)]
    heads: usize,
    /// Intermediate size of each expert.
    #[arg(long, default_value_t = DEFAULT.inter)]
    inter: usize,
    /// Routed experts per MoE layer.
    #[arg(long, default_value_t = DEFAULT.experts)]
    experts: usize,
    /// Experts each token is routed to (at most --experts).
    #[arg(long, default_value_t = DEFAULT.top_k)]
    top_k: usize,
    /// Vocabulary size.
    #[arg(long, default_value_t = DEFAULT.vocab)]
    vocab: usize,
    /// Tokens in the prompt (one prefill step).
    #[arg(long, default_value_t = DEFAULT.prompt_tokens)]
    prompt_tokens: usize,
    /// Greedy decode steps after the prefill.
    #[arg(long, default_value_t = DEFAULT.decode_steps)]
    decode_steps: usize,
    /// Sequences decoded together: each gets its own prompt and KV cache, and every decode
    /// step advances all of them in one batched forward.
    #[arg(long, default_value_t = 1)]
    sequences: usize,
    /// Seed of the random weights and prompt.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Also write the synthetic checkpoint to this directory and keep it (for calibrate,
    /// prune and eval); it is given a context of 4096 positions.
    #[arg(long)]
    save_model: Option<std::path::PathBuf>,
    #[command(flatten)]
    residency: ResidencyArgs,
}

/// Removes the demo checkpoint when the demo ends, however it ends.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn run(a: Args) -> Result<()> {
    let sizes = Sizes {
        layers: a.layers,
        hidden: a.hidden,
        heads: a.heads,
        inter: a.inter,
        experts: a.experts,
        top_k: a.top_k,
        vocab: a.vocab,
        prompt_tokens: a.prompt_tokens,
        decode_steps: a.decode_steps,
    };
    sizes.check_values()?;
    anyhow::ensure!(a.sequences >= 1, "--sequences must be at least 1");
    sizes.check_host()?;
    let ctx = Context::new()?;
    sizes.check_gpu(&ctx.limits)?;
    outln!("adapter: {}", ctx.describe())?;
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
    if let Some(keep) = &a.save_model {
        std::fs::create_dir_all(keep).with_context(|| format!("creating {}", keep.display()))?;
        let long = SyntheticShape {
            max_positions: shape.max_positions.max(4096),
            ..shape
        };
        write_olmoe(keep, &long, a.seed)?;
        outln!("saved the synthetic checkpoint to {}", keep.display())?;
    }
    outln!(
        "model: OLMoE-style, {} layers, hidden {}, {} heads, {} experts of width {}, top-{}, \
         vocab {} (OLMoE-1B-7B scaled down, random weights, seed {})",
        a.layers,
        a.hidden,
        a.heads,
        a.experts,
        a.inter,
        a.top_k,
        a.vocab,
        a.seed
    )?;
    let options = ModelOptions {
        max_batch: a.prompt_tokens.max(a.sequences).max(1),
        sequences: a.sequences,
        residency: a.residency.options()?,
        routing_stats: true,
        ..Default::default()
    };
    let mut rng = Rng::new(a.seed);
    let prompts: Vec<Vec<u32>> = (0..a.sequences.max(1))
        .map(|_| {
            (0..a.prompt_tokens.max(1))
                .map(|_| rng.below(a.vocab) as u32)
                .collect()
        })
        .collect();
    let prompt = &prompts[0];

    // The first forward pays for the driver compiling every pipeline. A throwaway copy of the
    // model with every expert resident takes it, so that neither the timings nor the
    // expert-cache statistics include it.
    let t0 = Instant::now();
    Model::load_with(&ctx, &dir.0, &ModelOptions::default())?.forward(
        &ctx,
        prompt,
        Logits::Last,
    )?;
    outln!(
        "warm-up (pipeline compilation): {:.1} ms",
        t0.elapsed().as_secs_f64() * 1e3
    )?;
    let t0 = Instant::now();
    let mut model = progress::load_model(&ctx, &dir.0, &options)?;
    outln!("load: {:.1} ms", t0.elapsed().as_secs_f64() * 1e3)?;

    let t0 = Instant::now();
    let mut tokens = Vec::new();
    for (seq, prompt) in prompts.iter().enumerate() {
        let logits = model.forward_sequence(&ctx, seq, prompt, Logits::Last)?;
        tokens.push((seq, argmax(&logits)));
    }
    let prefill = t0.elapsed().as_secs_f64();
    let prefilled = prompt.len() * prompts.len();
    let submits = if model.residency_stats().readbacks == 0 {
        "one submit"
    } else {
        "expert cache: a readback per MoE layer"
    };
    outln!(
        "prefill: {prefilled} tokens in {:.1} ms ({:.0} tokens/s, {submits}{})",
        prefill * 1e3,
        prefilled as f64 / prefill,
        per_sequence(prompts.len())
    )?;
    let mut generated = vec![tokens[0].1];
    let mut times = Vec::new();
    for _ in 0..a.decode_steps {
        let t0 = Instant::now();
        let logits = model.decode(&ctx, &tokens)?;
        for (t, l) in tokens.iter_mut().zip(&logits) {
            t.1 = argmax(l);
        }
        times.push(t0.elapsed().as_secs_f64() * 1e3);
        generated.push(tokens[0].1);
    }
    if !times.is_empty() {
        let cells: Vec<String> = times.iter().map(|t| format!("{t:.1}")).collect();
        let mean = times.iter().sum::<f64>() / times.len() as f64;
        outln!(
            "decode: {} steps of {} sequence{}, {mean:.2} ms per step ({:.1} tokens/s in all, \
             {submits} each); per step ms: [{}]",
            times.len(),
            tokens.len(),
            if tokens.len() == 1 { "" } else { "s" },
            tokens.len() as f64 * 1e3 / mean,
            cells.join(" ")
        )?;
    }
    let ids: Vec<String> = generated.iter().map(|t| t.to_string()).collect();
    outln!("greedy tokens (sequence 0): {}", ids.join(" "))?;
    let stats = model.residency_stats();
    outln!("expert histogram (tokens routed to each expert, prefill and decode):")?;
    for l in &stats.per_layer {
        let used = l.histogram.iter().filter(|c| **c > 0).count();
        let cells: Vec<String> = l.histogram.iter().map(|c| c.to_string()).collect();
        outln!(
            "  layer {}: {used}/{} experts used: [{}]",
            l.layer,
            a.experts,
            cells.join(" ")
        )?;
    }
    a.residency.finish(&stats, a.top_k)
}

/// How a multi-sequence prefill ran: one step per sequence.
fn per_sequence(sequences: usize) -> String {
    if sequences > 1 {
        format!(", one per sequence of {sequences}")
    } else {
        String::new()
    }
}
