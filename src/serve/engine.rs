//! What the scheduler needs of a model, and its implementation for [`Model`].

use crate::error::Result;
use crate::gpu::Context;
use crate::model::{Logits, Model};

/// What the scheduler needs of a model: `slots()` sequences, each with its own KV cache.
pub trait Engine {
    /// Sequences that can be decoded at once.
    fn slots(&self) -> usize;
    /// Logits per token.
    fn vocab(&self) -> usize;
    /// Tokens a sequence holds at most (prompt and generated).
    fn context(&self) -> usize;
    /// One step: each entry appends its tokens to its slot's cache; returns each entry's
    /// last-token logits (`[vocab]` per entry, in entry order).
    fn step(&mut self, entries: &[(usize, &[u32])]) -> Result<Vec<Vec<f32>>>;
    /// Empties a slot's cache.
    fn reset(&mut self, slot: usize) -> Result<()>;
}

/// A loaded [`Model`] as an [`Engine`]: a slot per sequence of the model
/// ([`ModelOptions::sequences`](crate::ModelOptions::sequences)). The one-token entries of a
/// step (decode) run as one batched [`Model::decode`]; longer ones (prompts) each prefill
/// their own sequence. A sequence's logits do not depend on the others in its step.
pub struct ModelEngine {
    ctx: Context,
    model: Model,
}

impl ModelEngine {
    /// The engine of `model`, which runs on `ctx`.
    pub fn new(ctx: Context, model: Model) -> Self {
        Self { ctx, model }
    }
}

impl Engine for ModelEngine {
    fn slots(&self) -> usize {
        self.model.sequences()
    }

    fn vocab(&self) -> usize {
        self.model.config.vocab
    }

    fn context(&self) -> usize {
        self.model.limits.context
    }

    fn step(&mut self, entries: &[(usize, &[u32])]) -> Result<Vec<Vec<f32>>> {
        let mut logits = vec![Vec::new(); entries.len()];
        let mut decode = Vec::new();
        for (i, &(slot, ids)) in entries.iter().enumerate() {
            match ids {
                [id] => decode.push((i, (slot, *id))),
                _ => {
                    logits[i] = self
                        .model
                        .forward_sequence(&self.ctx, slot, ids, Logits::Last)?
                }
            }
        }
        if !decode.is_empty() {
            let tokens: Vec<(usize, u32)> = decode.iter().map(|&(_, t)| t).collect();
            let out = self.model.decode(&self.ctx, &tokens)?;
            for ((i, _), l) in decode.into_iter().zip(out) {
                logits[i] = l;
            }
        }
        Ok(logits)
    }

    fn reset(&mut self, slot: usize) -> Result<()> {
        self.model.reset_sequence(slot)
    }
}
