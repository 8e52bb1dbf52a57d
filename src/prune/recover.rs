//! Gradient-free recovery after pruning (layer-wise distillation by least squares): each pruned
//! MoE layer's kept router rows, and the down projections of experts that absorbed others by
//! merging, are refit so that the layer's routed output on calibration tokens comes closer to
//! the unpruned teacher layer's. A fit is kept only where it lowers that loss, measured with
//! the weights rounded to the checkpoint's own dtype (and not raised on the tokens held back to
//! check it), so recovery never raises it.

use safetensors::Dtype;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::prune::plan::LayerPlan;
use crate::prune::recover_experts::refit_merged;
use crate::prune::recover_fit::{Fit, weighted_sum};
use crate::prune::recover_router::refit_router;
use crate::prune::write::{Replacements, stored_value};
use crate::reference::linear::{glu_mlp, linear};
use crate::reference::moe::pair_outputs;
use crate::reference::routing::route;
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::routing::DynamicActivation;
use crate::spec::weights::{ExpertWeights, MoeWeights};

/// What recovery did to one pruned MoE layer.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LayerRecovery {
    /// Decoder layer index.
    pub layer: usize,
    /// Calibration tokens.
    pub tokens: usize,
    /// ‖teacher − student‖² / ‖teacher‖² of the routed output over the calibration tokens,
    /// before recovery.
    pub loss_before: f64,
    /// The same after recovery (never above `loss_before`).
    pub loss_after: f64,
    /// Whether the router rows were replaced.
    pub router_refit: bool,
    /// Merged experts whose down projection was replaced.
    pub experts_refit: usize,
}

/// One pruned MoE layer and its calibration inputs.
pub struct LayerInput<'a> {
    /// The unpruned layer's spec.
    pub spec: &'a MoeLayerSpec,
    /// The unpruned layer's weights: the teacher.
    pub teacher: &'a MoeWeights,
    /// Which experts the pruned layer keeps.
    pub plan: &'a LayerPlan,
    /// The teacher's inputs to this layer, [tokens, hidden].
    pub x: &'a [f32],
    /// The checkpoint's dtype of the router weight, as written.
    pub router_dtype: Dtype,
    /// The checkpoint's dtype of the expert weights, as written.
    pub expert_dtype: Dtype,
}

/// The teacher layer's routed output on `x` ([tokens, hidden]), summed per token as the fit sums
/// the student's.
fn teacher_output(
    x: &[f32],
    tokens: usize,
    spec: &MoeLayerSpec,
    t: &MoeWeights,
) -> Result<Vec<f64>> {
    let (h, e, k) = (spec.hidden, spec.routing.experts, spec.routing.top_k);
    let logits = linear(x, tokens, h, &t.router, e, t.router_bias.as_deref());
    let activation = DynamicActivation::default();
    let (ids, w) = route(
        &logits,
        tokens,
        &spec.routing,
        t.correction.as_deref(),
        &activation,
    );
    let pairs = pair_outputs(x, spec, t, &ids)?;
    let mut target = Vec::with_capacity(tokens * h);
    for tok in 0..tokens {
        let valid: Vec<usize> = (tok * k..(tok + 1) * k)
            .filter(|p| ids[*p] != crate::spec::INVALID)
            .collect();
        let wts: Vec<f32> = valid.iter().map(|p| w[*p]).collect();
        let rows = valid.iter().map(|p| &pairs[p * h..(p + 1) * h]);
        target.extend(weighted_sum(h, &wts, rows));
    }
    Ok(target)
}

/// Refits one pruned layer; writes what improved into `out` and reports the loss.
pub fn recover_layer(input: &LayerInput, out: &mut Replacements) -> Result<LayerRecovery> {
    let (spec, plan) = (input.spec, input.plan);
    let h = spec.hidden;
    if input.x.is_empty() || !input.x.len().is_multiple_of(h) {
        return Err(Error::input(format!(
            "layer {}: {} calibration values are not whole rows of {h}",
            plan.layer,
            input.x.len()
        )));
    }
    let tokens = input.x.len() / h;
    let t = input.teacher;
    let target = teacher_output(input.x, tokens, spec, t)?;
    let merged = out.experts.get(&plan.layer);
    let mut experts: Vec<ExpertWeights> = plan
        .keep
        .iter()
        .map(|&e| match merged.and_then(|m| m.get(&e)) {
            Some(w) => Ok(w.clone()),
            None => t.experts.load(e),
        })
        .collect::<Result<_>>()?;
    let rows = |v: &[f32], width: usize| -> Vec<f32> {
        plan.keep
            .iter()
            .flat_map(|&e| v[e * width..(e + 1) * width].iter().copied())
            .collect()
    };
    let router = rows(&t.router, h);
    let mut routing = spec.routing.clone();
    routing.experts = plan.keep.len();
    routing.validate()?;
    let outputs = experts
        .iter()
        .map(|w| glu_mlp(input.x, tokens, h, spec.inter, w, spec.glu))
        .collect();
    let mut fit = Fit::new(routing, h, input.x, target, outputs);
    fit.bias = t.router_bias.as_ref().map(|b| rows(b, 1));
    fit.correction = t.correction.as_ref().map(|c| rows(c, 1));
    let loss_before = fit.loss(&router).total();
    let refit = refit_router(&fit, &router, stored_value(input.router_dtype)?)?;
    let router = refit.clone().unwrap_or(router);
    let mergers: Vec<usize> = (0..plan.keep.len())
        .filter(|&i| merged.is_some_and(|m| m.contains_key(&plan.keep[i])))
        .collect();
    let experts_refit = if mergers.is_empty() {
        0
    } else {
        let round = stored_value(input.expert_dtype)?;
        refit_merged(&mut fit, &router, spec, &mut experts, &mergers, round)?
    };
    let loss_after = fit.loss(&router).total();
    if let Some(r) = &refit {
        out.routers.insert(plan.layer, r.clone());
    }
    if experts_refit > 0 {
        let layer = out.experts.entry(plan.layer).or_default();
        for &i in &mergers {
            layer.insert(plan.keep[i], experts[i].clone());
        }
    }
    Ok(LayerRecovery {
        layer: plan.layer,
        tokens,
        loss_before,
        loss_after,
        router_refit: refit.is_some(),
        experts_refit,
    })
}
