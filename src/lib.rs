//! moe-gpu runs Mixture-of-Experts language models on any GPU through wgpu.
//!
//! The GPU does the routing, the token-to-expert permutation and the grouped expert matmuls;
//! the host decides which experts live in VRAM. [`Model`] loads a whole Hugging Face MoE
//! checkpoint onto the GPU and generates from it token by token ([`Model::generate`]).

pub mod bench;
pub mod calibration;
pub mod error;
pub mod gpu;
pub mod kernels;
#[cfg(test)]
mod layering;
pub mod model;
pub mod moe;
pub mod prune;
pub mod reference;
pub mod spec;
pub mod synthetic;

pub use error::{Error, Result};
pub use gpu::{Context, ContextOptions};
pub use model::{
    ChatMessage, ChatTemplate, GenerateOptions, Generator, Logits, Model, ModelOptions, Sampling,
    TextStream, Tokenizer, stop_tokens,
};
pub use moe::{ForwardOptions, MoeLayer, MoeOutput};
pub use spec::{MoeLayerSpec, MoeWeights, RoutingSpec};
