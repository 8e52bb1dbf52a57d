//! Several sequences in one model, each with its own KV cache and position
//! ([`ModelOptions::sequences`](crate::ModelOptions::sequences)): a prompt is prefilled into
//! its sequence alone ([`Model::forward_sequence`]), and [`Model::decode`] advances any set of
//! sequences by one token each in one batched step. Each query's attention keys are split by a
//! rule of its own key count, and the routed experts see each row alone, so a sequence's logits
//! do not depend on which others share its step (tests/model/sequences.rs).

use crate::error::{Error, Result};
use crate::gpu::{Context, decode};
use crate::kernels::rows::RowPlace;
use crate::model::decoder::Model;
use crate::moe::step_buffers::read_checked;

impl Model {
    /// Tokens currently in the KV cache (of sequence 0).
    pub fn position(&self) -> usize {
        self.positions[0]
    }

    /// Empties every sequence's KV cache (the next forward starts at position 0).
    pub fn reset(&mut self) {
        self.positions.fill(0);
    }

    /// Forgets all but the first `tokens` tokens of sequence 0's KV cache (no-op if it holds
    /// fewer): the next forward continues from there.
    pub fn rewind(&mut self, tokens: usize) {
        self.positions[0] = self.positions[0].min(tokens);
    }

    /// Sequences the model holds, each with its own KV cache.
    pub fn sequences(&self) -> usize {
        self.positions.len()
    }

    /// Tokens in sequence `seq`'s KV cache.
    pub fn sequence_position(&self, seq: usize) -> Result<usize> {
        self.positions.get(seq).copied().ok_or_else(|| {
            Error::input(format!(
                "sequence {seq} does not exist: the model holds {} (ModelOptions::sequences)",
                self.positions.len()
            ))
        })
    }

    /// Empties sequence `seq`'s KV cache.
    pub fn reset_sequence(&mut self, seq: usize) -> Result<()> {
        self.sequence_position(seq)?;
        self.positions[seq] = 0;
        Ok(())
    }

    /// Where `tokens` new tokens of sequence `seq` sit: its cache's rows, from its position.
    pub(super) fn places(&self, seq: usize, tokens: usize) -> Vec<RowPlace> {
        RowPlace::consecutive(seq * self.limits.context, self.positions[seq], tokens)
    }

    /// One batched decode step: appends `token` to sequence `seq` for every `(seq, token)`
    /// (distinct sequences) and returns each one's `[vocab]` logits, in the same order.
    pub fn decode(&mut self, ctx: &Context, tokens: &[(usize, u32)]) -> Result<Vec<Vec<f32>>> {
        let n = tokens.len();
        if n == 0 || n > self.positions.len() {
            return Err(Error::input(format!(
                "a decode step takes 1 to {} sequences, not {n}",
                self.positions.len()
            )));
        }
        let mut places = Vec::with_capacity(n);
        for (i, &(seq, id)) in tokens.iter().enumerate() {
            if tokens[..i].iter().any(|&(other, _)| other == seq) {
                return Err(Error::input(format!(
                    "sequence {seq} appears twice in one decode step"
                )));
            }
            self.check_ids(seq, &[id])?;
            places.extend(self.places(seq, 1));
        }
        if let Some((_, layer)) = self.moe_layers().next() {
            layer.clear_status(ctx)?;
        }
        let ids: Vec<u32> = tokens.iter().map(|&(_, id)| id).collect();
        self.step(ctx, &ids, &places, n, None)?;
        let vocab = self.config.vocab;
        let bytes = read_checked(ctx, &self.logits, (n * vocab * 4) as u64)?;
        for &(seq, _) in tokens {
            self.positions[seq] += 1;
        }
        Ok((0..n)
            .map(|i| decode(&bytes, (i * vocab * 4) as u64, vocab))
            .collect())
    }
}
