//! The scheduler's worker thread: it owns the engine and its slots, admits queued requests,
//! runs the prompt and decode steps, samples, and sends each request its text.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;

use tokio::sync::mpsc::UnboundedSender;

use crate::error::{Error, Result};
use crate::model::FinishReason;
use crate::model::sampling::Sampler;
use crate::serve::engine::Engine;
use crate::serve::request::{Decode, Event, Finish, Request};
use crate::serve::stop_text::StopText;

/// The counters behind [`Load`], shared with the worker.
#[derive(Default)]
pub(crate) struct Counters {
    pub running: AtomicUsize,
    pub waiting: AtomicUsize,
    /// Requests accepted and not yet ended (waiting or running).
    pub accepted: AtomicUsize,
    pub generated: AtomicUsize,
}

/// A queued request and where its events go.
pub(crate) struct Job {
    pub request: Request,
    pub events: UnboundedSender<Event>,
}

/// A request holding a slot.
struct Sequence {
    slot: usize,
    job: Job,
    sampler: Sampler,
    generated: Vec<u32>,
    /// Tokens in the slot's cache.
    position: usize,
    text: StopText,
}

/// The worker thread's state: the engine and its slots.
pub(crate) struct Worker<E> {
    engine: E,
    free: Vec<usize>,
    active: Vec<Sequence>,
    decode: Decode,
    counters: Arc<Counters>,
}

impl<E: Engine> Worker<E> {
    pub fn new(engine: E, slots: usize, decode: Decode, counters: Arc<Counters>) -> Self {
        Self {
            engine,
            free: (0..slots).rev().collect(),
            active: Vec::new(),
            decode,
            counters,
        }
    }

    /// Serves until the queue is closed and every request has finished.
    pub fn run(mut self, jobs: &Receiver<Job>) {
        loop {
            let (active, free, counters) = (&mut self.active, &mut self.free, &self.counters);
            active.retain(|s| {
                let left = s.job.events.is_closed();
                if left {
                    free.push(s.slot);
                    counters.accepted.fetch_sub(1, Ordering::SeqCst);
                }
                !left
            });
            // Before a blocking wait for work, so that /health never shows a request gone.
            let running = self.active.len();
            self.counters.running.store(running, Ordering::SeqCst);
            let mut admitted = Vec::new();
            while let Some(slot) = self.free.pop() {
                let job = if self.active.is_empty() && admitted.is_empty() {
                    match jobs.recv() {
                        Ok(job) => job,
                        Err(_) => return,
                    }
                } else {
                    match jobs.try_recv() {
                        Ok(job) => job,
                        Err(_) => {
                            self.free.push(slot);
                            break;
                        }
                    }
                };
                self.counters.waiting.fetch_sub(1, Ordering::SeqCst);
                match Sampler::new(job.request.sampling) {
                    Ok(sampler) if !job.events.is_closed() => admitted.push(Sequence {
                        slot,
                        job,
                        sampler,
                        generated: Vec::new(),
                        position: 0,
                        text: StopText::default(),
                    }),
                    result => {
                        if let Err(e) = result {
                            let _ = job.events.send(Event::Failed(e.to_string()));
                        }
                        self.release(slot);
                    }
                }
            }
            let running = self.active.len() + admitted.len();
            self.counters.running.store(running, Ordering::SeqCst);
            if !admitted.is_empty() {
                self.prefill(admitted);
            }
            if !self.active.is_empty() {
                self.decode_step();
            }
            let running = self.active.len();
            self.counters.running.store(running, Ordering::SeqCst);
        }
    }

    /// Frees the slot of a request that ended.
    fn release(&mut self, slot: usize) {
        self.free.push(slot);
        self.counters.accepted.fetch_sub(1, Ordering::SeqCst);
    }

    /// Runs the prompts of newly admitted requests and samples their first tokens.
    fn prefill(&mut self, mut admitted: Vec<Sequence>) {
        for s in &mut admitted {
            s.text = StopText::new(&s.job.request.stop);
            s.position = s.job.request.prompt.len();
        }
        let result = admitted
            .iter()
            .try_for_each(|s| self.engine.reset(s.slot))
            .and_then(|()| {
                let entries: Vec<(usize, &[u32])> = admitted
                    .iter()
                    .map(|s| (s.slot, s.job.request.prompt.as_slice()))
                    .collect();
                self.engine.step(&entries)
            });
        self.accept(admitted, result);
    }

    /// One step of every active sequence's last token.
    fn decode_step(&mut self) {
        let sequences = std::mem::take(&mut self.active);
        let result = {
            let entries: Vec<(usize, &[u32])> = sequences
                .iter()
                .map(|s| {
                    (
                        s.slot,
                        std::slice::from_ref(s.generated.last().unwrap_or(&0)),
                    )
                })
                .collect();
            self.engine.step(&entries)
        };
        self.accept(sequences, result);
    }

    /// Samples each sequence's next token from its logits (or fails them all), keeping the
    /// ones that go on and freeing the slots of the others.
    fn accept(&mut self, sequences: Vec<Sequence>, logits: Result<Vec<Vec<f32>>>) {
        let logits = logits.and_then(|l| {
            if l.len() == sequences.len() {
                Ok(l)
            } else {
                Err(Error::input(format!(
                    "the engine returned {} rows of logits for {} sequences",
                    l.len(),
                    sequences.len()
                )))
            }
        });
        let logits = match logits {
            Ok(l) => l,
            Err(e) => {
                for s in sequences {
                    let _ = s.job.events.send(Event::Failed(e.to_string()));
                    self.release(s.slot);
                }
                return;
            }
        };
        for (mut s, row) in sequences.into_iter().zip(logits) {
            match self.advance(&mut s, &row) {
                Ok(None) => self.active.push(s),
                Ok(Some(reason)) => {
                    let _ = s.job.events.send(Event::Done(Finish {
                        reason,
                        prompt_tokens: s.job.request.prompt.len(),
                        completion_tokens: s.generated.len(),
                    }));
                    self.release(s.slot);
                }
                Err(e) => {
                    let _ = s.job.events.send(Event::Failed(e.to_string()));
                    self.release(s.slot);
                }
            }
        }
    }

    /// Samples one token for `s` and sends its text; `Some` once the sequence has finished.
    fn advance(&self, s: &mut Sequence, logits: &[f32]) -> Result<Option<FinishReason>> {
        let token = s.sampler.sample(logits)?;
        let request = &s.job.request;
        if request.stop_tokens.contains(&token) {
            self.send_rest(s)?;
            return Ok(Some(FinishReason::Stop));
        }
        s.generated.push(token);
        self.counters.generated.fetch_add(1, Ordering::SeqCst);
        let (new, stopped) = s.text.update(&(self.decode)(&s.generated)?);
        if !new.is_empty() {
            let _ = s.job.events.send(Event::Text(new));
        }
        if stopped {
            return Ok(Some(FinishReason::Stop));
        }
        let reason = if s.generated.len() >= request.max_tokens {
            FinishReason::Length
        } else if s.position >= self.engine.context() {
            FinishReason::Context
        } else {
            s.position += 1;
            return Ok(None);
        };
        self.send_rest(s)?;
        Ok(Some(reason))
    }

    /// Sends the text held back for a possible stop string once the sequence has ended.
    fn send_rest(&self, s: &mut Sequence) -> Result<()> {
        let rest = s.text.finish(&(self.decode)(&s.generated)?);
        if !rest.is_empty() {
            let _ = s.job.events.send(Event::Text(rest));
        }
        Ok(())
    }
}
