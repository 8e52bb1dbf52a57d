//! What the scheduler needs of a model, and its implementation for [`Model`].

use crate::error::{Error, Result};
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

/// A loaded [`Model`] as an [`Engine`] of one slot (its one KV cache).
pub struct ModelEngine {
    ctx: Context,
    model: Model,
}

impl ModelEngine {
    /// The engine of `model`, which runs on `ctx`.
    pub fn new(ctx: Context, model: Model) -> Self {
        Self { ctx, model }
    }

    fn check_slot(&self, slot: usize) -> Result<()> {
        if slot >= self.slots() {
            return Err(Error::input(format!(
                "slot {slot} does not exist: the model has {} slot(s)",
                self.slots()
            )));
        }
        Ok(())
    }
}

impl Engine for ModelEngine {
    fn slots(&self) -> usize {
        1
    }

    fn vocab(&self) -> usize {
        self.model.config.vocab
    }

    fn context(&self) -> usize {
        self.model.limits.context
    }

    fn step(&mut self, entries: &[(usize, &[u32])]) -> Result<Vec<Vec<f32>>> {
        let mut logits = Vec::with_capacity(entries.len());
        for (slot, ids) in entries {
            self.check_slot(*slot)?;
            logits.push(self.model.forward(&self.ctx, ids, Logits::Last)?);
        }
        Ok(logits)
    }

    fn reset(&mut self, slot: usize) -> Result<()> {
        self.check_slot(slot)?;
        self.model.reset();
        Ok(())
    }
}
