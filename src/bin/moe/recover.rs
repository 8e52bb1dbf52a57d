//! `moe prune --recover`: the teacher's MoE-layer inputs on calibration text, then a
//! least-squares refit of each pruned layer (`moe_gpu::prune::recover`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec_for};
use moe_gpu::prune::write::stored_dtypes;
use moe_gpu::prune::{
    LayerInput, LayerRecovery, PrunePlan, Replacements, layer_inputs, recover_layer,
};
use moe_gpu::spec::{ExpertFormat, WeightFormat};
use moe_gpu::{Context, ModelOptions};

use crate::data::load_tokens;
use crate::progress;

#[derive(clap::Args)]
pub struct RecoverArgs {
    /// Refit each pruned layer's kept router rows (and merged experts' down projections) by
    /// least squares against the unpruned layer's output on --data (layer-wise distillation).
    #[arg(long, requires = "data")]
    recover: bool,
    /// Calibration text (needs tokenizer.json) or token ids for --recover.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Calibration tokens --recover fits on.
    #[arg(long, default_value_t = 2048)]
    recover_tokens: usize,
    /// Tokens per calibration sequence (each from an empty KV cache).
    #[arg(long, default_value_t = 128)]
    seq_len: usize,
}

/// Refits the layers of `plan` into `new` when --recover is given; returns what it did.
pub fn run(
    a: &RecoverArgs,
    model: &Path,
    cfg: &ModelConfig,
    plan: &PrunePlan,
    new: &mut Replacements,
) -> Result<Vec<LayerRecovery>> {
    if !a.recover {
        return Ok(Vec::new());
    }
    if a.recover_tokens == 0 || a.seq_len == 0 {
        anyhow::bail!("--recover-tokens and --seq-len must be at least 1");
    }
    let ctx = Context::new()?;
    let options = ModelOptions {
        max_batch: a.seq_len,
        max_logit_rows: a.seq_len,
        max_context: Some(a.seq_len),
        ..Default::default()
    };
    let mut teacher = progress::load_model(&ctx, model, &options)?;
    let data = load_tokens(model, a.data.as_deref(), cfg.vocab, a.seq_len, 1)?;
    let layers: Vec<usize> = plan.layers.iter().map(|l| l.layer).collect();
    let bar = progress::spinner("running the teacher on the calibration tokens")?;
    let inputs = layer_inputs(&ctx, &mut teacher, &data, &layers, a.recover_tokens)?;
    drop(teacher);
    let ckpt = Arc::new(Checkpoint::open(model)?);
    let mut done = Vec::new();
    for lp in &plan.layers {
        bar.set_message(format!("refitting layer {}", lp.layer));
        let (router_dtype, expert_dtype) = stored_dtypes(&ckpt, cfg, lp.layer)?;
        let spec = moe_layer_spec_for(cfg, lp.layer, ExpertFormat::uniform(WeightFormat::F32));
        let teacher = load_moe_weights(&ckpt, cfg, lp.layer)?;
        let input = LayerInput {
            spec: &spec,
            teacher: &teacher,
            plan: lp,
            x: &inputs[&lp.layer],
            router_dtype,
            expert_dtype,
        };
        done.push(recover_layer(&input, new)?);
    }
    bar.finish_and_clear();
    Ok(done)
}
