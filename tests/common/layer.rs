//! A whole MoE layer with its experts stored in some format, against the f32 reference.

use moe_gpu::kernels::matmul::WeightFormat;
use moe_gpu::moe::{DynamicActivation, ForwardOptions, MoeLayer};
use moe_gpu::reference::moe_block;
use moe_gpu::spec::MoeLayerSpec;
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
        format,
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
