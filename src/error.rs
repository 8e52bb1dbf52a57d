//! One error type for the whole library. Every variant names what was wrong and where.

use std::path::PathBuf;

/// Everything that can go wrong in moe-gpu, with enough context to act on it.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No wgpu adapter matched the request; the message says what to install or change.
    #[error("no GPU adapter: {0}")]
    NoAdapter(String),

    /// The adapter refused to create a device.
    #[error("could not create a GPU device on {adapter}: {message}")]
    Device {
        /// Name of the adapter.
        adapter: String,
        /// wgpu's error.
        message: String,
    },

    /// A WGSL shader or compute pipeline failed validation.
    #[error("kernel `{kernel}` failed to build: {message}")]
    Shader {
        /// Name of the kernel.
        kernel: String,
        /// The validation error.
        message: String,
    },

    /// A GPU operation (submit, map, poll) failed at run time.
    #[error("GPU error during {what}: {message}")]
    Gpu {
        /// The operation that failed.
        what: String,
        /// wgpu's error.
        message: String,
    },

    /// The device could not create a buffer: over its `max_buffer_size`, out of memory, or
    /// refused by validation.
    #[error("could not allocate GPU buffer `{label}` of {bytes} bytes: {reason}")]
    GpuAllocation {
        /// The buffer's label.
        label: String,
        /// Its size in bytes.
        bytes: u64,
        /// The limit it exceeds, or wgpu's error.
        reason: String,
    },

    /// The GPU device was lost (driver reset, device destroyed). Nothing on it can be used
    /// again: drop the `Model`s and the `Context` and build new ones.
    #[error(
        "the GPU device was lost ({0}); drop the Model and the Context and build new ones on a fresh device"
    )]
    DeviceLost(String),

    /// Reading or writing a file failed. The cause is part of the message (not a `source`),
    /// so error chains print it once.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        cause: std::io::Error,
    },

    /// A safetensors file is malformed, truncated or not a safetensors file at all.
    #[error("{}: not a valid safetensors file: {message}", path.display())]
    Checkpoint {
        /// The safetensors file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A GGUF file is malformed, truncated or not a GGUF file at all (its header, before any
    /// one key or tensor can be blamed).
    #[error("{}: not a valid GGUF file: {message}", path.display())]
    Gguf {
        /// The GGUF file (the part, for a split model).
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },

    /// A GGUF metadata key is missing, malformed, or has the wrong type or value.
    #[error("{}: GGUF key `{key}`: {message}", path.display())]
    GgufKey {
        /// The GGUF file (the part, for a split model).
        path: PathBuf,
        /// The metadata key.
        key: String,
        /// What is wrong with it.
        message: String,
    },

    /// A tensor is missing or has the wrong shape or dtype.
    #[error("tensor `{name}`: {message}")]
    Tensor {
        /// Tensor name in the checkpoint.
        name: String,
        /// What is wrong with it.
        message: String,
    },

    /// config.json is missing a field, has a wrong value, or asks for math we do not implement.
    #[error("config.json field `{field}`: {message}")]
    Config {
        /// The config.json field (dotted for nested ones).
        field: String,
        /// What is wrong with it.
        message: String,
    },

    /// The checkpoint's `model_type` is not one we can run.
    #[error(
        "unsupported model_type `{0}`; supported: mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v2, deepseek_v3, gpt_oss"
    )]
    UnknownArchitecture(String),

    /// Caller-supplied data is invalid (NaN, out-of-range ids, wrong length, bad option).
    #[error("invalid input: {0}")]
    InvalidInput(String),

    /// tokenizer.json is missing or invalid, or text could not be encoded or decoded.
    #[error("tokenizer {}: {message}", path.display())]
    Tokenizer {
        /// The tokenizer file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },

    /// A layer's router produced NaN or infinite logits (its input or weights overflow f32).
    #[error("layer {layer}: router logits are not finite (NaN or Inf)")]
    NonFiniteRouterLogits {
        /// The decoder layer (0 for an MoE layer built on its own).
        layer: usize,
    },

    /// A buffer would exceed a device limit and cannot be split.
    #[error("{what} needs {needed} bytes, over the device limit {limit_name} = {limit} bytes")]
    DeviceLimit {
        /// The buffer, by label.
        what: String,
        /// Bytes it would take.
        needed: u64,
        /// The `wgpu::Limits` field, e.g. `max_storage_buffer_binding_size`.
        limit_name: &'static str,
        /// The limit's value, in bytes.
        limit: u64,
    },
}

/// The library's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, cause: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            cause,
        }
    }

    pub(crate) fn tensor(name: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Tensor {
            name: name.into(),
            message: message.into(),
        }
    }

    pub(crate) fn config(field: impl Into<String>, message: impl Into<String>) -> Self {
        Error::Config {
            field: field.into(),
            message: message.into(),
        }
    }

    pub(crate) fn input(message: impl Into<String>) -> Self {
        Error::InvalidInput(message.into())
    }

    pub(crate) fn gpu(what: impl Into<String>, message: impl std::fmt::Display) -> Self {
        Error::Gpu {
            what: what.into(),
            message: message.to_string(),
        }
    }
}
