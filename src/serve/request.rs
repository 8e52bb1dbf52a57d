//! A request to the scheduler and the events it sends back.

use crate::error::Result;
use crate::model::FinishReason;
use crate::model::sampling::Sampling;

/// Turns generated token ids into text (the tokenizer's decode, special tokens skipped).
pub type Decode = Box<dyn Fn(&[u32]) -> Result<String> + Send>;

/// One sequence to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    /// Prompt token ids (already through the chat template and tokenizer).
    pub prompt: Vec<u32>,
    /// New tokens at most (at least 1).
    pub max_tokens: usize,
    /// Greedy or seeded random sampling; each request has its own sampler.
    pub sampling: Sampling,
    /// Generation ends when one of these is sampled; the token itself is not returned.
    pub stop_tokens: Vec<u32>,
    /// Generation ends where the text first contains one of these; the text is cut before it.
    pub stop: Vec<String>,
}

/// What a request receives, in order: text pieces, then one [`Event::Done`] or
/// [`Event::Failed`].
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// New text (never empty).
    Text(String),
    /// Generation ended.
    Done(Finish),
    /// A step failed; the request ends with this message.
    Failed(String),
}

/// How a request ended, with its token counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finish {
    /// [`FinishReason::Stop`] (a stop token or string), [`FinishReason::Length`]
    /// (`max_tokens`) or [`FinishReason::Context`] (the slot's cache is full).
    pub reason: FinishReason,
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Tokens generated (a stop token not counted).
    pub completion_tokens: usize,
}
