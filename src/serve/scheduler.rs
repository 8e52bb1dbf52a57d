//! Continuous batching: one worker thread owns the [`Engine`]. Each loop it admits waiting
//! requests into free slots (one step of their prompts), then runs one step with every active
//! sequence's last token, samples each with its own sampler, checks stop tokens, stop strings
//! and `max_tokens`, sends the new text, and frees the slots of finished requests and of
//! requests whose receiver is gone (a client that left).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Sender, channel, sync_channel};
use std::thread::JoinHandle;

use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use crate::error::{Error, Result};
use crate::serve::engine::Engine;
use crate::serve::request::{Decode, Event, Request};
use crate::serve::worker::{Counters, Job, Worker};

/// Sizes of the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchedulerOptions {
    /// Sequences decoded together at most (capped by the engine's slots).
    pub max_batch: usize,
    /// Requests waiting for a slot at most: once every slot is taken and this many wait,
    /// [`Scheduler::submit`] answers [`Admission::Full`] (default: 4 per slot).
    pub queue: Option<usize>,
}

/// The answer to a submitted request.
#[derive(Debug)]
pub enum Admission {
    /// Queued or running: its events arrive here. Dropping the receiver cancels it.
    Accepted(UnboundedReceiver<Event>),
    /// Every slot is busy and the queue is full.
    Full,
}

/// What the scheduler is doing, for a health check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Load {
    /// Requests holding a slot.
    pub running: usize,
    /// Requests waiting for a slot.
    pub waiting: usize,
    /// Tokens generated since the start, by every request.
    pub generated: usize,
}

/// Sizes the engine reported when the worker started.
#[derive(Debug, Clone, Copy)]
struct Shape {
    slots: usize,
    vocab: usize,
    context: usize,
}

/// Runs requests on an engine owned by a worker thread; dropping it lets the running requests
/// finish and stops the worker.
pub struct Scheduler {
    queue: Option<Sender<Job>>,
    counters: Arc<Counters>,
    queue_limit: usize,
    shape: Shape,
    worker: Option<JoinHandle<()>>,
}

impl Scheduler {
    /// Starts the worker, which builds its engine with `make` (on the worker thread, so the
    /// engine need not be `Send`) and decodes text with `decode`. Returns once the engine is
    /// built, or with the error that building it gave.
    pub fn start<E: Engine + 'static>(
        options: SchedulerOptions,
        make: impl FnOnce() -> Result<E> + Send + 'static,
        decode: Decode,
    ) -> Result<Self> {
        if options.max_batch == 0 {
            return Err(Error::input("the batch must hold at least 1 sequence"));
        }
        let (queue, jobs) = channel();
        let (ready, started) = sync_channel(1);
        let counters = Arc::new(Counters::default());
        let shared = counters.clone();
        let worker = std::thread::Builder::new()
            .name("moe-scheduler".into())
            .spawn(move || {
                let engine = match make() {
                    Ok(e) => e,
                    Err(e) => return drop(ready.send(Err(e))),
                };
                let shape = Shape {
                    slots: engine.slots().min(options.max_batch),
                    vocab: engine.vocab(),
                    context: engine.context(),
                };
                if ready.send(Ok(shape)).is_ok() {
                    Worker::new(engine, shape.slots, decode, shared).run(&jobs);
                }
            })
            .map_err(|e| Error::input(format!("cannot start the scheduler thread: {e}")))?;
        let shape = started
            .recv()
            .map_err(|_| Error::input("the scheduler thread ended while building the engine"))??;
        if shape.slots == 0 {
            return Err(Error::input("the engine has no slots"));
        }
        Ok(Self {
            queue: Some(queue),
            counters,
            queue_limit: options.queue.unwrap_or(4 * shape.slots),
            shape,
            worker: Some(worker),
        })
    }

    /// Sequences decoded together.
    pub fn slots(&self) -> usize {
        self.shape.slots
    }

    /// Tokens a sequence holds at most.
    pub fn context(&self) -> usize {
        self.shape.context
    }

    /// Requests running and waiting, and tokens generated so far.
    pub fn load(&self) -> Load {
        let c = &self.counters;
        Load {
            running: c.running.load(Ordering::SeqCst),
            waiting: c.waiting.load(Ordering::SeqCst),
            generated: c.generated.load(Ordering::SeqCst),
        }
    }

    /// Checks `request` and queues it.
    pub fn submit(&self, request: Request) -> Result<Admission> {
        self.check(&request)?;
        let (events, receiver) = unbounded_channel();
        let queue = self.queue.as_ref().ok_or_else(stopped)?;
        let accepted = &self.counters.accepted;
        if accepted.fetch_add(1, Ordering::SeqCst) >= self.shape.slots + self.queue_limit {
            accepted.fetch_sub(1, Ordering::SeqCst);
            return Ok(Admission::Full);
        }
        self.counters.waiting.fetch_add(1, Ordering::SeqCst);
        queue.send(Job { request, events }).map_err(|_| stopped())?;
        Ok(Admission::Accepted(receiver))
    }

    fn check(&self, r: &Request) -> Result<()> {
        if r.prompt.is_empty() {
            return Err(Error::input("the prompt is empty (no tokens)"));
        }
        if r.prompt.len() > self.shape.context {
            return Err(Error::input(format!(
                "the prompt has {} tokens, more than the context of {}",
                r.prompt.len(),
                self.shape.context
            )));
        }
        if let Some(id) = r.prompt.iter().find(|id| **id as usize >= self.shape.vocab) {
            return Err(Error::input(format!(
                "prompt token id {id} is out of range: the vocabulary has {} tokens",
                self.shape.vocab
            )));
        }
        if r.max_tokens == 0 {
            return Err(Error::input("max_tokens must be at least 1"));
        }
        r.sampling.validate()
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        self.queue = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

fn stopped() -> Error {
    Error::input("the scheduler has stopped")
}

#[cfg(test)]
#[path = "scheduler_tests.rs"]
mod tests;
