//! The `model` test binary: the whole decoder against the HF fixtures, the generation API,
//! sampling and the LM head, calibration and evaluation, and pruning.

#[path = "../common/mod.rs"]
mod common;

mod bf16_checkpoint;
mod calibrate_eval;
mod generate_api;
mod generate_fixtures;
mod memory_plan;
mod mxfp4_checkpoint;
mod prune;
mod sampling_and_lm_head;
