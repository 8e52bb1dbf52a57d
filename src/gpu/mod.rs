//! The wgpu layer: device context, buffers, kernel descriptions and the pipeline cache. It
//! knows no particular kernel; those are declared in `src/kernels/`.

mod adapter;
mod buffer;
mod byte_count;
mod context;
mod device_memory;
mod fault;
mod kernel;
mod pipeline;
mod recorder;
mod timer;

pub use adapter::{ContextOptions, parse_backend};
pub use buffer::{BUFFER_ALIGN, Staging, decode, padded};
pub use byte_count::{format_bytes, parse_bytes};
pub use context::Context;
pub use kernel::{Access, Binding, KernelDef, Override};
pub use pipeline::{Pipeline, PipelineKey};
pub use recorder::Recorder;
pub use timer::{GpuTimer, TimeSource, median};
