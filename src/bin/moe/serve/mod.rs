//! `moe serve`: an OpenAI-compatible HTTP server (axum on tokio) over the library's
//! [`Scheduler`]: one worker thread owns the model, handlers only parse, queue and stream.

mod error;
mod request;
mod response;
mod routes;
mod state;
mod stream;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use axum::Router;
use axum::routing::{get, post};
use moe_gpu::model::ModelConfig;
use moe_gpu::serve::{ModelEngine, Scheduler, SchedulerOptions};
use moe_gpu::{ChatTemplate, Context, Model, ModelOptions, Tokenizer, stop_tokens};

use state::AppState;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model directory: config.json, safetensors, tokenizer.json, and a chat
    /// template for /v1/chat/completions; or a GGUF file, which holds all of them.
    #[arg(long)]
    model: PathBuf,
    /// Address to listen on (127.0.0.1: this machine only).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on; 0 picks a free one (the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Sequences decoded together at most: each has its own KV cache of --max-context tokens,
    /// and every decode step is one batched forward of all active ones.
    #[arg(long, default_value_t = 8)]
    max_batch: usize,
    /// Requests waiting for a slot at most; more get 503 [default: 4 per slot].
    #[arg(long)]
    max_queue: Option<usize>,
    /// KV-cache length per sequence (default: min(max_position_embeddings, 4096)).
    #[arg(long)]
    max_context: Option<usize>,
    /// Require `Authorization: Bearer KEY` on the /v1 endpoints.
    #[arg(long)]
    api_key: Option<String>,
}

pub fn run(a: Args) -> Result<()> {
    anyhow::ensure!(a.max_batch >= 1, "--max-batch must be at least 1");
    let config = ModelConfig::load(&a.model)?;
    let tokenizer = Arc::new(Tokenizer::load(&a.model)?);
    let template = ChatTemplate::load(&a.model)?;
    let stop = stop_tokens(&a.model, &config)?;
    let model_id = a
        .model
        .canonicalize()
        .ok()
        .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| a.model.display().to_string());
    let options = ModelOptions {
        max_context: a.max_context,
        sequences: a.max_batch,
        max_batch: a.max_batch.max(ModelOptions::default().max_batch),
        ..Default::default()
    };
    let dir = a.model.clone();
    let decoder = tokenizer.clone();
    let scheduler = Scheduler::start(
        SchedulerOptions {
            max_batch: a.max_batch,
            queue: a.max_queue,
        },
        move || {
            let ctx = Context::new()?;
            let model = Model::load_with(&ctx, &dir, &options)?;
            eprintln!(
                "moe serve: {} on {}, context {} tokens",
                model.config.arch.name(),
                ctx.describe(),
                model.limits.context
            );
            Ok(ModelEngine::new(ctx, model))
        },
        Box::new(move |ids| decoder.decode(ids)),
    )?;
    if template.is_none() {
        eprintln!("moe serve: the model has no chat template; only /v1/completions will work");
    }
    let state = Arc::new(AppState::new(
        scheduler, tokenizer, template, model_id, stop, a.api_key,
    ));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the tokio runtime")?;
    runtime.block_on(serve(state, &a.host, a.port))?;
    eprintln!("moe serve: shut down");
    Ok(())
}

async fn serve(state: Arc<AppState>, host: &str, port: u16) -> Result<()> {
    let v1 = Router::new()
        .route("/v1/models", get(routes::models))
        .route("/v1/chat/completions", post(routes::chat))
        .route("/v1/completions", post(routes::completions))
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            routes::require_key,
        ));
    let app = v1
        .route("/health", get(routes::health))
        .fallback(routes::not_found)
        .method_not_allowed_fallback(routes::method_not_allowed)
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind((host, port))
        .await
        .with_context(|| format!("cannot listen on {host}:{port}"))?;
    let addr: SocketAddr = listener.local_addr()?;
    eprintln!(
        "moe serve: {} (slots {}), listening on http://{addr}",
        state.model_id,
        state.scheduler.slots()
    );
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown_signal())
        .await
        .context("serving HTTP")
}

/// Resolves at SIGINT or (on Unix) SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    eprintln!("moe serve: shutting down");
}
