//! Experts whose gate/up and down matrices are stored in different formats (as llama.cpp's
//! Q4_K_M keeps some layers' down in Q6_K) against `reference::moe_block` on the weights as
//! each matrix's own format holds them (`WeightFormat::dequantize`; the router stays f32): the
//! same experts within 1e-5 and the output within 1e-4 of max(1, |ref|), the limit of
//! tests/layer/moe_layer.rs. One token runs the decode matvec, fused with the combine where
//! down is not int8; nine run the prefill GEMMs. Reading either matrix in the other's format
//! misses that limit, so a swapped or shared format fails.

use moe_gpu::kernels::matmul::{ExpertFormat, Glu, WeightFormat};
use moe_gpu::moe::{DynamicActivation, ForwardOptions, MoeLayer, MoeLayerSpec, RoutingSpec};
use moe_gpu::reference::moe_block;
use moe_gpu::synthetic::{Rng, random_moe_weights};

use crate::common;
use crate::common::layer::as_stored;

/// (gate/up, down): int4 with int8 both ways, the two 16-bit formats, MXFP4 with f32.
const MIXED: [(WeightFormat, WeightFormat); 4] = [
    (WeightFormat::Int4, WeightFormat::Int8),
    (WeightFormat::Int8, WeightFormat::Int4),
    (WeightFormat::F16, WeightFormat::Bf16),
    (WeightFormat::Mxfp4, WeightFormat::F32),
];

#[test]
fn gate_up_and_down_in_different_formats_match_the_reference_on_each_ones_weights() {
    let ctx = common::ctx();
    let options = ForwardOptions {
        capture_routing: true,
        ..Default::default()
    };
    let act = DynamicActivation::default();
    for (i, (gate_up, down)) in MIXED.into_iter().enumerate() {
        let format = ExpertFormat { gate_up, down };
        let spec = MoeLayerSpec {
            hidden: 64,
            inter: 40,
            routing: RoutingSpec::softmax(8, 2, true),
            glu: Glu::Silu,
            expert_bias: false,
            shared_inter: Some(24),
            format,
        };
        let w = random_moe_weights(&spec, 70 + i as u64);
        let layer = MoeLayer::new(ctx, spec.clone(), &w, 9).unwrap();
        for tokens in [1, 9] {
            let what = format!("{format} T={tokens}");
            let x = Rng::new(tokens as u64).normals(tokens * spec.hidden, 1.0);
            let got = layer.forward_with(ctx, &x, &options).unwrap();
            let want = moe_block(&x, &spec, &as_stored(&spec, &w, format), &act).unwrap();
            common::assert_same_routing(
                &what,
                spec.routing.top_k,
                got.topk_ids.as_ref().unwrap(),
                got.topk_weights.as_ref().unwrap(),
                &want.topk_ids,
                &want.topk_weights,
                1e-5,
            );
            common::assert_close(&what, &got.output, &want.output, 1e-4);
            for wrong in [ExpertFormat::uniform(gate_up), ExpertFormat::uniform(down)] {
                let other = moe_block(&x, &spec, &as_stored(&spec, &w, wrong), &act).unwrap();
                let err = common::max_scaled_err(&got.output, &other.output);
                assert!(
                    err > 1e-4,
                    "{what}: the {wrong} reference is as close ({err:e})"
                );
            }
        }
    }
}
