//! Serving concurrent requests: an [`Engine`] (the model as the scheduler sees it: slots, each
//! with its own KV cache) and a [`Scheduler`] whose one worker thread owns the engine and
//! decodes every active request together (continuous batching: a request joins at the next
//! step). The HTTP server of `moe serve` and the `moe chat` REPL sit on top of it.

pub mod engine;
pub mod request;
pub mod scheduler;
pub mod stop_text;
mod worker;

pub use engine::{Engine, ModelEngine};
pub use request::{Event, Finish, Request};
pub use scheduler::{Admission, Load, Scheduler, SchedulerOptions};
