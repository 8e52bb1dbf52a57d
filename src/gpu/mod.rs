//! The wgpu layer: device context, buffers and the pipeline cache.

mod buffer;
mod context;
mod pipeline;
mod recorder;
mod timer;

pub use buffer::{BUFFER_ALIGN, Staging, decode};
pub use context::{Context, ContextOptions, parse_backend};
pub use pipeline::{Binding, Kernel, Pipeline, PipelineKey};
pub use recorder::Recorder;
pub use timer::{GpuTimer, TimeSource, median};
