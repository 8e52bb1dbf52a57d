//! The generation thread: loads the model on the app's device (through the shared
//! [`Context`]), then runs one prompt at a time and sends every token, with the routing of its
//! step, to the UI thread.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;

use anyhow::{Result, bail};
use moe_gpu::moe::{ExpertBudget, ResidencyOptions};
use moe_gpu::{Context, GenerateOptions, Model, ModelOptions, TextStream, Tokenizer, stop_tokens};
use winit::event_loop::EventLoopProxy;

/// What the generation thread tells the UI thread.
#[derive(Debug)]
pub enum Event {
    /// The model is loaded; `experts[i]` routed experts in MoE layer `layers[i]`.
    Loaded {
        /// Architecture and adapter, for the title line.
        describe: String,
        /// Decoder layer index of each MoE layer.
        layers: Vec<usize>,
        /// Routed experts of each MoE layer.
        experts: Vec<usize>,
        /// Whether prompts are text (the model has tokenizer.json) or token ids.
        text: bool,
    },
    /// One generated token and the routing of the step that produced it.
    Token(Step),
    /// Generation ended: why, in words.
    Done(String),
    /// Loading or generating failed.
    Failed(String),
}

/// One generated token and what its step routed.
#[derive(Debug)]
pub struct Step {
    /// The token as text (or as its id when the model has no tokenizer).
    pub text: String,
    /// Tokens routed to each expert of each MoE layer in this step (the prefill step counts
    /// every prompt token).
    pub counts: Vec<Vec<u64>>,
    /// Needed experts that were resident, over all steps so far (None before any was needed).
    pub hit_rate: Option<f64>,
    /// Decode steps per second so far.
    pub tokens_per_s: f64,
}

/// A prompt to run.
pub struct Request {
    /// Text, or comma/space-separated token ids for a model without tokenizer.json.
    pub prompt: String,
    /// New tokens at most.
    pub max_new_tokens: usize,
    /// Generate `max_new_tokens` even past an end-of-sequence token.
    pub ignore_eos: bool,
}

/// Starts the generation thread on `ctx` (the app's device); requests go in through the
/// returned sender, events come back through `proxy` (which wakes the event loop). The thread
/// ends once the sender is dropped, or at its next token once the event loop is gone.
pub fn spawn(
    ctx: Arc<Context>,
    model: PathBuf,
    budget: ExpertBudget,
    proxy: EventLoopProxy<Event>,
) -> (Sender<Request>, JoinHandle<()>) {
    let (tx, rx) = channel();
    let thread = std::thread::spawn(move || {
        if let Err(e) = serve(&ctx, &model, budget, &rx, &proxy) {
            let _ = proxy.send_event(Event::Failed(format!("{e:#}")));
        }
    });
    (tx, thread)
}

fn serve(
    ctx: &Context,
    dir: &std::path::Path,
    budget: ExpertBudget,
    requests: &Receiver<Request>,
    proxy: &EventLoopProxy<Event>,
) -> Result<()> {
    // Resident layers read their routing back only with routing_stats: one small copy per
    // step, the cheapest honest view of which experts each token used.
    let options = ModelOptions {
        routing_stats: true,
        residency: ResidencyOptions {
            budget,
            ..Default::default()
        },
        ..Default::default()
    };
    let mut model = Model::load_with(ctx, dir, &options)?;
    let tokenizer = if dir.join("tokenizer.json").is_file() {
        Some(Tokenizer::load(dir)?)
    } else {
        None
    };
    let stops = stop_tokens(dir, &model.config)?;
    let (layers, experts) = model
        .residency_stats()
        .per_layer
        .iter()
        .map(|l| (l.layer, l.experts))
        .unzip();
    send(
        proxy,
        Event::Loaded {
            describe: format!("{} on {}", model.config.arch.name(), ctx.describe()),
            layers,
            experts,
            text: tokenizer.is_some(),
        },
    )?;
    for request in requests {
        let event = match run(ctx, &mut model, tokenizer.as_ref(), &stops, &request, proxy) {
            Ok(reason) => Event::Done(reason),
            Err(e) => Event::Failed(format!("{e:#}")),
        };
        send(proxy, event)?;
    }
    Ok(())
}

/// Generates for one request, sending each token; returns why generation ended.
fn run(
    ctx: &Context,
    model: &mut Model,
    tokenizer: Option<&Tokenizer>,
    stops: &[u32],
    request: &Request,
    proxy: &EventLoopProxy<Event>,
) -> Result<String> {
    let prompt = match tokenizer {
        Some(t) => t.encode(&request.prompt)?,
        None => parse_ids(&request.prompt)?,
    };
    let options = GenerateOptions {
        max_new_tokens: request.max_new_tokens,
        stop_tokens: stops.to_vec(),
        ignore_eos: request.ignore_eos,
        ..GenerateOptions::for_model(model)
    };
    let mut seen = histograms(model);
    let mut generator = model.generate(ctx, &prompt, options)?;
    let mut stream = tokenizer.map(TextStream::new);
    while let Some(token) = generator.next_token()? {
        let residency = generator.model().residency_stats();
        let now: Vec<Vec<u64>> = residency
            .per_layer
            .iter()
            .map(|l| l.histogram.clone())
            .collect();
        let counts = now
            .iter()
            .zip(&seen)
            .map(|(n, s)| n.iter().zip(s).map(|(n, s)| n - s).collect())
            .collect();
        seen = now;
        let text = match stream.as_mut() {
            Some(s) => s.push(token)?,
            None => format!("{token} "),
        };
        let needed = residency.hits + residency.misses;
        send(
            proxy,
            Event::Token(Step {
                text,
                counts,
                hit_rate: (needed > 0).then(|| residency.hits as f64 / needed as f64),
                tokens_per_s: generator.stats().decode_tokens_per_s(),
            }),
        )?;
    }
    let stats = generator.stats();
    Ok(format!(
        "{} tokens ({:?}), {:.1} tokens/s",
        stats.generated_tokens,
        generator.finish_reason(),
        stats.decode_tokens_per_s()
    ))
}

/// Each MoE layer's tokens-per-expert counts so far.
fn histograms(model: &Model) -> Vec<Vec<u64>> {
    model
        .residency_stats()
        .per_layer
        .into_iter()
        .map(|l| l.histogram)
        .collect()
}

/// Token ids from "12, 45 7": the prompt of a model without tokenizer.json.
pub fn parse_ids(prompt: &str) -> Result<Vec<u32>> {
    let ids = prompt
        .split(|c: char| c == ',' || c.is_whitespace())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse::<u32>())
        .collect::<Result<Vec<_>, _>>();
    match ids {
        Ok(ids) if !ids.is_empty() => Ok(ids),
        _ => bail!(
            "this model has no tokenizer.json: give the prompt as token ids, e.g. 12, 45, 7 \
             (got {prompt:?})"
        ),
    }
}

fn send(proxy: &EventLoopProxy<Event>, event: Event) -> Result<()> {
    if proxy.send_event(event).is_err() {
        bail!("the window has closed");
    }
    Ok(())
}
