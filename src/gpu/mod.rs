//! The wgpu layer: device context, buffers and the pipeline cache.

mod buffer;
mod context;
mod pipeline;

pub use buffer::{Staging, decode};
pub use context::{Context, ContextOptions, parse_backend};
pub use pipeline::{Binding, Kernel, Pipeline, PipelineKey};
