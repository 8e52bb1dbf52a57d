//! One MoE layer on the GPU: router → select (counting the pairs per expert) → scan/scatter →
//! grouped gate/up → grouped down → combine (+ shared expert); a step of at most 64 tokens
//! builds the permutation inside its selection (no scan dispatch), and a decode step fuses the
//! down projection into the combine. Pipelines and bind groups are built once for a maximum
//! token count, over step buffers that the layers of a model share. One call,
//! [`MoeLayer::record`], records a step: where every expert is resident it records every
//! kernel into the caller's submission; in cache mode (fewer slots than experts) it reads back
//! which experts the step needs and uploads them between routing and the GEMMs.
//!
//! - `state.rs`: the layer's parts and accessors;
//! - `build.rs`: building it once;
//! - `step.rs`: recording one step;
//! - `cache_step.rs`: the expert-cache part of a step (readback, uploads, rounds);
//! - `host_forward.rs`: the host-facing API (upload, one submit per chunk, readback).

mod build;
mod cache_step;
mod host_forward;
mod state;
mod step;

pub use build::LayerBuild;
pub use host_forward::{ForwardOptions, MAX_INPUT_MAGNITUDE, MoeOutput, check_input};
pub use state::MoeLayer;
pub use step::{CacheRounds, MoeStep, Permutation, StepRecord};
