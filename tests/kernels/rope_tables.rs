//! Rotary tables and softmax scales against values printed by transformers 5.23
//! (`ROPE_INIT_FUNCTIONS["yarn"]`, DeepSeek's `yarn_apply_mscale`), including YaRN settings
//! beyond the fixtures: no mscale at all, and a wide rope dim with mscale = mscale_all_dim =
//! 0.707. Within 1e-6 relative.

use moe_gpu::model::ModelConfig;
use moe_gpu::model::softmax_scale;
use serde_json::{Value, json};

use crate::common::edit::read_config;
use crate::common::fixtures::dir;

fn config(set: &str, arch: &str, edit: impl FnOnce(&mut Value)) -> ModelConfig {
    let mut v = read_config(&dir(set, arch).join("model"));
    edit(&mut v);
    ModelConfig::from_json(&v).unwrap()
}

fn assert_rel(what: &str, got: f64, want: f64) {
    assert!(
        (got - want).abs() <= 1e-6 * want.abs().max(1e-30),
        "{what}: {got} vs {want}"
    );
}

fn check(what: &str, cfg: &ModelConfig, inv_freq: &[f64], attention_factor: f64) {
    let got = cfg.rope.inv_freq();
    assert_eq!(got.len(), inv_freq.len(), "{what}: rotary dim");
    for (i, (g, w)) in got.iter().zip(inv_freq).enumerate() {
        assert_rel(&format!("{what} inv_freq[{i}]"), *g as f64, *w);
    }
    assert_rel(
        &format!("{what} attention factor"),
        cfg.rope.attention_factor(),
        attention_factor,
    );
}

#[test]
fn gpt_oss_yarn_without_truncation_matches_transformers() {
    let cfg = config("hf-tiny-alt", "gpt_oss", |_| {});
    check(
        "gpt_oss",
        &cfg,
        &[
            1.0,
            0.22541800141334534,
            0.05081327259540558,
            0.006794959306716919,
            0.0004564839182421565,
            1.818833698052913e-05,
            4.099978468730114e-06,
            9.242089618055616e-07,
        ],
        1.3465735902799727,
    );
    assert_rel("gpt_oss scale", softmax_scale(&cfg).unwrap() as f64, 0.25);
}

#[test]
fn deepseek_v3_yarn_scales_softmax_by_mscale_squared() {
    let cfg = config("hf-tiny-alt", "deepseek_v3", |_| {});
    check(
        "deepseek_v3",
        &cfg,
        &[
            1.0,
            0.2154434472322464,
            0.03510201349854469,
            0.005124999675899744,
            0.0005790042341686785,
            1.1603973689489067e-05,
        ],
        1.0,
    );
    assert_rel(
        "deepseek_v3 scale",
        softmax_scale(&cfg).unwrap() as f64,
        0.31230903451543773,
    );
}

#[test]
fn deepseek_v3_yarn_with_wide_rope_dim_matches_transformers() {
    let cfg = config("hf-tiny-alt", "deepseek_v3", |v| {
        v["qk_rope_head_dim"] = json!(64);
        v["rope_parameters"]["mscale"] = json!(0.707);
        v["rope_parameters"]["mscale_all_dim"] = json!(0.707);
    });
    let want = [
        1.0,
        0.7498942017555237,
        0.5623413324356079,
        0.4216965138912201,
        0.3162277638912201,
        0.23713736236095428,
        0.17782793939113617,
        0.1333521455526352,
        0.10000000149011612,
        0.07498941570520401,
        0.05623412877321243,
        0.039006926119327545,
        0.026879360899329185,
        0.01837814413011074,
        0.012447956018149853,
        0.0083345090970397,
        0.005500000435858965,
        0.0035619973205029964,
        0.002249365206807852,
        0.0013705134624615312,
        0.0007905694073997438,
        0.0004149904125370085,
        0.00017782794020604342,
        3.333803397254087e-05,
        2.499999936844688e-05,
        1.8747354260995053e-05,
        1.4058532542549074e-05,
        1.0542412383074407e-05,
        7.905694474175107e-06,
        5.928434347879374e-06,
        4.445698323252145e-06,
        3.3338035336782923e-06,
    ];
    check("deepseek_v3 rope 64", &cfg, &want, 1.0);
    assert_rel(
        "deepseek_v3 rope 64 scale",
        softmax_scale(&cfg).unwrap() as f64,
        0.16945471857069608,
    );
}

#[test]
fn yarn_without_mscale_uses_the_factor_alone() {
    let cfg = config("hf-tiny", "qwen3_moe", |v| {
        v["max_position_embeddings"] = json!(131072);
        v["rope_parameters"] = json!({
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 32768,
            "rope_theta": 1000000.0
        });
    });
    check(
        "qwen3 yarn",
        &cfg,
        &[
            1.0,
            0.4216965138912201,
            0.17782793939113617,
            0.07498941570520401,
            0.03162277862429619,
            0.01333521492779255,
            0.00477990135550499,
            0.001659961650148034,
            0.0005499999970197678,
            0.00016867858357727528,
            4.4456985051510856e-05,
            1.8747356079984456e-05,
            7.905693564680405e-06,
            3.3338035336782923e-06,
            1.405853367941745e-06,
            5.928434347879374e-07,
        ],
        1.138629436111989,
    );
}

#[test]
fn deepseek_v2_always_interleaves_and_v3_follows_rope_interleave() {
    let v2 = config("hf-tiny", "deepseek_v2", |v| {
        v["rope_interleave"] = json!(false)
    });
    assert!(v2.rope.interleave);
    assert_eq!(v2.rope.dim, 8);
    let v3 = config("hf-tiny", "deepseek_v3", |v| {
        v["rope_interleave"] = json!(false)
    });
    assert!(!v3.rope.interleave);
    let mixtral = config("hf-tiny", "mixtral", |_| {});
    assert!(!mixtral.rope.interleave);
}

#[test]
fn unsupported_rope_settings_name_their_field() {
    let err = ModelConfig::from_json(&{
        let mut v = read_config(&dir("hf-tiny", "mixtral").join("model"));
        v["rope_parameters"]["rope_type"] = json!("longrope");
        v
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("rope_type"), "{err}");
    let err = ModelConfig::from_json(&{
        let mut v = read_config(&dir("hf-tiny", "mixtral").join("model"));
        v["partial_rotary_factor"] = json!(0.5);
        v
    })
    .unwrap_err()
    .to_string();
    assert!(err.contains("partial_rotary_factor"), "{err}");
}
