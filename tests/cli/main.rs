//! The `cli` test binary: the `moe` command line end to end (block, inspect, residency,
//! generate, bench, synth, plots, serve, chat).

#[path = "../common/mod.rs"]
mod common;

mod bench_report;
mod cli;
mod cli_residency;
mod generate_cli;
mod gguf_cli;
mod inspect_checks;
mod messages;
mod plots;
mod robustness;
mod run;
mod serve;
mod serve_client;
mod synth;
