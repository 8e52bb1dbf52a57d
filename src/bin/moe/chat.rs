//! `moe chat`: a multi-turn REPL through the checkpoint's chat template. The history is kept
//! and rendered whole each turn, and only the tokens past what the KV cache already holds of
//! it are prefilled; answers stream to stdout, tokens/s to stderr. Piped stdin is read as one
//! user message per line until EOF.

use std::io::{BufRead as _, IsTerminal as _, Write as _};
use std::path::PathBuf;

use anyhow::{Result, anyhow};
use moe_gpu::{
    ChatMessage, ChatTemplate, Context, GenerateOptions, ModelOptions, Sampling, TextStream,
    Tokenizer, stop_tokens,
};

use crate::out::{out, outln};
use crate::progress;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model directory with tokenizer.json and a chat template, or a GGUF file.
    #[arg(long)]
    model: PathBuf,
    /// A system turn at the start of the conversation (kept by /reset).
    #[arg(long)]
    system: Option<String>,
    /// New tokens per answer at most.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Sample from softmax(logits / T) instead of taking the most likely token.
    #[arg(long)]
    temperature: Option<f32>,
    /// With --temperature: sample only from the smallest set whose probability reaches P.
    #[arg(long, requires = "temperature")]
    top_p: Option<f32>,
    /// With --temperature: seed of the sampler.
    #[arg(long, requires = "temperature")]
    seed: Option<u64>,
    /// KV-cache length (default: min(max_position_embeddings, 4096)); the whole history must
    /// fit in it.
    #[arg(long)]
    max_context: Option<usize>,
}

pub fn run(a: Args) -> Result<()> {
    let sampling = match a.temperature {
        None => Sampling::Greedy,
        Some(temperature) => Sampling::Random {
            temperature,
            top_k: None,
            top_p: a.top_p,
            seed: a.seed.unwrap_or(0),
        },
    };
    sampling.validate()?;
    let tokenizer = Tokenizer::load(&a.model)?;
    let template = ChatTemplate::load(&a.model)?.ok_or_else(|| {
        anyhow!(
            "{} has no chat template (chat_template.jinja, or chat_template in \
             tokenizer_config.json)",
            a.model.display()
        )
    })?;
    let ctx = Context::new()?;
    let options = ModelOptions {
        max_context: a.max_context,
        ..Default::default()
    };
    let mut model = progress::load_model(&ctx, &a.model, &options)?;
    let stop = stop_tokens(&a.model, &model.config)?;
    let interactive = std::io::stdin().is_terminal();
    let start: Vec<ChatMessage> = a
        .system
        .iter()
        .map(|s| ChatMessage::new("system", s))
        .collect();
    let mut history = start.clone();
    if interactive {
        eprintln!(
            "moe chat on {}: /reset clears the history, /exit quits",
            ctx.describe()
        );
    }
    // The tokens in the model's KV cache: the last turn's prompt and answer.
    let mut cached: Vec<u32> = Vec::new();
    let mut lines = std::io::stdin().lock().lines();
    loop {
        if interactive {
            eprint!("> ");
            std::io::stderr().flush()?;
        }
        let Some(line) = lines.next() else { break };
        let line = line?;
        match line.trim() {
            "" => continue,
            "/exit" => break,
            "/reset" => {
                history.clone_from(&start);
                eprintln!("(history cleared)");
                continue;
            }
            _ => {}
        }
        history.push(ChatMessage::new("user", &line));
        let prompt = tokenizer.encode_raw(&template.render(&history, true)?)?;
        let options = GenerateOptions {
            max_new_tokens: a.max_new_tokens,
            sampling,
            stop_tokens: stop.clone(),
            ignore_eos: false,
        };
        // The cache holds the previous turns as far as they match this prompt's tokens.
        let keep = cached
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count();
        let mut generator = match model.generate_after(&ctx, keep, &prompt, options) {
            Ok(g) => g,
            Err(e) => {
                history.pop();
                eprintln!("error: {e}; /reset starts a new conversation");
                continue;
            }
        };
        let mut stream = TextStream::new(&tokenizer);
        while let Some(token) = generator.next_token()? {
            out!("{}", stream.push(token)?)?;
        }
        outln!()?;
        let stats = generator.stats();
        eprintln!(
            "[{} tokens, {:.2} tokens/s; {} of {} prompt tokens from the cache]",
            stats.generated_tokens,
            stats.decode_tokens_per_s(),
            stats.cached_tokens,
            stats.prompt_tokens
        );
        let fed = generator.model().position();
        cached = [generator.prompt(), generator.generated()].concat();
        cached.truncate(fed);
        history.push(ChatMessage::new("assistant", &stream.text()?));
    }
    Ok(())
}
