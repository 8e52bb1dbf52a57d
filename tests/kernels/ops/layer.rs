//! The whole MoE layer (`MoeLayer::forward`) with its experts (and shared expert) stored in
//! each weight format against `reference::moe_block` on the weights as that format holds them
//! (dequantised; the router stays f32): the same experts chosen with weights within 1e-5, and
//! the output within 1e-4 of max(1, |ref|), the layer's limit in tests/layer/moe_layer.rs. The
//! error the formats themselves add against the f32 weights is stated and tested in
//! tests/kernels/f16_error.rs and quant_error.rs.

use moe_gpu::kernels::matmul::{ExpertFormat, Glu, WeightFormat};
use moe_gpu::moe::{DynamicActivation, ForwardOptions, MoeLayer, RoutingSpec};
use moe_gpu::reference::moe_block;
use moe_gpu::spec::MoeLayerSpec;
use moe_gpu::synthetic::{Rng, random_moe_weights};

use super::routing::compare_routing;
use super::{Measured, SCALE, Table, model_label, real_models, scaled_err};
use crate::common::ctx;
use crate::common::layer::as_stored;

const LAYER_TOL: f64 = 1e-4;

fn layer_case(spec: &MoeLayerSpec, format: ExpertFormat, tokens: usize, seed: u64) -> Measured {
    let ctx = ctx();
    let weights = random_moe_weights(spec, seed);
    let stored_spec = MoeLayerSpec {
        format,
        ..spec.clone()
    };
    let layer = MoeLayer::new(ctx, stored_spec, &weights, tokens).unwrap();
    let x = Rng::new(seed + 1).normals(tokens * spec.hidden, 1.0);
    let options = ForwardOptions {
        capture_routing: true,
        ..Default::default()
    };
    let got = layer.forward_with(ctx, &x, &options).unwrap();
    let act = DynamicActivation::default();
    let want = moe_block(&x, spec, &as_stored(spec, &weights, format), &act).unwrap();
    let (ids, w) = (got.topk_ids.unwrap(), got.topk_weights.unwrap());
    let k = spec.routing.top_k;
    let routing = compare_routing(k, &ids, &w, &want.topk_ids, &want.topk_weights);
    let mut m = Measured::new(
        "max_scaled",
        scaled_err(&got.output, &want.output),
        LAYER_TOL,
    );
    if routing.note.is_some() || routing.value > routing.limit {
        m.note = Some(format!(
            "routing: {} (weights {:.1e})",
            routing.note.unwrap_or_default(),
            routing.value
        ));
    }
    m
}

pub fn layer(t: &mut Table) {
    // (label, spec, token counts): odd sizes with a shared expert, then the real models.
    let mut specs = vec![(
        "h=45 i=27 E=8 k=2 +shared".to_string(),
        MoeLayerSpec {
            hidden: 45,
            inter: 27,
            routing: RoutingSpec::softmax(8, 2, true),
            glu: Glu::Silu,
            expert_bias: false,
            shared_inter: Some(19),
            format: ExpertFormat::uniform(WeightFormat::F32),
        },
        vec![1, 3],
    )];
    for m in real_models() {
        let s = m.layer_spec(SCALE, m.top_k, ExpertFormat::uniform(WeightFormat::F32));
        specs.push((model_label(&m), s, vec![1, 7]));
    }
    // Every format in both matrices, then gate/up and down in different formats.
    let mixed = [
        (WeightFormat::Int4, WeightFormat::Int8),
        (WeightFormat::F16, WeightFormat::Bf16),
    ]
    .map(|(gate_up, down)| ExpertFormat { gate_up, down });
    let formats = WeightFormat::ALL.map(ExpertFormat::uniform);
    for format in formats.into_iter().chain(mixed) {
        for (i, (label, spec, tokens)) in specs.iter().enumerate() {
            for &tk in tokens {
                let shape = format!("T={tk} {label}");
                t.case("moe_layer", &shape, &format.name(), || {
                    layer_case(spec, format, tk, 9000 + 10 * i as u64 + tk as u64)
                });
            }
        }
    }
}
