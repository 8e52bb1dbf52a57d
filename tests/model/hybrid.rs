//! Experts computed on the CPU (issue: hybrid CPU/GPU MoE) against transformers: every fixture
//! of both sets gives the reference's intermediates, logits (within 1e-3) and greedy tokens
//! with every routed expert on the CPU (`--cpu-experts always`), as an expert cache of k slots
//! whose misses the cost model places (`auto`), and with the first MoE layer's experts on the
//! CPU (`--n-cpu-moe 1`). A fixed placement gives the same bits on every run, and the
//! statistics say where the experts ran.

use moe_gpu::model::ModelConfig;
use moe_gpu::moe::{CpuOptions, CpuPolicy, ExpertBudget, ResidencyOptions};
use moe_gpu::{Logits, Model, ModelOptions};

use crate::common::{self, fixtures};
use crate::generate_fixtures::{check, options};

fn with_cpu(cpu: CpuOptions, budget: ExpertBudget) -> ModelOptions {
    ModelOptions {
        residency: ResidencyOptions {
            budget,
            cpu,
            ..Default::default()
        },
        ..options()
    }
}

fn always() -> ModelOptions {
    let cpu = CpuOptions {
        policy: CpuPolicy::Always,
        ..Default::default()
    };
    with_cpu(cpu, ExpertBudget::Auto)
}

fn first_layer_on_cpu() -> ModelOptions {
    let cpu = CpuOptions {
        n_cpu_moe: 1,
        ..Default::default()
    };
    with_cpu(cpu, ExpertBudget::Auto)
}

#[test]
fn every_fixture_generates_like_hf_with_every_expert_on_the_cpu() {
    for arch in fixtures::ARCHS {
        for set in fixtures::SETS {
            check(set, arch, &always());
        }
    }
}

#[test]
fn every_fixture_generates_like_hf_as_a_k_slot_cache_with_auto_placement() {
    for arch in fixtures::ARCHS {
        for set in fixtures::SETS {
            let dir = fixtures::dir(set, arch).join("model");
            let k = ModelConfig::load(&dir).unwrap().moe.routing.top_k;
            let cpu = CpuOptions {
                policy: CpuPolicy::Auto,
                ..Default::default()
            };
            check(set, arch, &with_cpu(cpu, ExpertBudget::SlotsPerLayer(k)));
        }
    }
}

#[test]
fn every_fixture_generates_like_hf_with_the_first_moe_layer_on_the_cpu() {
    for arch in fixtures::ARCHS {
        for set in fixtures::SETS {
            check(set, arch, &first_layer_on_cpu());
        }
    }
}

/// Prompt logits of 7 tokens, then three decode steps', as bits.
fn run_bits(model: &mut Model) -> Vec<u32> {
    let ctx = common::ctx();
    model.reset();
    let mut all = model
        .forward(ctx, &[1, 5, 9, 2, 7, 3, 11], Logits::All)
        .unwrap();
    for token in [4, 8, 6] {
        all.extend(model.forward(ctx, &[token], Logits::Last).unwrap());
    }
    all.iter().map(|v| v.to_bits()).collect()
}

#[test]
fn a_fixed_placement_gives_the_same_bits_on_ten_runs() {
    let ctx = common::ctx();
    for options in [always(), first_layer_on_cpu()] {
        for arch in ["qwen2_moe", "gpt_oss"] {
            let dir = fixtures::dir("hf-tiny-alt", arch).join("model");
            let mut model = Model::load_with(ctx, &dir, &options).unwrap();
            let first = run_bits(&mut model);
            for run in 1..10 {
                assert!(run_bits(&mut model) == first, "{arch}: run {run} differs");
            }
            // A fresh model (new thread pool, new host cache) too.
            let mut again = Model::load_with(ctx, &dir, &options).unwrap();
            assert!(run_bits(&mut again) == first, "{arch}: a new model differs");
        }
    }
}

#[test]
fn statistics_say_where_the_experts_ran() {
    let ctx = common::ctx();
    let dir = fixtures::dir("hf-tiny", "olmoe").join("model");
    let mut model = Model::load_with(ctx, &dir, &always()).unwrap();
    run_bits(&mut model);
    let s = model.residency_stats();
    assert_eq!(s.bytes_uploaded, 0, "always uploads no expert");
    assert_eq!((s.hits, s.misses), (0, 0));
    assert!(s.cpu_experts > 0 && s.cpu_rows >= s.cpu_experts);
    let layers = s.per_layer.len() as u64;
    assert!(s.cpu_bytes_not_uploaded == s.cpu_experts * s.per_layer[0].expert_bytes);
    assert!(
        s.per_layer
            .iter()
            .all(|l| l.mode == "cpu" && l.cpu_ms > 0.0)
    );
    assert!(layers > 1);

    let mut model = Model::load_with(ctx, &dir, &first_layer_on_cpu()).unwrap();
    run_bits(&mut model);
    let s = model.residency_stats();
    let modes: Vec<&str> = s.per_layer.iter().map(|l| l.mode).collect();
    assert_eq!(modes[0], "cpu");
    assert!(modes[1..].iter().all(|&m| m == "resident"), "{modes:?}");
    assert!(s.per_layer[0].cpu_experts > 0);
    assert!(s.per_layer[1..].iter().all(|l| l.cpu_experts == 0));
}
