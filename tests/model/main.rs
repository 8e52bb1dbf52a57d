//! The `model` test binary: the whole decoder against the HF fixtures, the generation API,
//! sampling and the LM head, calibration and evaluation, pruning, `moe synth` checkpoints, and
//! models on several threads.

#[path = "../common/mod.rs"]
mod common;

mod bf16_checkpoint;
mod calibrate_eval;
mod determinism;
mod expert_formats;
mod generate_api;
mod generate_fixtures;
mod gguf;
mod hybrid;
mod memory_plan;
mod mxfp4_checkpoint;
mod placement;
mod prune;
mod recover;
mod router_status;
mod sampling_and_lm_head;
mod sequences;
mod synth_presets;
mod synth_write;
mod threads;
mod trained;
