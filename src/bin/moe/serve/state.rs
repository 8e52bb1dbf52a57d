//! What every handler shares: the scheduler, the tokenizer and chat template, the served
//! model's name and the API key.

use std::sync::atomic::{AtomicU64, Ordering};

use moe_gpu::serve::Scheduler;
use moe_gpu::{ChatTemplate, Tokenizer};

pub struct AppState {
    pub scheduler: Scheduler,
    pub tokenizer: std::sync::Arc<Tokenizer>,
    pub template: Option<ChatTemplate>,
    /// The name clients give as `model` (the checkpoint directory's name).
    pub model_id: String,
    pub stop_tokens: Vec<u32>,
    pub api_key: Option<String>,
    /// Unix time the server started, the models' `created`.
    pub created: u64,
    next_id: AtomicU64,
}

impl AppState {
    pub fn new(
        scheduler: Scheduler,
        tokenizer: std::sync::Arc<Tokenizer>,
        template: Option<ChatTemplate>,
        model_id: String,
        stop_tokens: Vec<u32>,
        api_key: Option<String>,
    ) -> Self {
        Self {
            scheduler,
            tokenizer,
            template,
            model_id,
            stop_tokens,
            api_key,
            created: unix_now(),
            next_id: AtomicU64::new(1),
        }
    }

    /// A fresh response id with `prefix` (`chatcmpl`, `cmpl`).
    pub fn next_id(&self, prefix: &str) -> String {
        let n = self.next_id.fetch_add(1, Ordering::Relaxed);
        format!("{prefix}-{:x}-{n}", self.created)
    }
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
