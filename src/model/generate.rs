//! Token-by-token generation: the prompt is prefilled on the first call, then every call runs
//! one decode step (one submit while experts are resident) and samples on the host.

use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::model::decoder::{Logits, Model};
use crate::model::sampling::{Sampler, Sampling};

/// What to generate and when to stop.
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOptions {
    /// New tokens at most (exactly this many with `ignore_eos`, context permitting).
    pub max_new_tokens: usize,
    /// Greedy or random sampling.
    pub sampling: Sampling,
    /// Generation ends when one of these is sampled; the stop token itself is not returned.
    pub stop_tokens: Vec<u32>,
    /// Ignore `stop_tokens` and generate `max_new_tokens`.
    pub ignore_eos: bool,
}

impl GenerateOptions {
    /// Greedy decoding of up to 64 tokens, stopping at the config's `eos_token_id`s (see
    /// [`crate::model::stop_tokens`] for generation_config.json's as well).
    pub fn for_model(model: &Model) -> Self {
        Self {
            max_new_tokens: 64,
            sampling: Sampling::Greedy,
            stop_tokens: model.config.eos_token_ids.clone(),
            ignore_eos: false,
        }
    }
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishReason {
    /// A stop token was sampled.
    Stop,
    /// `max_new_tokens` were generated.
    Length,
    /// The KV cache is full.
    Context,
    /// A step failed; the error was returned.
    Failed,
}

/// Timings of one generation.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct GenerationStats {
    /// Tokens of the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens found in the KV cache ([`Model::generate_after`]), not prefilled.
    pub cached_tokens: usize,
    /// Tokens returned.
    pub generated_tokens: usize,
    /// Prompt forward pass(es), including the readback of the last logits.
    pub prefill: Duration,
    /// From `generate` to the first sampled token.
    pub time_to_first_token: Duration,
    /// Decode steps (forward + readback + sampling).
    pub decode: Duration,
    /// Decode steps run.
    pub decode_steps: usize,
}

impl GenerationStats {
    /// Prompt tokens prefilled per second (0 when none ran).
    pub fn prefill_tokens_per_s(&self) -> f64 {
        if self.prefill.is_zero() {
            return 0.0;
        }
        (self.prompt_tokens - self.cached_tokens) as f64 / self.prefill.as_secs_f64()
    }

    /// Decode steps per second (0 before the first).
    pub fn decode_tokens_per_s(&self) -> f64 {
        if self.decode_steps == 0 {
            return 0.0;
        }
        self.decode_steps as f64 / self.decode.as_secs_f64().max(1e-9)
    }
}

/// Yields generated tokens one at a time; also an [`Iterator`] of `Result<u32>`.
pub struct Generator<'a> {
    ctx: &'a Context,
    model: &'a mut Model,
    options: GenerateOptions,
    sampler: Sampler,
    prompt: Vec<u32>,
    /// Prompt tokens already in the KV cache: the prefill runs the rest.
    kept: usize,
    generated: Vec<u32>,
    started: Instant,
    stats: GenerationStats,
    finished: Option<FinishReason>,
}

impl Model {
    /// Starts generating after `prompt` from an empty KV cache. Nothing runs until the first
    /// [`Generator::next_token`].
    pub fn generate<'a>(
        &'a mut self,
        ctx: &'a Context,
        prompt: &[u32],
        options: GenerateOptions,
    ) -> Result<Generator<'a>> {
        self.reset();
        self.generate_after(ctx, 0, prompt, options)
    }

    /// As [`Self::generate`], keeping the first `keep` tokens of the KV cache, which the
    /// caller knows are `prompt[..keep]` (a chat's earlier turns): only the rest of the prompt
    /// is prefilled. At least the prompt's last token is, for its logits.
    pub fn generate_after<'a>(
        &'a mut self,
        ctx: &'a Context,
        keep: usize,
        prompt: &[u32],
        options: GenerateOptions,
    ) -> Result<Generator<'a>> {
        if keep > self.position() {
            return Err(Error::input(format!(
                "cannot keep {keep} tokens of a KV cache holding {}",
                self.position()
            )));
        }
        if prompt.is_empty() {
            return Err(Error::input("the prompt is empty"));
        }
        if let Some(id) = prompt.iter().find(|id| **id as usize >= self.config.vocab) {
            return Err(Error::input(format!(
                "prompt token id {id} is out of range: the vocabulary has {} tokens",
                self.config.vocab
            )));
        }
        if prompt.len() > self.limits.context {
            return Err(Error::input(format!(
                "the prompt has {} tokens, more than the context of {} (max_position_embeddings \
                 = {}; ModelOptions::max_context)",
                prompt.len(),
                self.limits.context,
                self.config.max_positions
            )));
        }
        let sampler = Sampler::new(options.sampling)?;
        let kept = keep.min(prompt.len() - 1);
        self.rewind(kept);
        Ok(Generator {
            ctx,
            model: self,
            sampler,
            prompt: prompt.to_vec(),
            kept,
            generated: Vec::new(),
            started: Instant::now(),
            stats: GenerationStats {
                prompt_tokens: prompt.len(),
                cached_tokens: kept,
                ..Default::default()
            },
            options,
            finished: None,
        })
    }
}

impl Generator<'_> {
    /// The next token, or None once generation has finished (see [`Self::finish_reason`]).
    pub fn next_token(&mut self) -> Result<Option<u32>> {
        let result = self.step();
        if result.is_err() {
            self.finished = Some(FinishReason::Failed);
        }
        result
    }

    fn step(&mut self) -> Result<Option<u32>> {
        if self.finished.is_some() {
            return Ok(None);
        }
        if self.generated.len() >= self.options.max_new_tokens {
            self.finished = Some(FinishReason::Length);
            return Ok(None);
        }
        let t0 = Instant::now();
        let token = match self.generated.last() {
            None => {
                let rest = &self.prompt[self.kept..];
                let logits = self.model.forward(self.ctx, rest, Logits::Last)?;
                self.stats.prefill = t0.elapsed();
                let token = self.sampler.sample(&logits)?;
                self.stats.time_to_first_token = self.started.elapsed();
                token
            }
            Some(&last) => {
                if self.model.position() >= self.model.limits.context {
                    self.finished = Some(FinishReason::Context);
                    return Ok(None);
                }
                let logits = self.model.forward(self.ctx, &[last], Logits::Last)?;
                let token = self.sampler.sample(&logits)?;
                self.stats.decode += t0.elapsed();
                self.stats.decode_steps += 1;
                token
            }
        };
        if !self.options.ignore_eos && self.options.stop_tokens.contains(&token) {
            self.finished = Some(FinishReason::Stop);
            return Ok(None);
        }
        self.generated.push(token);
        self.stats.generated_tokens = self.generated.len();
        Ok(Some(token))
    }

    /// The model being generated from (e.g. to read its MoE layers between tokens).
    pub fn model(&self) -> &Model {
        self.model
    }

    /// The prompt's token ids.
    pub fn prompt(&self) -> &[u32] {
        &self.prompt
    }

    /// The tokens generated so far.
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    /// Why generation ended; `None` while it goes on.
    pub fn finish_reason(&self) -> Option<FinishReason> {
        self.finished
    }

    /// Timings so far.
    pub fn stats(&self) -> GenerationStats {
        self.stats
    }
}

impl Iterator for Generator<'_> {
    type Item = Result<u32>;

    fn next(&mut self) -> Option<Result<u32>> {
        match self.next_token() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }
}
