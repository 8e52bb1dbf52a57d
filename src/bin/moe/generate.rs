//! `moe generate`: text (or token ids) from a Hugging Face MoE checkpoint, streamed to stdout.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use moe_gpu::kernels::matmul::WeightFormat;
use moe_gpu::model::{FinishReason, TextStream};
use moe_gpu::{
    ChatMessage, ChatTemplate, Context, GenerateOptions, ModelOptions, Sampling, Tokenizer,
    stop_tokens,
};
use serde_json::json;

use crate::activation::{ExpertActivationArgs, activation_report};
use crate::out::{out, outln};
use crate::progress;
use crate::residency_args::ResidencyArgs;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model directory (config.json, safetensors, and tokenizer.json for --prompt),
    /// or a GGUF file (its tokenizer included).
    #[arg(long)]
    model: PathBuf,
    /// Prompt text, encoded with the model's tokenizer.json (as plain text unless --chat);
    /// `-` reads it from stdin (one trailing newline dropped).
    #[arg(
        long,
        group = "text",
        required_unless_present_any = ["prompt_ids", "prompt_file"],
        conflicts_with = "prompt_ids"
    )]
    prompt: Option<String>,
    /// Read the prompt text from file F (UTF-8, one trailing newline dropped), as --prompt.
    #[arg(long, value_name = "F", group = "text", conflicts_with = "prompt_ids")]
    prompt_file: Option<PathBuf>,
    /// Send the prompt text as a user turn through the checkpoint's chat template
    /// (chat_template.jinja or tokenizer_config.json), opening the assistant's turn.
    #[arg(long, requires = "text")]
    chat: bool,
    /// With --chat: a system turn before the user's.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Prompt token ids, comma-separated (e.g. 1,412,2119).
    #[arg(long, value_delimiter = ',')]
    prompt_ids: Option<Vec<u32>>,
    /// New tokens to generate at most.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Always take the most likely token (the default unless sampling options are given).
    #[arg(long, conflicts_with_all = ["temperature", "top_p", "top_k", "seed"])]
    greedy: bool,
    /// Sample from softmax(logits / T); implied as 1.0 by --top-p, --top-k or --seed.
    #[arg(long)]
    temperature: Option<f32>,
    /// Sample only from the smallest set of tokens whose probability reaches P.
    #[arg(long)]
    top_p: Option<f32>,
    /// Sample only from the K most likely tokens.
    #[arg(long)]
    top_k: Option<usize>,
    /// Seed of the sampler: the same seed gives the same tokens.
    #[arg(long)]
    seed: Option<u64>,
    /// Do not stop at eos_token_id: generate exactly --max-new-tokens tokens.
    #[arg(long)]
    ignore_eos: bool,
    /// Print one JSON object (ids, text, stats) as the last line of stdout.
    #[arg(long)]
    json: bool,
    /// KV-cache length (default: min(max_position_embeddings, 4096)).
    #[arg(long)]
    max_context: Option<usize>,
    /// Tokens per forward step: a longer prompt is prefilled in steps of N; 1 runs it token by
    /// token as decoding does (a routing trace of real text for `moe cache-sim`).
    #[arg(long, value_name = "N", default_value_t = 256)]
    max_batch: usize,
    /// Expert weight format on the GPU (routed and shared experts; attention, dense layers and
    /// the router stay f32): int8 has one scale per row, int4 and mxfp4 one per 32 values, and GGUF's q8_0 … q6_k are llama.cpp's types
    /// [default: the checkpoint's own: mxfp4 for a gpt-oss MXFP4 checkpoint, else f32].
    #[arg(long, value_parser = crate::weight_formats())]
    dtype: Option<String>,
    #[command(flatten)]
    residency: ResidencyArgs,
    #[command(flatten)]
    activation: ExpertActivationArgs,
}

impl Args {
    fn sampling(&self) -> Sampling {
        let sampled = self.temperature.is_some()
            || self.top_p.is_some()
            || self.top_k.is_some()
            || self.seed.is_some();
        if self.greedy || !sampled {
            return Sampling::Greedy;
        }
        Sampling::Random {
            temperature: self.temperature.unwrap_or(1.0),
            top_k: self.top_k,
            top_p: self.top_p,
            seed: self.seed.unwrap_or(0),
        }
    }
}

pub fn run(a: Args) -> Result<()> {
    let sampling = a.sampling();
    sampling.validate()?;
    if a.max_batch == 0 {
        bail!("--max-batch must be at least 1");
    }
    // Text needs the tokenizer; ids are printed as text when one is there to decode them.
    let text = prompt_text(a.prompt.as_deref(), a.prompt_file.as_deref())?;
    // `exists` reads a GGUF file's header, so it is asked only where the answer is needed.
    let tokenizer = match &text {
        Some(_) => Some(Tokenizer::load(&a.model)?),
        None if Tokenizer::exists(&a.model) => Tokenizer::load(&a.model)
            .inspect_err(|e| eprintln!("warning: {e}; printing token ids instead of text"))
            .ok(),
        None => None,
    };
    let prompt = match (&text, &a.prompt_ids, &tokenizer) {
        (Some(text), _, Some(t)) if a.chat => {
            t.encode_raw(&chat_prompt(&a.model, a.system.as_deref(), text)?)?
        }
        (Some(text), _, Some(t)) => t.encode(text)?,
        (None, Some(ids), _) => ids.clone(),
        _ => bail!("give --prompt TEXT, --prompt-file F or --prompt-ids IDS"),
    };
    if prompt.is_empty() {
        bail!("the prompt is empty (no tokens)");
    }
    let ctx = Context::new()?;
    let format = a.dtype.as_deref().map(WeightFormat::parse).transpose()?;
    let options = ModelOptions {
        max_context: a.max_context,
        max_batch: a.max_batch,
        expert_format: format,
        residency: a.residency.options()?,
        // Resident layers read nothing back; the statistics and trace files need their routing.
        // and so does the activation report of the dynamic activation options.
        routing_stats: a.residency.stats.is_some()
            || a.residency.trace_out.is_some()
            || a.activation.is_set(),
        ..Default::default()
    };
    let load = std::time::Instant::now();
    let mut model = progress::load_model(&ctx, &a.model, &options)?;
    let load = load.elapsed();
    a.activation.apply(&mut model)?;
    let stop = stop_tokens(&a.model, &model.config)?;
    let (compiled, tuned) = (ctx.compile_time(), ctx.tuning_time());
    eprintln!(
        "{} on {}: loaded in {:.2} s ({:.2} s compiling kernels, {:.2} s tuning them; once per \
         process, the tunings cached on disk), {:.1} MiB on the GPU; {} prompt tokens",
        model.config.arch.name(),
        ctx.describe(),
        load.as_secs_f64(),
        compiled.as_secs_f64(),
        tuned.as_secs_f64(),
        ctx.allocated_bytes() as f64 / (1 << 20) as f64,
        prompt.len()
    );
    let generate = GenerateOptions {
        max_new_tokens: a.max_new_tokens,
        sampling,
        stop_tokens: stop,
        ignore_eos: a.ignore_eos,
    };
    let mut generator = model.generate(&ctx, &prompt, generate)?;
    let mut stream = tokenizer.as_ref().map(TextStream::new);
    while let Some(token) = generator.next_token()? {
        match stream.as_mut() {
            Some(s) => out!("{}", s.push(token)?)?,
            None => out!("{token} ")?,
        }
    }
    outln!()?;
    let stats = generator.stats();
    let reason = match generator.finish_reason() {
        Some(FinishReason::Stop) => "stop",
        Some(FinishReason::Context) => "context",
        _ => "length",
    };
    eprintln!(
        "{} tokens ({reason}); prefill {:.1} tokens/s, decode {:.2} tokens/s, first token after {:.1} ms",
        stats.generated_tokens,
        stats.prefill_tokens_per_s(),
        stats.decode_tokens_per_s(),
        stats.time_to_first_token.as_secs_f64() * 1e3
    );
    let activation = a
        .activation
        .is_set()
        .then(|| activation_report(generator.model(), generator.model().position()));
    if let Some(s) = &activation {
        eprintln!(
            "activated experts per token: {:.2} of {} over all MoE layers ({:.0} expert weight bytes per token, {:.0} saved)",
            s.activated_experts_per_token,
            s.top_k,
            s.weight_bytes_per_token,
            s.weight_bytes_saved_per_token
        );
    }
    if a.json {
        let mut v = json!({
            "model": a.model.display().to_string(),
            "adapter": ctx.describe(),
            "prompt_ids": generator.prompt(),
            "generated_ids": generator.generated(),
            "finish_reason": reason,
            "stats": {
                "prompt_tokens": stats.prompt_tokens,
                "generated_tokens": stats.generated_tokens,
                "prefill_tokens_per_s": stats.prefill_tokens_per_s(),
                "decode_tokens_per_s": stats.decode_tokens_per_s(),
                "time_to_first_token_ms": stats.time_to_first_token.as_secs_f64() * 1e3,
                "load_ms": load.as_secs_f64() * 1e3,
                "load_compile_ms": compiled.as_secs_f64() * 1e3,
                "load_tuning_ms": tuned.as_secs_f64() * 1e3,
                "compile_ms_after_load": (ctx.compile_time() - compiled).as_secs_f64() * 1e3,
                "gpu_bytes_allocated": ctx.allocated_bytes(),
                "host_rss_anon_bytes": host_rss("RssAnon:"),
                "host_rss_file_bytes": host_rss("RssFile:"),
                "expert_format": generator.model().expert_format_name(),
            },
        });
        if let Some(s) = &stream {
            v["text"] = json!(s.text()?);
        }
        if let Some(s) = &activation {
            v["activation"] = json!(s);
        }
        outln!("{v}")?;
    }
    drop(generator);
    a.residency
        .finish(&model.residency_stats(), model.config.moe.routing.top_k)
}

/// The prompt text: `--prompt` as given, stdin for `--prompt -`, or `--prompt-file`'s
/// contents; read text must be UTF-8 and loses one trailing newline (`echo` adds it).
fn prompt_text(prompt: Option<&str>, file: Option<&Path>) -> Result<Option<String>> {
    let (bytes, source) = match (prompt, file) {
        (Some("-"), _) => {
            let mut bytes = Vec::new();
            std::io::stdin()
                .read_to_end(&mut bytes)
                .context("--prompt -: reading stdin")?;
            (bytes, "--prompt -: stdin".to_string())
        }
        (Some(text), _) => return Ok(Some(text.to_string())),
        (None, Some(f)) => {
            let bytes = std::fs::read(f)
                .with_context(|| format!("--prompt-file {}: cannot read it", f.display()))?;
            (bytes, format!("--prompt-file {}", f.display()))
        }
        (None, None) => return Ok(None),
    };
    let text = String::from_utf8(bytes)
        .map_err(|e| anyhow!("{source}: not UTF-8 text ({})", e.utf8_error()))?;
    let line_end = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'));
    Ok(Some(line_end.unwrap_or(&text).to_string()))
}

/// The prompt text of a user turn (after an optional system turn) through the model's chat
/// template.
fn chat_prompt(model: &Path, system: Option<&str>, user: &str) -> Result<String> {
    let Some(template) = ChatTemplate::load(model)? else {
        bail!(
            "--chat: {} has no chat template (chat_template.jinja, or chat_template in \
             tokenizer_config.json)",
            model.display()
        );
    };
    let mut messages: Vec<ChatMessage> = system
        .map(|s| ChatMessage::new("system", s))
        .into_iter()
        .collect();
    messages.push(ChatMessage::new("user", user));
    Ok(template.render(&messages, true)?)
}

/// A line of /proc/self/status in bytes (Linux; `None` elsewhere): `RssAnon:` is the process's
/// own memory (on a software adapter the GPU buffers too), `RssFile:` the pages of mapped files
/// (the memory-mapped checkpoint), which the kernel can drop at will.
fn host_rss(key: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(key))?;
    let kb: u64 = line[key.len()..]
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()?;
    Some(kb * 1024)
}
