//! Bad input gets a clear error that names what was wrong, never a panic or wrong numbers: the
//! cases that check more than an error message (the error variant, several options of one
//! layer, device limits); `bad_input_table.rs` holds the rest, one row each.

use std::sync::Arc;

use moe_gpu::Error;
use moe_gpu::kernels::matmul::{ExpertFormat, Glu, WeightFormat};
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec};
use moe_gpu::moe::{DynamicActivation, ForwardOptions, MoeLayer, MoeLayerSpec, RoutingSpec};
use moe_gpu::synthetic::random_moe_weights;

use crate::common;
use crate::common::edit::edited_model;
use crate::common::fixtures::dir;

fn model(arch: &str) -> std::path::PathBuf {
    dir("hf-tiny", arch).join("model")
}

/// Loads layer 0 of a model dir the way `moe block` does.
fn load_layer(d: &std::path::Path, layer: usize) -> moe_gpu::Result<MoeLayer> {
    let cfg = ModelConfig::load(d)?;
    let ckpt = Arc::new(Checkpoint::open(d)?);
    let w = load_moe_weights(&ckpt, &cfg, layer)?;
    MoeLayer::new(
        common::ctx(),
        moe_layer_spec(&cfg, ExpertFormat::uniform(WeightFormat::F32)),
        &w,
        8,
    )
}

fn err_of<T>(r: moe_gpu::Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn unknown_architecture_is_named() {
    let d = edited_model(
        &model("mixtral"),
        "arch",
        |_| {},
        |c| {
            c["model_type"] = "llama4_moe".into();
        },
    );
    let e = err_of(ModelConfig::load(&d));
    assert!(e.contains("llama4_moe") && e.contains("supported"), "{e}");
    let r = ModelConfig::load(&d);
    assert!(matches!(r, Err(Error::UnknownArchitecture(_))));
}

#[test]
fn non_moe_layer_and_layer_out_of_range_are_errors() {
    let e = err_of(load_layer(&model("deepseek_v2_dense1"), 0));
    assert!(e.contains("layer 0 is not an MoE layer"), "{e}");
    let e = err_of(load_layer(&model("mixtral"), 7));
    assert!(e.contains("layer 7"), "{e}");
}

fn small_spec(hidden: usize, inter: usize) -> MoeLayerSpec {
    MoeLayerSpec {
        hidden,
        inter,
        routing: RoutingSpec::softmax(4, 2, true),
        glu: Glu::Silu,
        expert_bias: false,
        shared_inter: None,
        format: ExpertFormat::uniform(WeightFormat::F32),
    }
}

fn tiny_layer() -> (MoeLayerSpec, MoeLayer) {
    let spec = small_spec(8, 4);
    let w = random_moe_weights(&spec, 1);
    let layer = MoeLayer::new(common::ctx(), spec.clone(), &w, 4).unwrap();
    (spec, layer)
}

#[test]
fn bad_dynamic_activation_is_an_error() {
    let (_, layer) = tiny_layer();
    let ctx = common::ctx();
    let x = vec![0.5f32; 8];
    let run = |a: DynamicActivation| {
        layer.forward_with(
            ctx,
            &x,
            &ForwardOptions {
                activation: a,
                ..Default::default()
            },
        )
    };
    let e = err_of(run(DynamicActivation {
        top_k: Some(3),
        ..Default::default()
    }));
    assert!(e.contains("expert top-k 3"), "{e}");
    let e = err_of(run(DynamicActivation {
        skip_beta: 1.5,
        ..Default::default()
    }));
    assert!(e.contains("skip threshold"), "{e}");
    let e = err_of(run(DynamicActivation {
        top_p: 0.0,
        ..Default::default()
    }));
    assert!(e.contains("top-p"), "{e}");
}

#[test]
fn sizes_over_the_binding_limit_name_the_limit() {
    let ctx = common::ctx();
    let spec = small_spec(64, 32);
    let w = random_moe_weights(&spec, 1);
    let too_many = (ctx.max_binding() / (64 * 4)) as usize + 1;
    let e = err_of(MoeLayer::new(ctx, spec.clone(), &w, too_many));
    assert!(e.contains("max_storage_buffer_binding_size"), "{e}");
    let e = err_of(MoeLayer::new(ctx, spec, &w, 0));
    assert!(e.contains("max_tokens"), "{e}");
}
