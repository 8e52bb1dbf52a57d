//! Student against teacher on the same tokens: KL(teacher ‖ student) per token, top-1
//! agreement, perplexity, activated expert weight bytes per token and speed; and the
//! perplexity of one model alone.

use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::model::decoder::{Logits, Model};

#[derive(Debug, Clone, Serialize, PartialEq)]
/// What `moe eval` measures: the student checkpoint against its teacher on the same sequences.
pub struct EvalReport {
    /// Sequences evaluated.
    pub sequences: usize,
    /// Tokens evaluated.
    pub tokens: usize,
    /// Mean over tokens of KL(teacher ‖ student) of the next-token distributions, in nats.
    pub kl_per_token: f64,
    /// Fraction of tokens whose argmax agrees.
    pub top1_agreement: f64,
    /// The student's perplexity: exp of the mean negative log-likelihood of each next token.
    pub perplexity: f64,
    /// The teacher's perplexity on the same tokens.
    pub teacher_perplexity: f64,
    /// Routed expert weight bytes the student reads per token, summed over MoE layers.
    pub student_expert_bytes_per_token: f64,
    /// The same for the teacher.
    pub teacher_expert_bytes_per_token: f64,
    /// Routed expert weight bytes of the whole model (what pruning shrinks).
    pub student_expert_bytes_total: u64,
    /// The same for the teacher.
    pub teacher_expert_bytes_total: u64,
    /// Student forward throughput, tokens per second.
    pub student_tokens_per_s: f64,
    /// Teacher forward throughput, tokens per second.
    pub teacher_tokens_per_s: f64,
}

/// log Σ exp(z), in f64.
fn log_sum_exp(z: &[f32]) -> f64 {
    let max = z.iter().fold(f32::NEG_INFINITY, |m, v| m.max(*v)) as f64;
    z.iter().map(|v| (*v as f64 - max).exp()).sum::<f64>().ln() + max
}

fn log_softmax(z: &[f32]) -> Vec<f64> {
    let lse = log_sum_exp(z);
    z.iter().map(|v| *v as f64 - lse).collect()
}

/// KL(p ‖ q) of two logit rows.
pub fn kl(teacher: &[f32], student: &[f32]) -> f64 {
    let lp = log_softmax(teacher);
    let lq = log_softmax(student);
    lp.iter().zip(&lq).map(|(a, b)| a.exp() * (a - b)).sum()
}

fn argmax(z: &[f32]) -> usize {
    z.iter()
        .enumerate()
        .fold((0, f32::NEG_INFINITY), |best, (i, v)| {
            if *v > best.1 { (i, *v) } else { best }
        })
        .0
}

/// One model alone on the evaluation sequences (`moe eval` without a teacher).
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct PerplexityReport {
    /// Sequences evaluated.
    pub sequences: usize,
    /// Tokens run.
    pub tokens: usize,
    /// Tokens predicted: every token but each sequence's first.
    pub predicted: usize,
    /// exp of the mean negative log-likelihood of each next token.
    pub perplexity: f64,
    /// Routed expert weight bytes read per token, summed over MoE layers.
    pub expert_bytes_per_token: f64,
    /// Forward throughput, tokens per second.
    pub tokens_per_s: f64,
}

/// The perplexity of logits `runs` ([tokens, vocab] per sequence) predicting each sequence's
/// next tokens, and the tokens predicted.
pub fn perplexity(runs: &[Vec<f32>], sequences: &[Vec<u32>], vocab: usize) -> Result<(f64, usize)> {
    let (mut nll, mut predicted) = (0.0, 0usize);
    for (logits, seq) in runs.iter().zip(sequences) {
        for (row, next) in logits.chunks(vocab).zip(seq.iter().skip(1)) {
            nll += log_sum_exp(row) - row[*next as usize] as f64;
            predicted += 1;
        }
    }
    if predicted == 0 {
        return Err(Error::input(
            "perplexity needs a sequence of at least 2 tokens (each predicts the next)",
        ));
    }
    Ok(((nll / predicted as f64).exp(), predicted))
}

/// Runs `model` alone on `sequences` and reports its perplexity. The model must allow
/// `max_logit_rows` ≥ the longest sequence; `observe(done, total)` hears of each sequence, in
/// tokens.
pub fn evaluate_alone(
    ctx: &Context,
    model: &mut Model,
    sequences: &[Vec<u32>],
    observe: &mut dyn FnMut(u64, u64),
) -> Result<PerplexityReport> {
    let tokens = count_tokens(sequences)?;
    let mut done = 0;
    let r = run(ctx, model, sequences, &mut |n| {
        done += n;
        observe(done, tokens as u64);
    })?;
    let (perplexity, predicted) = perplexity(&r.logits, sequences, model.config.vocab)?;
    Ok(PerplexityReport {
        sequences: sequences.len(),
        tokens,
        predicted,
        perplexity,
        expert_bytes_per_token: r.expert_bytes / tokens as f64,
        tokens_per_s: tokens as f64 / r.seconds.max(1e-9),
    })
}

/// Tokens in `sequences`; an error when there are none.
fn count_tokens(sequences: &[Vec<u32>]) -> Result<usize> {
    let tokens: usize = sequences.iter().map(|s| s.len()).sum();
    if tokens == 0 {
        return Err(Error::input("no evaluation tokens"));
    }
    Ok(tokens)
}

/// What one model did on the evaluation sequences.
struct Run {
    logits: Vec<Vec<f32>>,
    seconds: f64,
    expert_bytes: f64,
}

/// Runs every sequence through `model` from an empty cache, telling `observe` each sequence's
/// tokens once they are done.
fn run(
    ctx: &Context,
    model: &mut Model,
    sequences: &[Vec<u32>],
    observe: &mut dyn FnMut(u64),
) -> Result<Run> {
    let mut logits = Vec::new();
    let bytes_before = expert_bytes_read(model);
    let t0 = Instant::now();
    for seq in sequences {
        model.reset();
        logits.push(model.forward(ctx, seq, Logits::All)?);
        observe(seq.len() as u64);
    }
    let seconds = t0.elapsed().as_secs_f64();
    model.reset();
    Ok(Run {
        logits,
        seconds,
        expert_bytes: expert_bytes_read(model) - bytes_before,
    })
}

/// Routed expert weight bytes `model` has read so far, from its routing statistics (the
/// model must be built with `ModelOptions::routing_stats`).
fn expert_bytes_read(model: &Model) -> f64 {
    model
        .moe_layers()
        .map(|(_, m)| {
            let s = m.stats();
            s.histogram.iter().sum::<u64>() as f64 * s.expert_bytes as f64
        })
        .sum()
}

/// Routed expert weight bytes of every MoE layer together.
fn expert_bytes_total(model: &Model) -> u64 {
    model
        .moe_layers()
        .map(|(_, m)| m.experts() as u64 * m.stats().expert_bytes)
        .sum()
}

/// Compares `student` with `teacher` on `sequences`. Both must share the vocabulary and allow
/// `max_logit_rows` ≥ the longest sequence. `observe(done, total)` hears of each sequence run,
/// in tokens, the teacher's and the student's together.
pub fn evaluate(
    ctx: &Context,
    teacher: &mut Model,
    student: &mut Model,
    sequences: &[Vec<u32>],
    observe: &mut dyn FnMut(u64, u64),
) -> Result<EvalReport> {
    if teacher.config.vocab != student.config.vocab {
        return Err(Error::input(format!(
            "teacher vocabulary {} differs from the student's {}",
            teacher.config.vocab, student.config.vocab
        )));
    }
    let tokens = count_tokens(sequences)?;
    let (total, mut done) = (2 * tokens as u64, 0);
    let mut step = |n| {
        done += n;
        observe(done, total);
    };
    let t = run(ctx, teacher, sequences, &mut step)?;
    let s = run(ctx, student, sequences, &mut step)?;
    let vocab = teacher.config.vocab;
    let (mut kl_sum, mut agree) = (0.0, 0usize);
    for (tl, sl) in t.logits.iter().zip(&s.logits) {
        for (a, b) in tl.chunks(vocab).zip(sl.chunks(vocab)) {
            kl_sum += kl(a, b);
            agree += usize::from(argmax(a) == argmax(b));
        }
    }
    Ok(EvalReport {
        sequences: sequences.len(),
        tokens,
        kl_per_token: kl_sum / tokens as f64,
        top1_agreement: agree as f64 / tokens as f64,
        perplexity: perplexity(&s.logits, sequences, vocab)?.0,
        teacher_perplexity: perplexity(&t.logits, sequences, vocab)?.0,
        student_expert_bytes_per_token: s.expert_bytes / tokens as f64,
        teacher_expert_bytes_per_token: t.expert_bytes / tokens as f64,
        student_expert_bytes_total: expert_bytes_total(student),
        teacher_expert_bytes_total: expert_bytes_total(teacher),
        student_tokens_per_s: tokens as f64 / s.seconds.max(1e-9),
        teacher_tokens_per_s: tokens as f64 / t.seconds.max(1e-9),
    })
}
