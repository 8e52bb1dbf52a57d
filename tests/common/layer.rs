//! A whole MoE layer with its experts stored in some format, against the f32 reference.

use std::sync::Arc;

use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
use moe_gpu::moe::{DynamicActivation, ForwardOptions, MoeLayer};
use moe_gpu::reference::moe_block;
use moe_gpu::spec::{ExpertWeights, MoeLayerSpec, MoeWeights, SharedExpert};
use moe_gpu::synthetic::{Rng, random_moe_weights};

/// Builds `spec`'s layer from random f32 weights (`seed`) stored as `format`, runs it on
/// random tokens of each count in `tokens`, and checks that it routes as the f32 reference
/// does (the router stays f32: same sets, weights within 1e-5). Returns, per count, the
/// label, the GPU output and the reference output.
pub fn outputs_against_reference(
    spec: &MoeLayerSpec,
    format: WeightFormat,
    seed: u64,
    tokens: &[usize],
) -> Vec<(String, Vec<f32>, Vec<f32>)> {
    let ctx = super::ctx();
    let weights = random_moe_weights(spec, seed);
    let stored = MoeLayerSpec {
        format: ExpertFormat::uniform(format),
        ..spec.clone()
    };
    let max_tokens = tokens.iter().copied().max().unwrap_or(1);
    let layer = MoeLayer::new(ctx, stored, &weights, max_tokens).unwrap();
    let mut rng = Rng::new(seed + 1);
    let options = ForwardOptions {
        capture_routing: true,
        ..Default::default()
    };
    tokens
        .iter()
        .map(|&t| {
            let x = rng.normals(t * spec.hidden, 1.0);
            let got = layer.forward_with(ctx, &x, &options).unwrap();
            let want = moe_block(&x, spec, &weights, &DynamicActivation::default()).unwrap();
            let what = format!("{format} layer {:?} T={t}", spec.glu);
            super::assert_same_routing(
                &what,
                spec.routing.top_k,
                got.topk_ids.as_ref().unwrap(),
                got.topk_weights.as_ref().unwrap(),
                &want.topk_ids,
                &want.topk_weights,
                1e-5,
            );
            (what, got.output, want.output)
        })
        .collect()
}

/// An MLP's matrices as `format` stores them: gate and up in its gate/up format, down in its
/// down format.
pub fn stored(
    w: &ExpertWeights,
    format: ExpertFormat,
    hidden: usize,
    inter: usize,
) -> ExpertWeights {
    ExpertWeights {
        gate: format.gate_up.dequantize(&w.gate, inter, hidden),
        up: format.gate_up.dequantize(&w.up, inter, hidden),
        down: format.down.dequantize(&w.down, hidden, inter),
        ..w.clone()
    }
}

/// `w` with every expert matrix (the shared expert's too) as `format` stores it.
pub fn as_stored(spec: &MoeLayerSpec, w: &MoeWeights, format: ExpertFormat) -> MoeWeights {
    let (h, i) = (spec.hidden, spec.inter);
    let experts: Vec<ExpertWeights> = (0..spec.routing.experts)
        .map(|e| stored(&w.experts.load(e).unwrap(), format, h, i))
        .collect();
    MoeWeights {
        router: w.router.clone(),
        router_bias: w.router_bias.clone(),
        correction: w.correction.clone(),
        shared: w.shared.as_ref().map(|s| SharedExpert {
            mlp: stored(&s.mlp, format, h, spec.shared_inter.unwrap()),
            gate: s.gate.clone(),
            packed: None,
        }),
        experts: Arc::new(experts),
    }
}
