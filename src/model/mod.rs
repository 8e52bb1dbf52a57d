//! Hugging Face checkpoints: config.json, memory-mapped safetensors, tensor names per
//! architecture, and the whole decoder on the GPU ([`Model`]).

pub mod arch;
pub(crate) mod attention_block;
pub(crate) mod attention_init;
pub mod capture;
pub mod chat;
pub mod checkpoint;
pub(crate) mod checkpoint_gguf;
mod checkpoint_slices;
pub mod collect_calibration;
pub mod config;
pub mod decoder;
pub mod eval;
pub mod expected_tensors;
pub mod expert_loading;
mod expert_placement;
pub mod generate;
pub mod gguf_config;
pub mod gguf_names;
pub(crate) mod json;
pub mod load_progress;
pub mod memory;
pub(crate) mod mla;
pub mod moe_config;
pub mod non_finite;
pub mod options;
pub mod projection;
pub mod rope_config;
pub mod safetensors_file;
mod safetensors_header;
pub mod sampling;
pub(crate) mod scratch;
pub mod stop;
pub mod summary;
pub mod synth;
pub mod synthetic_checkpoint;
pub mod tensor_spec;
pub mod tensor_trace;
pub mod tokenizer;

pub use attention_init::softmax_scale;
pub use chat::{ChatMessage, ChatTemplate};
pub use checkpoint::Checkpoint;
pub use config::{Arch, MlpKind, ModelConfig};
pub use decoder::{Logits, Model};
pub use expert_loading::{
    load_mlp, load_moe_weights, moe_layer_spec, moe_layer_spec_for, native_expert_formats,
};
pub use generate::{FinishReason, GenerateOptions, GenerationStats, Generator};
pub use options::ModelOptions;
pub use sampling::Sampling;
pub use stop::stop_tokens;
pub use tensor_trace::Trace;
pub use tokenizer::{TextStream, Tokenizer};

// Checked at compile time: a Model moves to another thread, and threads share a Context.
const _: () = {
    const fn send<T: Send>() {}
    const fn send_and_sync<T: Send + Sync>() {}
    send::<Model>();
    send_and_sync::<crate::gpu::Context>();
};
