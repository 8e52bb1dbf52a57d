//! Bad input gets a clear error that names what was wrong, never a panic or wrong numbers.

use std::sync::Arc;

use moe_gpu::Error;
use moe_gpu::kernels::matmul::{Glu, WeightFormat};
use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec};
use moe_gpu::moe::{DynamicActivation, ForwardOptions, MoeLayer, MoeLayerSpec, RoutingSpec};
use moe_gpu::synthetic::random_moe_weights;

use crate::common;
use crate::common::edit::{Raw, edited_model, temp_dir};
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
        moe_layer_spec(&cfg, WeightFormat::F32),
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
fn truncated_safetensors_is_an_error_naming_the_file() {
    let d = temp_dir("trunc");
    std::fs::copy(model("mixtral").join("config.json"), d.join("config.json")).unwrap();
    let bytes = std::fs::read(model("mixtral").join("model.safetensors")).unwrap();
    std::fs::write(d.join("model.safetensors"), &bytes[..bytes.len() / 2]).unwrap();
    let e = err_of(Checkpoint::open(&d));
    assert!(
        e.contains("model.safetensors") && e.contains("not a valid safetensors"),
        "{e}"
    );
}

#[test]
fn garbage_and_empty_files_are_errors() {
    for (tag, bytes) in [
        ("garbage", b"this is not a checkpoint at all".to_vec()),
        ("empty", Vec::new()),
        ("huge-header", vec![0xff; 16]),
    ] {
        let d = temp_dir(tag);
        std::fs::write(d.join("model.safetensors"), bytes).unwrap();
        let e = err_of(Checkpoint::open(&d));
        assert!(e.contains("not a valid safetensors"), "{tag}: {e}");
    }
    let e = err_of(Checkpoint::open(&temp_dir("none")));
    assert!(e.contains("no .safetensors file"), "{e}");
}

#[test]
fn missing_expert_tensor_is_named() {
    let name = "model.layers.0.block_sparse_moe.experts.3.w2.weight";
    let d = edited_model(
        &model("mixtral"),
        "missing",
        |t| {
            t.remove(name);
        },
        |_| {},
    );
    let e = err_of(load_layer(&d, 0));
    assert!(e.contains(name) && e.contains("missing"), "{e}");
}

#[test]
fn wrong_shape_is_named_with_both_shapes() {
    let name = "model.layers.0.mlp.gate.weight";
    let d = edited_model(
        &model("olmoe"),
        "shape",
        |t| {
            t.insert(name.into(), Raw::f32(vec![15, 64], &vec![0.0; 15 * 64]));
        },
        |_| {},
    );
    let e = err_of(load_layer(&d, 0));
    assert!(
        e.contains(name) && e.contains("[15, 64]") && e.contains("[16, 64]"),
        "{e}"
    );
}

#[test]
fn wrong_dtype_is_named() {
    let name = "model.layers.0.mlp.experts.1.up_proj.weight";
    let d = edited_model(
        &model("qwen3_moe"),
        "dtype",
        |t| {
            let r = t.get_mut(name).unwrap();
            r.dtype = safetensors::Dtype::I32;
        },
        |_| {},
    );
    let e = err_of(load_layer(&d, 0));
    assert!(e.contains(name) && e.contains("I32"), "{e}");
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
fn k_larger_than_the_expert_count_is_an_error() {
    let d = edited_model(
        &model("mixtral"),
        "k",
        |_| {},
        |c| {
            c["num_experts_per_tok"] = 9.into();
        },
    );
    let e = err_of(ModelConfig::load(&d));
    assert!(e.contains("num_experts_per_tok") && e.contains('9'), "{e}");
}

#[test]
fn bad_config_values_blame_their_own_field() {
    for (field, value, expected) in [
        (
            "num_hidden_layers",
            serde_json::json!(0),
            "`num_hidden_layers`",
        ),
        ("rms_norm_eps", serde_json::json!(-1.0), "`rms_norm_eps`"),
        ("rms_norm_eps", serde_json::json!(0.0), "`rms_norm_eps`"),
    ] {
        let d = edited_model(
            &model("mixtral"),
            "cfg",
            |_| {},
            |c| {
                c[field] = value.clone();
            },
        );
        let e = err_of(ModelConfig::load(&d));
        assert!(e.contains(expected), "{field} = {value}: {e}");
    }
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
        format: WeightFormat::F32,
    }
}

fn tiny_layer() -> (MoeLayerSpec, MoeLayer) {
    let spec = small_spec(8, 4);
    let w = random_moe_weights(&spec, 1);
    let layer = MoeLayer::new(common::ctx(), spec.clone(), &w, 4).unwrap();
    (spec, layer)
}

#[test]
fn nan_and_ragged_input_are_errors() {
    let (_, layer) = tiny_layer();
    let ctx = common::ctx();
    let mut x = vec![0.5f32; 16];
    x[11] = f32::NAN;
    let e = err_of(layer.forward(ctx, &x));
    assert!(e.contains("token 1, column 3") && e.contains("NaN"), "{e}");
    let e = err_of(layer.forward(ctx, &[1.0; 7]));
    assert!(
        e.contains("not a positive multiple of hidden size 8"),
        "{e}"
    );
    let e = err_of(layer.forward(ctx, &[]));
    assert!(e.contains("hidden size"), "{e}");
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

#[test]
fn missing_router_bias_and_correction_bias_are_named() {
    let d = edited_model(
        &model("gpt_oss"),
        "rbias",
        |t| {
            t.remove("model.layers.0.mlp.router.bias");
        },
        |_| {},
    );
    let e = err_of(load_layer(&d, 0));
    assert!(e.contains("model.layers.0.mlp.router.bias"), "{e}");
    let d = edited_model(
        &model("deepseek_v3"),
        "cbias",
        |t| {
            t.remove("model.layers.1.mlp.gate.e_score_correction_bias");
        },
        |_| {},
    );
    let e = err_of(load_layer(&d, 1));
    assert!(e.contains("e_score_correction_bias"), "{e}");
}
