//! Hugging Face checkpoints: config.json, memory-mapped safetensors, tensor names per
//! architecture, and the whole decoder on the GPU ([`Model`]).

pub mod arch;
pub mod attention;
pub mod attention_init;
pub mod calibrate;
pub mod capture;
pub mod chat;
pub mod checkpoint;
pub mod config;
pub mod decoder;
pub mod eval;
pub mod experts;
pub mod generate;
pub mod inspect;
pub mod json;
pub mod linear;
pub mod memory;
pub mod mla;
pub mod moe_config;
pub mod options;
pub mod rope;
pub mod sampling;
pub mod scratch;
pub mod stop;
pub mod synthetic;
pub mod tokenizer;
pub mod trace;

pub use chat::{ChatMessage, ChatTemplate};
pub use checkpoint::Checkpoint;
pub use config::{Arch, MlpKind, ModelConfig};
pub use decoder::{Logits, Model};
pub use experts::{load_mlp, load_moe_weights, moe_layer_spec, moe_layer_spec_for};
pub use generate::{FinishReason, GenerateOptions, GenerationStats, Generator};
pub use options::ModelOptions;
pub use sampling::Sampling;
pub use stop::stop_tokens;
pub use tokenizer::{TextStream, Tokenizer};
pub use trace::Trace;
