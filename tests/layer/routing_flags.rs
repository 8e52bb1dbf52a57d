//! Each routing flag matters: run the fixture with the flag ignored and the fixture no longer
//! matches; with it, it does (tests/layer/fixtures_block.rs). Bad routing configs are clear errors.

use moe_gpu::kernels::matmul::Glu;
use moe_gpu::model::ModelConfig;
use moe_gpu::moe::{GroupScore, MoeLayerSpec, MoeWeights, Scoring};

use crate::common;
use crate::common::edit::edited_model;
use crate::common::fixtures::{BlockRun, Fixture, dir, run_block};

/// How far the GPU block is from the fixture: tokens with a different expert set, the largest
/// weight error (matched by id, sets permitting) and the largest output error.
struct Miss {
    set_mismatch: usize,
    weight_err: f32,
    output_err: f32,
}

fn run(arch: &str, edit: impl FnOnce(&mut MoeLayerSpec, &mut MoeWeights)) -> Miss {
    let fx = Fixture::open("hf-tiny", arch);
    let layer = fx.layers_with("block.layers.", ".input")[0];
    let b = format!("block.layers.{layer}.");
    let x = fx.f32(&format!("{b}input"));
    let BlockRun { spec, out, .. } = run_block(&fx.model_dir, layer, &x, Default::default(), edit);
    let k = spec.routing.top_k;
    let (ids, wts) = (out.topk_ids.unwrap(), out.topk_weights.unwrap());
    let (want_ids, want_w) = (
        fx.ids(&format!("{b}topk_ids")),
        fx.f32(&format!("{b}topk_weights")),
    );
    let mut miss = Miss {
        set_mismatch: 0,
        weight_err: 0.0,
        output_err: 0.0,
    };
    for t in 0..want_ids.len() / k {
        let mut a: Vec<(u32, f32)> = (0..k).map(|j| (ids[t * k + j], wts[t * k + j])).collect();
        let mut c: Vec<(u32, f32)> = (0..k)
            .map(|j| (want_ids[t * k + j], want_w[t * k + j]))
            .collect();
        a.sort_by_key(|p| p.0);
        c.sort_by_key(|p| p.0);
        if a.iter().map(|p| p.0).ne(c.iter().map(|p| p.0)) {
            miss.set_mismatch += 1;
        } else {
            for (p, q) in a.iter().zip(&c) {
                miss.weight_err = miss.weight_err.max((p.1 - q.1).abs());
            }
        }
    }
    miss.output_err = common::max_scaled_err(&out.output, &fx.f32(&format!("{b}output")));
    miss
}

#[test]
fn faithful_run_matches_so_the_ablations_below_are_meaningful() {
    for arch in [
        "deepseek_v3",
        "deepseek_v2_group",
        "gpt_oss",
        "qwen2_moe",
        "mixtral",
    ] {
        let m = run(arch, |_, _| {});
        assert_eq!(m.set_mismatch, 0, "{arch}");
        assert!(m.weight_err <= 1e-5 && m.output_err <= 1e-4, "{arch}");
    }
}

#[test]
fn deepseek_v3_correction_bias_matters() {
    let m = run("deepseek_v3", |_, w| {
        w.correction = w.correction.as_ref().map(|c| vec![0.0; c.len()])
    });
    assert!(
        m.set_mismatch > 0,
        "zeroing e_score_correction_bias must change expert sets"
    );
}

#[test]
fn deepseek_v3_group_limit_matters() {
    let m = run("deepseek_v3", |s, _| s.routing.group = GroupScore::None);
    assert!(
        m.set_mismatch > 0,
        "ignoring group-limited routing must change expert sets"
    );
}

#[test]
fn deepseek_v3_group_score_is_the_top_two_sum_not_the_max() {
    let m = run("deepseek_v3", |s, _| s.routing.group = GroupScore::Max);
    assert!(
        m.set_mismatch > 0,
        "scoring groups by their max must change expert sets"
    );
}

#[test]
fn deepseek_v3_sigmoid_scoring_matters() {
    let m = run("deepseek_v3", |s, _| s.routing.scoring = Scoring::Softmax);
    assert!(m.set_mismatch > 0 || m.weight_err > 1e-3);
}

#[test]
fn deepseek_v2_group_limit_matters() {
    let m = run("deepseek_v2_group", |s, _| {
        s.routing.group = GroupScore::None
    });
    assert!(
        m.set_mismatch > 0,
        "ignoring group_limited_greedy must change expert sets"
    );
}

#[test]
fn routed_scaling_factor_matters() {
    for arch in ["deepseek_v2_group", "deepseek_v3"] {
        let m = run(arch, |s, _| s.routing.scale = 1.0);
        assert!(m.weight_err > 1e-2 && m.output_err > 1e-3, "{arch}");
    }
}

#[test]
fn renormalisation_matters() {
    for arch in ["mixtral", "qwen3_moe", "deepseek_v3"] {
        let m = run(arch, |s, _| s.routing.renormalize = false);
        assert!(
            m.weight_err > 1e-2,
            "{arch}: dropping renormalisation must change weights"
        );
    }
    let m = run("olmoe", |s, _| s.routing.renormalize = true);
    assert!(
        m.weight_err > 1e-2,
        "olmoe: renormalising when norm_topk_prob is false must change weights"
    );
}

#[test]
fn gpt_oss_router_bias_matters() {
    let m = run("gpt_oss", |_, w| {
        w.router_bias = w.router_bias.as_ref().map(|b| vec![0.0; b.len()])
    });
    assert!(
        m.set_mismatch > 0,
        "zeroing the router bias must change expert sets"
    );
}

#[test]
fn gpt_oss_swiglu_limit_matters() {
    let m = run("gpt_oss", |s, _| {
        s.glu = Glu::ClampedSwiglu {
            limit: 1e9,
            alpha: 1.702,
        }
    });
    assert!(
        m.output_err > 1e-3,
        "ignoring swiglu_limit must change the output"
    );
    let m = run("gpt_oss", |s, _| s.glu = Glu::Silu);
    assert!(
        m.output_err > 1e-3,
        "plain SwiGLU instead of gpt-oss's must change the output"
    );
}

#[test]
fn qwen2_shared_expert_gate_matters() {
    let m = run("qwen2_moe", |s, w| {
        s.routing.shared_gate = false;
        if let Some(sh) = w.shared.as_mut() {
            sh.gate = None;
        }
    });
    assert!(
        m.output_err > 1e-3,
        "an ungated shared expert must change the output"
    );
}

fn config_error(arch: &str, edit: impl FnOnce(&mut serde_json::Value)) -> String {
    let d = edited_model(&dir("hf-tiny", arch).join("model"), "cfg", |_| {}, edit);
    match ModelConfig::load(&d) {
        Ok(_) => panic!("{arch}: expected a config error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn bad_routing_configs_are_clear_errors() {
    let e = config_error("deepseek_v3", |c| c["n_group"] = 3.into());
    assert!(
        e.contains("n_group") && e.contains("do not divide 16"),
        "{e}"
    );
    let e = config_error("deepseek_v3", |c| c["topk_group"] = 5.into());
    assert!(e.contains("topk_group") && e.contains("n_group = 4"), "{e}");
    let e = config_error("deepseek_v2_group", |c| {
        c["n_group"] = 8.into();
        c["topk_group"] = 1.into();
    });
    assert!(
        e.contains("topk_group") && e.contains("fewer than k"),
        "{e}"
    );
    let e = config_error("deepseek_v3", |c| {
        c.as_object_mut().unwrap().remove("n_group");
    });
    assert!(e.contains("`n_group`") && e.contains("missing"), "{e}");
    let e = config_error("olmoe", |c| c["num_experts_per_tok"] = 17.into());
    assert!(e.contains("num_experts_per_tok"), "{e}");
    let e = config_error("olmoe", |c| c["num_experts_per_tok"] = 0.into());
    assert!(e.contains("num_experts_per_tok"), "{e}");
    let e = config_error("deepseek_v2", |c| c["topk_method"] = "noaux_tc".into());
    assert!(e.contains("topk_method") && e.contains("noaux_tc"), "{e}");
    let e = config_error("deepseek_v3", |c| c["scoring_func"] = "softmax".into());
    assert!(e.contains("scoring_func"), "{e}");
}

#[test]
fn unsupported_math_fields_are_named() {
    let e = config_error("mixtral", |c| c["hidden_act"] = "gelu".into());
    assert!(e.contains("hidden_act") && e.contains("gelu"), "{e}");
    let e = config_error("qwen3_moe", |c| c["use_sliding_window"] = true.into());
    assert!(e.contains("use_sliding_window"), "{e}");
    let e = config_error("mixtral", |c| {
        c["rope_parameters"]["rope_type"] = "llama3".into()
    });
    assert!(e.contains("rope_type") && e.contains("llama3"), "{e}");
    let e = config_error("olmoe", |c| c["clip_qkv"] = 8.0.into());
    assert!(e.contains("clip_qkv"), "{e}");
    let e = config_error("mixtral", |c| c["mlp_bias"] = true.into());
    assert!(e.contains("mlp_bias"), "{e}");
    let e = config_error("mixtral", |c| c["num_key_value_heads"] = 3.into());
    assert!(e.contains("num_key_value_heads"), "{e}");
}
