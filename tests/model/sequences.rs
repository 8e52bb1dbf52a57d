//! Several sequences in one model (`ModelOptions::sequences`): on every fixture, prompts of
//! different lengths prefilled into their own sequences, then decoded greedily in batched
//! steps whose make-up changes from step to step (all sequences, a few, one), give the bits
//! of each sequence decoded alone in a one-sequence model, with split-KV attention on from a
//! few keys so that queries of one step split differently. Bad steps get errors.

use moe_gpu::kernels::attention::SplitKv;
use moe_gpu::model::sampling::argmax;
use moe_gpu::{Context, Logits, Model, ModelOptions};

use crate::common;
use crate::common::fixtures::{ARCHS, Fixture, SETS};

/// Decode steps after the prefill.
const STEPS: usize = 6;

/// Split-KV from 4 keys in runs of at least 2 (the fixtures' contexts are short).
fn options(sequences: usize) -> ModelOptions {
    ModelOptions {
        sequences,
        split_kv: SplitKv {
            min_keys: 4,
            min_chunk: 2,
            max_tokens: 1,
        },
        ..ModelOptions::default()
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

/// Prompts of different lengths from the fixture's prompt.
fn prompts(base: &[u32]) -> Vec<Vec<u32>> {
    let n = base.len();
    vec![
        base.to_vec(),
        base[..1].to_vec(),
        base[n / 2..].to_vec(),
        base.iter().rev().copied().collect(),
    ]
}

/// Each step's logit bits of `prompt` decoded alone, greedily, for `STEPS` steps.
fn alone(ctx: &Context, model: &mut Model, prompt: &[u32]) -> Vec<Vec<u32>> {
    model.reset();
    let mut logits = model.forward(ctx, prompt, Logits::Last).unwrap();
    let mut steps = vec![bits(&logits)];
    for _ in 0..STEPS {
        logits = model
            .forward(ctx, &[argmax(&logits)], Logits::Last)
            .unwrap();
        steps.push(bits(&logits));
    }
    steps
}

/// Which sequences decode together at decode step `i`: all, then subsets, in turn; every
/// sequence still gets `STEPS` steps because a step leaves out only sequences that are ahead.
fn together(ctx: &Context, model: &mut Model, prompts: &[Vec<u32>]) -> Vec<Vec<Vec<u32>>> {
    let n = prompts.len();
    let mut logits: Vec<Vec<f32>> = Vec::new();
    let mut steps: Vec<Vec<Vec<u32>>> = vec![Vec::new(); n];
    for (seq, prompt) in prompts.iter().enumerate() {
        model.reset_sequence(seq).unwrap();
        let l = model
            .forward_sequence(ctx, seq, prompt, Logits::Last)
            .unwrap();
        steps[seq].push(bits(&l));
        logits.push(l);
    }
    let mut done = vec![0; n];
    let mut round = 0;
    while done.iter().any(|&d| d < STEPS) {
        // Round r: every sequence, then odd ones only, then the last one, then the rest.
        let pick: Vec<usize> = (0..n)
            .filter(|&s| done[s] < STEPS)
            .filter(|&s| match round % 3 {
                0 => true,
                1 => s % 2 == 1,
                _ => s == n - 1 || done[s] < done[n - 1],
            })
            .collect();
        round += 1;
        if pick.is_empty() {
            continue;
        }
        let step: Vec<(usize, u32)> = pick.iter().map(|&s| (s, argmax(&logits[s]))).collect();
        let out = model.decode(ctx, &step).unwrap();
        for (&s, l) in pick.iter().zip(out) {
            steps[s].push(bits(&l));
            logits[s] = l;
            done[s] += 1;
        }
    }
    steps
}

#[test]
fn sequences_decoded_together_give_the_bits_of_each_decoded_alone() {
    let ctx = common::ctx();
    for set in SETS {
        for arch in ARCHS {
            let fx = Fixture::open(set, arch);
            let prompts = prompts(&fx.ids("input_ids"));
            let mut single = Model::load_with(ctx, &fx.model_dir, &options(1)).unwrap();
            let want: Vec<_> = prompts.iter().map(|p| alone(ctx, &mut single, p)).collect();
            let mut batched =
                Model::load_with(ctx, &fx.model_dir, &options(prompts.len())).unwrap();
            let got = together(ctx, &mut batched, &prompts);
            for (seq, (g, w)) in got.iter().zip(&want).enumerate() {
                for (i, (a, b)) in g.iter().zip(w).enumerate() {
                    assert!(a == b, "{set}/{arch}: sequence {seq}, step {i} differs");
                }
            }
        }
    }
}

#[test]
fn bad_decode_steps_are_refused() {
    let ctx = common::ctx();
    let fx = Fixture::open("hf-tiny", "qwen3_moe");
    let mut model = Model::load_with(ctx, &fx.model_dir, &options(2)).unwrap();
    assert_eq!(model.sequences(), 2);
    model
        .forward_sequence(ctx, 1, &[1, 2], Logits::Last)
        .unwrap();
    assert_eq!(model.sequence_position(1).unwrap(), 2);
    assert_eq!(model.sequence_position(0).unwrap(), 0);
    let err = |r: moe_gpu::Result<Vec<Vec<f32>>>| r.err().unwrap().to_string();
    assert!(err(model.decode(ctx, &[])).contains("1 to 2 sequences"));
    assert!(err(model.decode(ctx, &[(0, 1), (0, 2)])).contains("twice"));
    assert!(err(model.decode(ctx, &[(2, 1)])).contains("sequence 2 does not exist"));
    let vocab = model.config.vocab as u32;
    assert!(err(model.decode(ctx, &[(0, vocab)])).contains("out of range"));
    // A refused step leaves every position as it was.
    assert_eq!(model.sequence_position(0).unwrap(), 0);
    assert_eq!(model.sequence_position(1).unwrap(), 2);
    model.reset_sequence(1).unwrap();
    assert_eq!(model.sequence_position(1).unwrap(), 0);
    assert!(model.reset_sequence(2).is_err());
    let too_many = ModelOptions {
        sequences: 300,
        ..ModelOptions::default()
    };
    let e = Model::load_with(ctx, &fx.model_dir, &too_many)
        .err()
        .unwrap();
    assert!(e.to_string().contains("sequences 300"), "{e}");
}
