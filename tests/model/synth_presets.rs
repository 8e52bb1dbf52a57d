//! `moe synth` presets at their real dimensions, without writing them: config.json parses
//! with the published values, the tensor list adds up to the published parameter counts,
//! routers are peaked, weights have the init std, and shards follow the hub's 5 GB split.

use moe_gpu::model::config::QkNorm;
use moe_gpu::model::synth::SynthPlan;
use moe_gpu::model::synth::presets::{PRESETS, SynthDtype};
use moe_gpu::model::synth::values::normal_quantile;
use moe_gpu::model::synth::writer::{SHARD_BYTES, shard_names, shards};
use moe_gpu::model::{Arch, MlpKind, ModelConfig};
use moe_gpu::spec::routing::Scoring;
use moe_gpu::synthetic::Rng;

fn plan(name: &str) -> SynthPlan {
    SynthPlan::preset(name, None, None, 0).unwrap()
}

fn config(p: &SynthPlan) -> ModelConfig {
    ModelConfig::from_json(&p.config).unwrap()
}

#[test]
fn presets_have_the_published_shapes_and_parameter_counts() {
    // name, arch, hidden, layers, experts, top-k, expert width, vocab, billions of parameters
    // (published totals; gpt-oss counts its MXFP4 experts at two values per byte).
    let table = [
        (
            "olmoe-1b-7b",
            Arch::Olmoe,
            2048,
            16,
            64,
            8,
            1024,
            50304,
            6.92,
        ),
        (
            "qwen3-30b-a3b",
            Arch::Qwen3Moe,
            2048,
            48,
            128,
            8,
            768,
            151936,
            30.53,
        ),
        (
            "mixtral-8x7b",
            Arch::Mixtral,
            4096,
            32,
            8,
            2,
            14336,
            32000,
            46.70,
        ),
        (
            "deepseek-v2-lite",
            Arch::DeepseekV2,
            2048,
            27,
            64,
            6,
            1408,
            102400,
            15.71,
        ),
        (
            "moonlight-16b-a3b",
            Arch::DeepseekV3,
            2048,
            27,
            64,
            6,
            1408,
            163840,
            15.96,
        ),
        (
            "gpt-oss-20b",
            Arch::GptOss,
            2880,
            24,
            32,
            4,
            2880,
            201088,
            20.91,
        ),
        (
            "qwen1.5-moe-a2.7b",
            Arch::Qwen2Moe,
            2048,
            24,
            60,
            4,
            1408,
            151936,
            14.32,
        ),
    ];
    assert_eq!(table.len(), PRESETS.len());
    for (name, arch, hidden, layers, experts, k, inter, vocab, billions) in table {
        let p = plan(name);
        let c = config(&p);
        let got = (
            c.arch,
            c.hidden,
            c.layers,
            c.moe.routing.experts,
            c.moe.routing.top_k,
        );
        assert_eq!(got, (arch, hidden, layers, experts, k), "{name}");
        assert_eq!((c.moe.inter, c.vocab), (inter, vocab), "{name}");
        let params = p.params() as f64 / 1e9;
        assert!(
            (params / billions - 1.0).abs() < 0.01,
            "{name}: {params:.3} B parameters, published {billions} B"
        );
        assert_eq!(p.config["torch_dtype"], "bfloat16", "{name}");
    }
}

#[test]
fn presets_carry_the_released_routing_attention_and_rope() {
    let c = config(&plan("deepseek-v2-lite"));
    let mla = c.attention.mla.unwrap();
    assert_eq!((mla.q_lora_rank, mla.kv_lora_rank), (None, 512));
    assert_eq!(
        (mla.qk_nope_head_dim, mla.qk_rope_head_dim, mla.v_head_dim),
        (128, 64, 128)
    );
    assert_eq!((c.rope.rope_type.as_str(), c.rope.factor), ("yarn", 40.0));
    assert_eq!(c.rope.mscale_all_dim, Some(0.707));
    assert_eq!(
        (c.mlp_kinds[0], c.mlp_kinds[1]),
        (MlpKind::Dense, MlpKind::Moe)
    );
    assert_eq!((c.dense_inter, c.moe.shared_inter), (10944, Some(2816)));
    assert_eq!(c.moe.routing.scoring, Scoring::Softmax);

    let c = config(&plan("moonlight-16b-a3b"));
    let r = &c.moe.routing;
    assert_eq!(
        (r.scoring, r.correction_bias, r.scale),
        (Scoring::Sigmoid, true, 2.446)
    );
    assert_eq!((r.n_group, r.topk_group, r.renormalize), (1, 1, true));
    assert_eq!(
        (c.rope.theta, c.rope.rope_type.as_str()),
        (50000.0, "default")
    );
    assert_eq!(c.mlp_kinds[0], MlpKind::Dense);

    let p = plan("gpt-oss-20b");
    let c = config(&p);
    let a = &c.attention;
    assert_eq!(
        (a.heads, a.kv_heads, a.head_dim, a.sinks),
        (64, 8, 64, true)
    );
    assert_eq!(a.sliding_window, Some(128));
    assert_eq!(&a.sliding_layers[..4], &[true, false, true, false]);
    assert_eq!((c.rope.factor, c.rope.truncate), (32.0, false));
    assert_eq!(c.moe.routing.scoring, Scoring::TopKThenSoftmax);
    assert_eq!(p.config["quantization_config"]["quant_method"], "mxfp4");
    let blocks = p
        .tensor("model.layers.0.mlp.experts.gate_up_proj_blocks")
        .unwrap();
    assert_eq!(blocks.shape, [32, 5760, 90, 16]);
    let scales = p
        .tensor("model.layers.0.mlp.experts.down_proj_scales")
        .unwrap();
    assert_eq!(scales.shape, [32, 2880, 90]);
    let bf16 = SynthPlan::preset("gpt-oss-20b", Some(1), Some(SynthDtype::Bf16), 0).unwrap();
    assert!(bf16.config.get("quantization_config").is_none());
    let fused = bf16
        .tensor("model.layers.0.mlp.experts.gate_up_proj")
        .unwrap();
    assert_eq!(fused.shape, [32, 2880, 5760]);

    let p = plan("qwen1.5-moe-a2.7b");
    let c = config(&p);
    assert_eq!(
        (c.moe.shared_inter, c.moe.routing.shared_gate),
        (Some(5632), true)
    );
    assert!(p.tensor("model.layers.0.self_attn.q_proj.bias").is_ok());
    assert!(
        p.tensor("model.layers.0.mlp.shared_expert_gate.weight")
            .is_ok()
    );

    let c = config(&plan("qwen3-30b-a3b"));
    let a = &c.attention;
    assert_eq!(
        (a.heads, a.kv_heads, a.head_dim, a.qk_norm),
        (32, 4, 128, QkNorm::PerHead)
    );
    assert!(c.moe.routing.renormalize);

    let p = plan("mixtral-8x7b");
    let c = config(&p);
    assert_eq!(
        (c.attention.kv_heads, c.attention.sliding_window),
        (8, None)
    );
    assert!(c.moe.routing.renormalize);
    let w2 = p
        .tensor("model.layers.31.block_sparse_moe.experts.7.w2.weight")
        .unwrap();
    assert_eq!(w2.shape, [4096, 14336]);

    let c = config(&plan("olmoe-1b-7b"));
    assert_eq!(c.attention.qk_norm, QkNorm::Full);
    assert!(!c.moe.routing.renormalize);
}

#[test]
fn layer_count_dtype_and_name_are_checked() {
    let p = SynthPlan::preset("gpt-oss-20b", Some(3), None, 0).unwrap();
    assert_eq!(p.config["num_hidden_layers"], 3);
    assert_eq!(p.config["layer_types"].as_array().unwrap().len(), 3);
    assert_eq!(config(&p).layers, 3);
    let err = |r: moe_gpu::Result<SynthPlan>| r.unwrap_err().to_string();
    let e = err(SynthPlan::preset("mixtral-8x22b", None, None, 0));
    assert!(
        e.contains("unknown model") && e.contains("mixtral-8x7b"),
        "{e}"
    );
    let e = err(SynthPlan::preset("olmoe-1b-7b", Some(0), None, 0));
    assert!(e.contains("at least 1"), "{e}");
    let e = err(SynthPlan::preset(
        "mixtral-8x7b",
        None,
        Some(SynthDtype::Mxfp4),
        0,
    ));
    assert!(e.contains("mxfp4") && e.contains("gpt-oss"), "{e}");
}

#[test]
fn routers_are_peaked_like_trained_ones() {
    let mut rng = Rng::new(3);
    for name in PRESETS {
        let p = SynthPlan::preset(name, Some(2), None, 0).unwrap();
        let c = config(&p);
        let layer = c.moe_layers()[0];
        let (e, h) = (c.moe.routing.experts, c.hidden);
        let router = if c.arch == Arch::GptOss {
            "router"
        } else {
            "gate"
        };
        let w = p
            .values(&format!("{}{router}.weight", c.arch.mlp_prefix(layer)))
            .unwrap();
        // Inputs are post-norm hidden states: unit RMS.
        let tokens = 32;
        let mut top1 = 0.0;
        for _ in 0..tokens {
            let x = rng.normals(h, 1.0);
            let logits: Vec<f32> = w
                .chunks(h)
                .map(|row| row.iter().zip(&x).map(|(a, b)| a * b).sum())
                .collect();
            let max = logits.iter().copied().fold(f32::MIN, f32::max);
            let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
            top1 += 1.0 / sum / tokens as f32;
        }
        let uniform = 1.0 / e as f32;
        // Peaked, yet not one expert per token.
        assert!(
            top1 > 3.0 * uniform && top1 < 0.9,
            "{name}: mean top-1 probability {top1:.3}, uniform {uniform:.3}"
        );
    }
}

#[test]
fn weights_have_the_init_std_and_are_reproducible() {
    assert!((normal_quantile(0.975) - 1.959964).abs() < 1e-6);
    assert!((normal_quantile(0.001) + 3.090232).abs() < 1e-5);
    let p = SynthPlan::preset("olmoe-1b-7b", Some(1), None, 5).unwrap();
    let name = "model.layers.0.self_attn.q_proj.weight";
    let w = p.values(name).unwrap();
    let n = w.len() as f64;
    let mean = w.iter().map(|v| *v as f64).sum::<f64>() / n;
    let std = (w.iter().map(|v| (*v as f64 - mean).powi(2)).sum::<f64>() / n).sqrt();
    assert!(
        mean.abs() < 1e-4 && (std / 0.02 - 1.0).abs() < 0.01,
        "{mean} {std}"
    );
    assert_eq!(w, p.values(name).unwrap());
    let other = SynthPlan::preset("olmoe-1b-7b", Some(1), None, 6).unwrap();
    assert_ne!(w[..64], other.values(name).unwrap()[..64]);
    let norm = p.values("model.layers.0.input_layernorm.weight").unwrap();
    assert!(norm.iter().all(|v| *v == 1.0));
}

#[test]
fn shards_follow_the_hub_split() {
    let p = plan("mixtral-8x7b");
    let ranges = shards(&p.tensors, SHARD_BYTES);
    let min = p.bytes().div_ceil(SHARD_BYTES) as usize;
    assert!(
        (min..=min + 1).contains(&ranges.len()),
        "{} shards",
        ranges.len()
    );
    for r in &ranges {
        let bytes: u64 = p.tensors[r.clone()].iter().map(|t| t.bytes()).sum();
        assert!(bytes <= SHARD_BYTES, "{bytes}");
    }
    let names = shard_names(ranges.len());
    assert_eq!(
        names[0],
        format!("model-00001-of-{:05}.safetensors", ranges.len())
    );
    assert_eq!(shard_names(1), ["model.safetensors"]);
}
