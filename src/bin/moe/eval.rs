//! `moe eval`: the perplexity of a model on evaluation data, and with `--teacher` a (pruned,
//! quantised or dynamically activated) student against its teacher.

use std::path::PathBuf;

use anyhow::Result;
use moe_gpu::kernels::matmul::WeightFormat;
use moe_gpu::model::Model;
use moe_gpu::model::eval::{PerplexityReport, evaluate, evaluate_alone};
use moe_gpu::{Context, ModelOptions};

use crate::activation::ExpertActivationArgs;
use crate::data::load_tokens;
use crate::out::outln;
use crate::progress;

#[derive(clap::Args)]
pub struct Args {
    /// The student model directory (e.g. written by `moe prune`), or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// The teacher model directory (e.g. the unpruned original); without it, the model's
    /// perplexity alone.
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Evaluation data: text (needs tokenizer.json) or token ids. Default: built-in set.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Tokens per sequence.
    #[arg(long, default_value_t = 64)]
    seq_len: usize,
    /// Sequences of the built-in pseudo-random ids (models without a tokenizer).
    #[arg(long, default_value_t = 8)]
    sequences: usize,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Expert weight format of the student (the teacher stays f32): int8 has one scale per row,
    /// int4 and mxfp4 one per 32 values.
    #[arg(long, default_value = "f32", value_parser = crate::weight_formats())]
    dtype: String,
    /// Dynamic activation of the student.
    #[command(flatten)]
    activation: ExpertActivationArgs,
}

pub fn run(a: Args) -> Result<()> {
    let ctx = Context::new()?;
    let options = ModelOptions {
        max_batch: a.seq_len.max(1),
        max_logit_rows: a.seq_len.max(1),
        max_context: Some(a.seq_len.max(1)),
        routing_stats: true,
        // The teacher stays f32 whatever its checkpoint stores (an MXFP4 release too).
        expert_format: Some(WeightFormat::F32),
        ..Default::default()
    };
    let student_options = ModelOptions {
        expert_format: Some(WeightFormat::parse(&a.dtype)?),
        ..options.clone()
    };
    let Some(teacher_dir) = &a.teacher else {
        let mut model = progress::load_model(&ctx, &a.model, &student_options)?;
        a.activation.apply(&mut model)?;
        return alone(&ctx, &a, &mut model);
    };
    let mut teacher = progress::load_model(&ctx, teacher_dir, &options)?;
    let mut student = progress::load_model(&ctx, &a.model, &student_options)?;
    a.activation.apply(&mut student)?;
    let data = load_tokens(
        teacher_dir,
        a.data.as_deref(),
        teacher.config.vocab,
        a.seq_len,
        a.sequences,
    )?;
    let bar = progress::counter("evaluating teacher and student", "tokens")?;
    let r = evaluate(
        &ctx,
        &mut teacher,
        &mut student,
        &data,
        &mut |done, total| {
            bar.set_length(total);
            bar.set_position(done);
        },
    );
    bar.finish_and_clear();
    let r = r?;
    if a.json {
        outln!("{}", serde_json::to_string(&r)?)?;
    } else {
        outln!(
            "tokens                     {} in {} sequences",
            r.tokens,
            r.sequences
        )?;
        outln!(
            "KL(teacher ‖ student)      {:.5} nats per token",
            r.kl_per_token
        )?;
        outln!(
            "top-1 agreement            {:.2}%",
            r.top1_agreement * 100.0
        )?;
        outln!(
            "perplexity                 {:.3} (teacher {:.3})",
            r.perplexity,
            r.teacher_perplexity
        )?;
        outln!(
            "expert bytes per token     {:.0} (teacher {:.0})",
            r.student_expert_bytes_per_token,
            r.teacher_expert_bytes_per_token
        )?;
        outln!(
            "expert bytes in the model  {} (teacher {})",
            r.student_expert_bytes_total,
            r.teacher_expert_bytes_total
        )?;
        outln!(
            "tokens/s                   {:.1} (teacher {:.1})",
            r.student_tokens_per_s,
            r.teacher_tokens_per_s
        )?;
    }
    Ok(())
}

/// The model's perplexity alone on the data.
fn alone(ctx: &Context, a: &Args, model: &mut Model) -> Result<()> {
    let vocab = model.config.vocab;
    let data = load_tokens(&a.model, a.data.as_deref(), vocab, a.seq_len, a.sequences)?;
    let bar = progress::counter("evaluating", "tokens")?;
    let r = evaluate_alone(ctx, model, &data, &mut |done, total| {
        bar.set_length(total);
        bar.set_position(done);
    });
    bar.finish_and_clear();
    let r: PerplexityReport = r?;
    if a.json {
        return Ok(outln!("{}", serde_json::to_string(&r)?)?);
    }
    outln!(
        "tokens                     {} in {} sequences ({} predicted)",
        r.tokens,
        r.sequences,
        r.predicted
    )?;
    outln!("perplexity                 {:.3}", r.perplexity)?;
    outln!("expert bytes per token     {:.0}", r.expert_bytes_per_token)?;
    outln!("tokens/s                   {:.1}", r.tokens_per_s)?;
    Ok(())
}
