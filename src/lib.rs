//! moe-gpu runs Mixture-of-Experts language models on any GPU through wgpu.
//!
//! The GPU does the routing, the token-to-expert permutation and the grouped expert matmuls;
//! the host decides which experts live in VRAM. [`Model`] loads a whole Hugging Face MoE
//! checkpoint onto the GPU and generates from it token by token ([`Model::generate`]).
//!
//! # A device
//!
//! Everything runs on a [`Context`]: a wgpu device and queue. [`Context::new`] picks an
//! adapter from the environment (`MOE_GPU_BACKEND`, `MOE_GPU_ADAPTER`):
//!
//! ```
//! let ctx = moe_gpu::Context::new()?;
//! println!("{}", ctx.describe());
//! # Ok::<(), moe_gpu::Error>(())
//! ```
//!
//! An application that already has a wgpu device adopts it with [`Context::from_device`];
//! moe-gpu then submits to that queue and uses only the features and limits the device was
//! created with:
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let instance = wgpu::Instance::new(wgpu::InstanceDescriptor::new_without_display_handle());
//! let adapter = pollster::block_on(instance.request_adapter(&Default::default()))?;
//! let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
//!     required_limits: adapter.limits(),
//!     ..Default::default()
//! }))?;
//! let ctx = moe_gpu::Context::from_device(device, queue);
//! assert!(ctx.max_binding() > 0);
//! # Ok(())
//! # }
//! ```
//!
//! # A model
//!
//! [`Model::load`] reads a Hugging Face checkpoint directory (config.json and safetensors);
//! [`Model::generate`] prefills the prompt and yields new token ids one at a time. Here, the
//! tiny OLMoE test fixture generates four tokens greedily:
//!
//! ```
//! use moe_gpu::{Context, GenerateOptions, Model, Sampling};
//!
//! let ctx = Context::new()?;
//! let mut model = Model::load(&ctx, "tests/fixtures/hf-tiny/olmoe/model".as_ref())?;
//! let options = GenerateOptions {
//!     max_new_tokens: 4,
//!     sampling: Sampling::Greedy,
//!     ignore_eos: true,
//!     ..GenerateOptions::for_model(&model)
//! };
//! let tokens: Vec<u32> = model
//!     .generate(&ctx, &[5, 17, 42], options)?
//!     .collect::<moe_gpu::Result<_>>()?;
//! assert_eq!(tokens.len(), 4);
//! assert!(tokens.iter().all(|&t| (t as usize) < model.config.vocab));
//! # Ok::<(), moe_gpu::Error>(())
//! ```
//!
//! # One MoE layer
//!
//! A [`MoeLayer`] is built from a [`MoeLayerSpec`] (shape and routing) and [`MoeWeights`]
//! (host weights; here random ones). [`MoeLayer::forward`] takes `[tokens, hidden]` f32 rows
//! from the host and returns the layer's output of the same shape:
//!
//! ```
//! use moe_gpu::spec::{ExpertFormat, Glu, WeightFormat};
//! use moe_gpu::synthetic::random_moe_weights;
//! use moe_gpu::{Context, MoeLayer, MoeLayerSpec, RoutingSpec};
//!
//! let ctx = Context::new()?;
//! let spec = MoeLayerSpec {
//!     hidden: 32,
//!     inter: 16,
//!     routing: RoutingSpec::softmax(8, 2, true), // top-2 of 8 experts, renormalised
//!     glu: Glu::Silu,
//!     expert_bias: false,
//!     shared_inter: None,
//!     format: ExpertFormat::uniform(WeightFormat::F32),
//! };
//! let weights = random_moe_weights(&spec, 7);
//! let layer = MoeLayer::new(&ctx, spec, &weights, 4)?; // steps of up to 4 tokens
//! let x = vec![0.5f32; 3 * 32]; // [3 tokens, hidden]
//! let out = layer.forward(&ctx, &x)?;
//! assert_eq!(out.len(), 3 * 32);
//! # Ok::<(), moe_gpu::Error>(())
//! ```
//!
//! Inside a larger GPU pipeline, write the input to [`MoeLayer::x`], record the step with
//! [`MoeLayer::record`] into a [`gpu::Recorder`] alongside other work, submit once, and read
//! [`MoeLayer::out`]:
//!
//! ```
//! use moe_gpu::gpu::Recorder;
//! use moe_gpu::moe::{MoeStep, StepRecord};
//! use moe_gpu::spec::{DynamicActivation, ExpertFormat, Glu, WeightFormat};
//! use moe_gpu::synthetic::random_moe_weights;
//! use moe_gpu::{Context, MoeLayer, MoeLayerSpec, RoutingSpec};
//!
//! let ctx = Context::new()?;
//! let spec = MoeLayerSpec {
//!     hidden: 32,
//!     inter: 16,
//!     routing: RoutingSpec::softmax(8, 2, true),
//!     glu: Glu::Silu,
//!     expert_bias: false,
//!     shared_inter: None,
//!     format: ExpertFormat::uniform(WeightFormat::F32),
//! };
//! let weights = random_moe_weights(&spec, 7);
//! let layer = MoeLayer::new(&ctx, spec, &weights, 4)?;
//! let tokens = 2;
//! let x: Vec<f32> = (0..tokens * 32).map(|i| (i as f32 * 0.37).sin()).collect();
//! ctx.queue.write_buffer(&layer.x, 0, bytemuck::cast_slice(&x));
//!
//! let activation = DynamicActivation::default(); // the checkpoint's k, no skipping
//! let mut rec = Recorder::new(&ctx);
//! let step: StepRecord = layer.record(&ctx, &mut rec, &MoeStep::new(tokens, &activation))?;
//! rec.submit()?;
//! assert_eq!(step.tokens, tokens);
//!
//! let out: Vec<f32> = ctx.read_back(&layer.out, tokens * 32)?; // [tokens, hidden]
//! let expected = layer.forward(&ctx, &x)?;
//! assert!(out.iter().zip(&expected).all(|(a, b)| (a - b).abs() < 1e-5));
//! # Ok::<(), moe_gpu::Error>(())
//! ```

#![warn(missing_docs)]

pub mod bench;
pub mod calibration;
pub mod cpu;
pub mod error;
pub mod gguf;
pub mod gpu;
pub mod kernels;
#[cfg(test)]
mod layering;
pub mod model;
pub mod moe;
pub mod prune;
pub mod reference;
pub mod serve;
pub mod spec;
pub mod synthetic;

pub use error::{Error, Result};
pub use gpu::{Context, ContextOptions, format_bytes};
pub use model::{
    ChatMessage, ChatTemplate, GenerateOptions, Generator, Logits, Model, ModelOptions, Sampling,
    TextStream, Tokenizer, stop_tokens,
};
pub use moe::{ForwardOptions, MoeLayer, MoeOutput};
pub use spec::{MoeLayerSpec, MoeWeights, RoutingSpec};
