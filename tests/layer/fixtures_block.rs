//! Every MoE block of every fixture architecture against Hugging Face transformers: the
//! standalone `block.layers.L.*` calls and the `layers.L.moe.*` calls inside the full model.
//! Output within 1e-4 scaled by max(1, |ref|), expert sets equal, weights within 1e-5.

use moe_gpu::model::ModelConfig;

use crate::common;
use crate::common::fixtures::{Fixture, SETS, run_block};

fn check_block(
    fx: &Fixture,
    cfg: &ModelConfig,
    layer: usize,
    input: &str,
    base: &str,
    output: &str,
) {
    let x = fx.f32(input);
    let run = run_block(&fx.model_dir, layer, &x, Default::default(), |_, _| {});
    let out = &run.out;
    let what = format!("{} layer {layer} ({base})", cfg.arch.name());
    let k = cfg.moe.routing.top_k;
    common::assert_close(
        &format!("{what} router logits"),
        out.router_logits.as_ref().unwrap(),
        &fx.f32(&format!("{base}router_logits")),
        1e-4,
    );
    common::assert_same_routing(
        &what,
        k,
        out.topk_ids.as_ref().unwrap(),
        out.topk_weights.as_ref().unwrap(),
        &fx.ids(&format!("{base}topk_ids")),
        &fx.f32(&format!("{base}topk_weights")),
        1e-5,
    );
    common::assert_close(
        &format!("{what} output"),
        &out.output,
        &fx.f32(output),
        1e-4,
    );
}

fn check_arch(arch: &str) {
    for set in SETS {
        let fx = Fixture::open(set, arch);
        let cfg = ModelConfig::load(&fx.model_dir).unwrap();
        let block_layers = fx.layers_with("block.layers.", ".input");
        assert_eq!(
            block_layers,
            cfg.moe_layers(),
            "{set}/{arch}: block fixtures cover the MoE layers"
        );
        for l in block_layers {
            let b = format!("block.layers.{l}.");
            check_block(
                &fx,
                &cfg,
                l,
                &format!("{b}input"),
                &b,
                &format!("{b}output"),
            );
        }
        let model_layers = fx.layers_with("layers.", ".moe.router_logits");
        assert!(
            !model_layers.is_empty(),
            "{set}/{arch}: no layers.L.moe fixtures"
        );
        for l in model_layers {
            check_block(
                &fx,
                &cfg,
                l,
                &format!("layers.{l}.mlp.input"),
                &format!("layers.{l}.moe."),
                &format!("layers.{l}.mlp.output"),
            );
        }
    }
}

#[test]
fn mixtral_blocks_match_hf() {
    check_arch("mixtral");
}

#[test]
fn qwen2_moe_blocks_match_hf() {
    check_arch("qwen2_moe");
}

#[test]
fn qwen3_moe_blocks_match_hf() {
    check_arch("qwen3_moe");
}

#[test]
fn olmoe_blocks_match_hf() {
    check_arch("olmoe");
}

#[test]
fn deepseek_v2_greedy_blocks_match_hf() {
    check_arch("deepseek_v2");
}

#[test]
fn deepseek_v2_group_limited_blocks_match_hf() {
    check_arch("deepseek_v2_group");
}

#[test]
fn deepseek_v2_first_dense_blocks_match_hf() {
    check_arch("deepseek_v2_dense1");
}

#[test]
fn deepseek_v3_blocks_match_hf() {
    check_arch("deepseek_v3");
}

#[test]
fn gpt_oss_blocks_match_hf() {
    check_arch("gpt_oss");
}
