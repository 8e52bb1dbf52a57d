//! The benchmark's JSON report: a tiny configuration runs end to end and every documented
//! field is present, with the unit its name promises and values that agree with each other.

use moe_gpu::bench::{self, BenchConfig, SCHEMA};
use serde_json::Value;

use crate::common;

fn num(v: &Value, path: &str) -> f64 {
    let mut cur = v;
    for part in path.split('.') {
        cur = &cur[part];
    }
    cur.as_f64()
        .unwrap_or_else(|| panic!("`{path}` is not a number: {cur}"))
}

fn assert_shape(v: &Value, what: &str) {
    for field in ["hidden", "inter", "experts", "top_k", "scale"] {
        assert!(
            v[field].as_u64().is_some_and(|n| n > 0),
            "{what}.shape.{field} missing or zero: {v}"
        );
    }
    assert!(v["imitates"].is_string(), "{what}.shape.imitates");
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0)
}

/// The per-round ratios of a figure: one per repeat, each positive and finite.
fn round_ratios(v: &Value, what: &str, repeats: usize) -> Vec<f64> {
    let ratios: Vec<f64> = v["round_ratios"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}.round_ratios is not a list"))
        .iter()
        .map(|r| r.as_f64().expect("a ratio"))
        .collect();
    assert_eq!(ratios.len(), repeats, "{what}: one ratio per round");
    assert!(ratios.iter().all(|r| r.is_finite() && *r > 0.0), "{what}");
    ratios
}

fn median(mut values: Vec<f64>) -> f64 {
    moe_gpu::gpu::median(&mut values)
}

#[test]
fn tiny_bench_reports_every_field_with_its_unit() {
    let ctx = common::ctx();
    let config = BenchConfig::tiny();
    let report = bench::run(ctx, &config, "moe bench (test)", &mut |_| {}).unwrap();
    let v: Value = serde_json::from_str(&serde_json::to_string(&report).unwrap()).unwrap();

    assert_eq!(v["schema"], SCHEMA);
    assert_eq!(v["mode"], "tiny");
    for field in ["name", "backend", "device_type"] {
        assert!(
            v["adapter"][field].as_str().is_some_and(|s| !s.is_empty()),
            "adapter.{field}"
        );
    }
    assert!(matches!(
        v["time_source"].as_str(),
        Some("timestamps" | "wall_clock")
    ));
    assert_eq!(v["weight_format"], "f16");
    let models = v["models"].as_array().expect("models is a list");
    assert_eq!(models.len(), config.models.len());

    for (m, real) in models.iter().zip(&config.models) {
        let name = real.name;
        assert_eq!(m["model"], name);
        assert_eq!(m["real"]["experts"], real.experts);
        assert_eq!(m["real"]["top_k"], real.top_k);
        for tiling in ["prefill_tiling", "decode_tiling"] {
            assert!(m[tiling]["variant"].is_string(), "{name} {tiling}");
        }

        let s = &m["sparse_speedup"];
        assert_shape(&s["shape"], "sparse_speedup");
        assert_eq!(s["shape"]["experts"], real.experts, "{name}: E kept");
        assert_eq!(s["shape"]["top_k"], real.top_k, "{name}: k kept");
        assert_eq!(s["tokens"], config.prefill_tokens);
        let (sparse_ms, dense_ms) = (num(s, "sparse_ms"), num(s, "dense_ms"));
        assert!(sparse_ms > 0.0 && dense_ms > 0.0, "{name}: times in ms");
        let ratios = round_ratios(s, "sparse_speedup", config.repeats);
        assert!(
            close(num(s, "measured"), median(ratios)),
            "{name}: measured is the median of the rounds' dense / sparse"
        );
        assert!(
            close(num(s, "ideal"), real.experts as f64 / real.top_k as f64),
            "{name}: ideal = E / k"
        );
        assert!(close(
            num(s, "fraction_of_ideal"),
            num(s, "measured") / num(s, "ideal")
        ));

        let g = &m["grouped_gemm_efficiency"];
        assert_shape(&g["shape"], "grouped_gemm_efficiency");
        assert_eq!(
            g["rows"].as_u64(),
            Some((config.prefill_tokens * real.top_k) as u64)
        );
        let flops = num(g, "flops");
        for side in ["grouped", "dense"] {
            let ms = num(g, &format!("{side}_ms"));
            let gflops = num(g, &format!("{side}_gflop_per_s"));
            assert!(ms > 0.0, "{name}: {side}_ms");
            assert!(
                close(gflops, flops / (ms * 1e-3) / 1e9),
                "{name}: {side}_gflop_per_s is flops / time in GFLOP/s"
            );
            assert!(g[format!("{side}_tiling")]["variant"].is_string());
        }
        let ratios = round_ratios(g, "grouped_gemm_efficiency", config.repeats);
        assert!(close(num(g, "value"), median(ratios)));
        assert!(num(g, "even_routing_ms") > 0.0, "{name}: even_routing_ms");
        let even = num(g, "even_routing_value");
        assert!(even.is_finite() && even > 0.0, "{name}: even_routing_value");

        let d = &m["decode_bandwidth_efficiency"];
        assert_shape(&d["shape"], "decode_bandwidth_efficiency");
        assert_eq!(d["tokens"], 1);
        let bytes = num(d, "weight_bytes");
        assert!(bytes > 0.0);
        let layer_ms = num(d, "layer_ms");
        assert!(close(
            num(d, "weight_gb_per_s"),
            bytes / (layer_ms * 1e-3) / 1e9
        ));
        let moved = num(d, "copy_bytes_moved");
        assert!(
            moved >= 2.0 * bytes,
            "{name}: the copy reads and writes the weight bytes"
        );
        assert!(close(
            num(d, "copy_gb_per_s"),
            moved / (num(d, "copy_ms") * 1e-3) / 1e9
        ));
        let ratios = round_ratios(d, "decode_bandwidth_efficiency", config.repeats);
        assert!(close(num(d, "value"), median(ratios)));
        assert!(
            num(d, "read_bytes") >= bytes,
            "{name}: the read covers the step"
        );
        assert!(close(
            num(d, "read_gb_per_s"),
            num(d, "read_bytes") / (num(d, "read_ms") * 1e-3) / 1e9
        ));
        let ceiling = num(d, "read_vs_copy");
        assert!(ceiling.is_finite() && ceiling > 0.0, "{name}: read_vs_copy");

        let h = &m["host_us_per_layer"];
        assert_shape(&h["shape"], "host_us_per_layer");
        let us = num(h, "value");
        assert!(us > 0.0 && us < 1e6, "{name}: host µs per layer {us}");

        let sub = &m["submits_per_step"];
        assert_shape(&sub["shape"], "submits_per_step");
        assert_eq!(sub["value"], 1, "{name}: one submit per step when resident");
        assert!(num(m, "uploaded_bytes") > 0.0);
    }
}
