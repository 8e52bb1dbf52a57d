//! `moe inspect`: architecture, layers, experts, routing, parameters and bytes of a checkpoint.

use std::path::PathBuf;

use anyhow::Result;
use moe_gpu::model::inspect::ModelSummary;

#[derive(clap::Args)]
pub struct Args {
    /// Hugging Face model directory.
    #[arg(long)]
    model: PathBuf,
    /// Print one JSON object instead of the report.
    #[arg(long)]
    json: bool,
}

pub fn run(a: Args) -> Result<()> {
    let s = ModelSummary::from_dir(&a.model)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&s)?);
    } else {
        print!("{}", s.report());
    }
    Ok(())
}
