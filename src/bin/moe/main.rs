//! `moe`: the moe-gpu command line.

mod activation;
mod bench;
mod bench_attention;
mod block;
mod cache_sim;
mod calibrate;
mod chat;
mod data;
mod demo;
mod demo_limits;
mod eval;
mod generate;
mod inspect;
mod io;
mod out;
mod plot;
mod progress;
mod prune;
mod recover;
mod residency_args;
mod serve;
mod synth;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "moe",
    version,
    about = "Mixture-of-Experts inference on any GPU through wgpu"
)]
struct Cli {
    /// Draw no progress bars (they are drawn only when stderr is a terminal anyway).
    #[arg(long, global = true)]
    quiet: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a built-in synthetic MoE model (no files needed): prefill, decode, expert histogram.
    Demo(demo::Args),
    /// Generate text (or token ids) from a Hugging Face MoE checkpoint, streamed to stdout.
    Generate(generate::Args),
    /// Measure sparse speedup, grouped GEMM and decode bandwidth efficiency, host cost and
    /// submits per step at shapes imitating real models.
    Bench(bench::Args),
    /// Time a decode step's attention over long KV caches: split-KV against the unsplit kernel.
    BenchAttention(bench_attention::Args),
    /// Run one MoE block of a checkpoint on tokens from a safetensors file.
    Block(block::Args),
    /// Describe a checkpoint: architecture, layers, experts, routing, parameters, bytes.
    Inspect(inspect::Args),
    /// Per-layer, per-expert routing statistics on calibration data (for pruning and `auto`).
    Calibrate(calibrate::Args),
    /// Remove or merge whole experts by calibration statistics; writes an HF checkpoint.
    Prune(prune::Args),
    /// Compare a student model with its teacher: KL, top-1 agreement, expert bytes, speed.
    Eval(eval::Args),
    /// Replay a routing trace through each expert-cache policy and Belady's optimum.
    CacheSim(cache_sim::Args),
    /// Write a Hugging Face checkpoint with random weights shaped like a published MoE model
    /// (config, tensor names and shapes, shards), without downloading it.
    Synth(synth::Args),
    /// Serve the model over OpenAI's HTTP API (/v1/chat/completions, /v1/completions,
    /// /v1/models, /health), decoding concurrent requests together.
    Serve(serve::Args),
    /// Chat with the model in the terminal through its chat template (piped stdin: one user
    /// message per line).
    Chat(chat::Args),
}

/// Parses the command line. Negative numbers are read as values, so that `--temperature -1`
/// or `--layer -1` is refused with the reason instead of as an unknown argument.
/// The `--dtype` values: every weight format's name.
fn weight_formats() -> clap::builder::PossibleValuesParser {
    clap::builder::PossibleValuesParser::new(
        moe_gpu::kernels::matmul::WeightFormat::ALL.map(|f| f.name()),
    )
}

fn parse() -> Cli {
    let command = Cli::command().mut_subcommands(|c| c.allow_negative_numbers(true));
    Cli::from_arg_matches(&command.get_matches()).unwrap_or_else(|e| e.exit())
}

fn main() {
    let cli = parse();
    progress::set_quiet(cli.quiet);
    let result = match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Generate(a) => generate::run(a),
        Command::Bench(a) => bench::run(a),
        Command::BenchAttention(a) => bench_attention::run(a),
        Command::Block(a) => block::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Calibrate(a) => calibrate::run(a),
        Command::Prune(a) => prune::run(a),
        Command::Eval(a) => eval::run(a),
        Command::CacheSim(a) => cache_sim::run(a),
        Command::Synth(a) => synth::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Chat(a) => chat::run(a),
    };
    if let Err(e) = result {
        if out::is_closed(&e) {
            std::process::exit(0);
        }
        eprintln!("error: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_option_of_every_command_has_help() {
        let mut missing = Vec::new();
        for command in Cli::command().get_subcommands() {
            for arg in command.get_arguments() {
                if arg.get_help().is_none() && !arg.is_positional() {
                    let flag = arg.get_long().unwrap_or(arg.get_id().as_str());
                    missing.push(format!("moe {} --{flag}", command.get_name()));
                }
            }
        }
        assert!(missing.is_empty(), "options without help: {missing:#?}");
    }
}
