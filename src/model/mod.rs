//! Hugging Face checkpoints: config.json, memory-mapped safetensors, tensor names per architecture.

pub mod checkpoint;
pub mod config;
pub mod experts;
pub mod inspect;
pub mod json;

pub use checkpoint::Checkpoint;
pub use config::{Arch, MlpKind, ModelConfig};
pub use experts::{load_mlp, load_moe_weights, moe_layer_spec, moe_layer_spec_for};
