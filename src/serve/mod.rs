//! Serving concurrent requests: an [`Engine`] (the model as the scheduler sees it: slots, each
//! with its own KV cache) and a [`Scheduler`] whose one worker thread owns the engine and
//! decodes every active request together (continuous batching: a request joins at the next
//! step). The HTTP server of `moe serve` and the `moe chat` REPL sit on top of it.
//!
//! A [`ModelEngine`] wraps a loaded model; any type implementing [`Engine`] works, here one
//! whose next token is always the last one plus 1:
//!
//! ```
//! use moe_gpu::Sampling;
//! use moe_gpu::serve::{Admission, Engine, Event, Request, Scheduler, SchedulerOptions};
//!
//! struct Counter;
//! impl Engine for Counter {
//!     fn slots(&self) -> usize { 2 }
//!     fn vocab(&self) -> usize { 100 }
//!     fn context(&self) -> usize { 64 }
//!     fn step(&mut self, entries: &[(usize, &[u32])]) -> moe_gpu::Result<Vec<Vec<f32>>> {
//!         Ok(entries.iter().map(|(_, ids)| {
//!             let mut logits = vec![0.0; 100];
//!             logits[*ids.last().unwrap() as usize + 1] = 1.0;
//!             logits
//!         }).collect())
//!     }
//!     fn reset(&mut self, _slot: usize) -> moe_gpu::Result<()> { Ok(()) }
//! }
//!
//! let options = SchedulerOptions { max_batch: 2, queue: None };
//! let decode = Box::new(|ids: &[u32]| Ok(ids.iter().map(|i| format!("{i} ")).collect()));
//! let scheduler = Scheduler::start(options, || Ok(Counter), decode)?;
//! let request = Request {
//!     prompt: vec![1, 2],
//!     max_tokens: 3,
//!     sampling: Sampling::Greedy,
//!     stop_tokens: vec![],
//!     stop: vec![],
//! };
//! let Admission::Accepted(mut events) = scheduler.submit(request)? else { panic!("full") };
//! let mut text = String::new();
//! while let Some(Event::Text(t)) = events.blocking_recv() {
//!     text += &t;
//! }
//! assert_eq!(text, "3 4 5 ");
//! # Ok::<(), moe_gpu::Error>(())
//! ```

pub mod engine;
pub mod request;
pub mod scheduler;
pub mod stop_text;
mod worker;

pub use engine::{Engine, ModelEngine};
pub use request::{Event, Finish, Request};
pub use scheduler::{Admission, Load, Scheduler, SchedulerOptions};
