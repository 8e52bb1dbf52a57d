//! The teacher's inputs to its MoE layers on calibration tokens: what recovery fits against.

use std::collections::BTreeMap;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::model::Model;

/// Runs `model` on `sequences` (each from an empty cache, in one step: the model needs
/// `max_batch` and `max_logit_rows` ≥ the longest) until `max_tokens` tokens have run, and
/// returns each of `layers`' MLP inputs, [tokens, hidden], by layer.
pub fn layer_inputs(
    ctx: &Context,
    model: &mut Model,
    sequences: &[Vec<u32>],
    layers: &[usize],
    max_tokens: usize,
) -> Result<BTreeMap<usize, Vec<f32>>> {
    let h = model.config.hidden;
    let mut out: BTreeMap<usize, Vec<f32>> = layers.iter().map(|l| (*l, Vec::new())).collect();
    let mut tokens = 0;
    for seq in sequences {
        if tokens >= max_tokens {
            break;
        }
        let take = &seq[..seq.len().min(max_tokens - tokens)];
        let trace = model.trace(ctx, take)?;
        for (l, x) in out.iter_mut() {
            let name = format!("layers.{l}.mlp.input");
            let v = trace
                .get(&name)
                .ok_or_else(|| Error::input(format!("the model has no layer {l}")))?;
            x.extend_from_slice(&v[..take.len() * h]);
        }
        tokens += take.len();
    }
    if tokens == 0 {
        return Err(Error::input("no calibration tokens for recovery"));
    }
    Ok(out)
}
