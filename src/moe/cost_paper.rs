//! The cost model on paper: expected decode time per token of a model whose experts do not all
//! fit in VRAM, on a machine given by its rates, for each way of placing experts: upload every
//! miss (`--cpu-experts never`), the cost model's choice per step (`auto`), llama.cpp's static
//! `--n-cpu-moe` (the first layers' experts on the CPU, the rest resident), and every expert
//! on the CPU (`-ot exps=CPU`). Routing is taken as uniform and independent, so a layer's step
//! finds each of its k experts resident with probability `resident` (the budget's share of
//! the experts; real routing is more local, and prefetch is ignored); the expected time of a
//! layer is the binomial mixture over its number of misses. BENCHMARKS.md prints this table
//! (`cargo test --lib cost_paper -- --nocapture`).

use crate::moe::cost_model::{Miss, Rates};

/// A model as the paper model sees it.
#[derive(Debug, Clone, Copy)]
pub struct PaperModel {
    /// Name for the table.
    pub name: &'static str,
    /// MoE layers.
    pub layers: usize,
    /// Routed experts per layer.
    pub experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Bytes of one routed expert in its format.
    pub expert_bytes: u64,
    /// Bytes of everything else read per token (attention, shared experts, embeddings' head).
    pub dense_bytes: u64,
}

/// Expected decode milliseconds per token under each placement.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PaperDecode {
    /// Share of the experts the VRAM budget holds.
    pub resident: f64,
    /// Every miss uploaded.
    pub never: f64,
    /// The cost model's choice.
    pub auto: f64,
    /// The first layers' experts on the CPU, the other layers' resident.
    pub n_cpu_moe: f64,
    /// Every expert on the CPU.
    pub all_cpu: f64,
}

/// The expected decode time of `m` on a machine of `rates` whose VRAM holds `expert_budget`
/// bytes of experts.
pub fn paper_decode(m: &PaperModel, rates: &Rates, expert_budget: u64) -> PaperDecode {
    let all = (m.layers * m.experts) as u64 * m.expert_bytes;
    let resident = (expert_budget.min(all) as f64 / all as f64).clamp(0.0, 1.0);
    let (k, b, l) = (m.top_k, m.expert_bytes, m.layers as f64);
    let dense = rates.gpu_secs(m.dense_bytes);
    // One layer's step with `misses` of its k experts missing.
    let step = |misses: usize, auto: bool| {
        let hits = (k - misses) as u64 * b;
        let list: Vec<Miss> = (0..misses)
            .map(|expert| Miss {
                expert,
                tokens: 1,
                bytes: b,
            })
            .collect();
        let on_cpu = match auto {
            true => rates.choose(&list, hits),
            false => vec![false; misses],
        };
        let cpu_n = on_cpu.iter().filter(|&&c| c).count() as u64;
        let gpu = rates.gpu_secs(hits)
            + (misses as u64 - cpu_n) as f64 * (rates.upload_secs(b) + rates.gpu_secs(b));
        let cpu = match cpu_n {
            0 => 0.0,
            n => rates.cpu_overhead + n as f64 * rates.cpu_secs(b, 1),
        };
        gpu.max(cpu)
    };
    let expected = |auto: bool| {
        (0..=k)
            .map(|misses| binomial(k, misses, 1.0 - resident) * step(misses, auto))
            .sum::<f64>()
    };
    let cpu_layers = (l * (1.0 - resident)).ceil();
    let cpu_layer = rates.cpu_overhead + k as f64 * rates.cpu_secs(b, 1);
    let gpu_layer = rates.gpu_secs(k as u64 * b);
    let ms = |layers_secs: f64| (layers_secs + dense) * 1e3;
    PaperDecode {
        resident,
        never: ms(l * expected(false)),
        auto: ms(l * expected(true)),
        n_cpu_moe: ms(cpu_layers * cpu_layer + (l - cpu_layers) * gpu_layer),
        all_cpu: ms(l * cpu_layer),
    }
}

/// P(X = x) for X ~ Binomial(n, p).
fn binomial(n: usize, x: usize, p: f64) -> f64 {
    let choose: f64 = (0..x).map(|i| (n - i) as f64 / (i + 1) as f64).product();
    choose * p.powi(x as i32) * (1.0 - p).powi((n - x) as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GB: u64 = 1_000_000_000;

    /// Qwen3-30B-A3B, experts int4 (bf16 scale per 32: 0.5625 bytes per weight), the rest f16.
    const QWEN3: PaperModel = PaperModel {
        name: "Qwen3-30B-A3B int4",
        layers: 48,
        experts: 128,
        top_k: 8,
        expert_bytes: 3 * 2048 * 768 * 9 / 16,
        dense_bytes: 3 * GB,
    };

    /// gpt-oss-20b, experts MXFP4 (0.53125 bytes per weight, f32 biases), the rest bf16.
    const GPT_OSS: PaperModel = PaperModel {
        name: "gpt-oss-20b MXFP4",
        layers: 24,
        experts: 32,
        top_k: 4,
        expert_bytes: 3 * 2880 * 2880 * 17 / 32 + 3 * 2880 * 4,
        dense_bytes: 3_600_000_000,
    };

    /// A DDR5 desktop (dual-channel DDR5-5600, 90 GB/s peak, 50 GB/s through a CPU expert)
    /// with a PCIe 4 x16 GPU (25 GB/s) of `vram_bps`.
    fn desktop(vram_bps: f64) -> Rates {
        Rates {
            upload_bps: 25e9,
            gpu_bps: vram_bps,
            cpu_bps: 50e9,
            per_token: 0.05,
            cpu_overhead: 30e-6,
        }
    }

    #[test]
    fn binomial_weights_sum_to_one() {
        let total: f64 = (0..=8).map(|x| binomial(8, x, 0.3)).sum();
        assert!((total - 1.0).abs() < 1e-12);
    }

    #[test]
    fn paper_table_for_8_12_and_24_gb_desktops() {
        // VRAM, its bandwidth (RTX 4060, 4070, 4090) and what is left for experts after the
        // other weights and 0.5 GB of KV cache and activations.
        let cards = [(8, 272e9), (12, 504e9), (24, 1008e9)];
        println!(
            "| model | GPU | experts resident | never | auto | n-cpu-moe | all on CPU | auto / best other |"
        );
        println!("|---|---|---|---|---|---|---|---|");
        for m in [QWEN3, GPT_OSS] {
            for (gb, bw) in cards {
                let budget = (gb * GB).saturating_sub(m.dense_bytes + GB / 2);
                let d = paper_decode(&m, &desktop(bw), budget);
                let tps = |ms: f64| 1e3 / ms;
                let best_other = tps(d.never).max(tps(d.n_cpu_moe)).max(tps(d.all_cpu));
                println!(
                    "| {} | {gb} GB, {:.0} GB/s | {:.0}% | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
                    m.name,
                    bw / 1e9,
                    100.0 * d.resident,
                    tps(d.never),
                    tps(d.auto),
                    tps(d.n_cpu_moe),
                    tps(d.all_cpu),
                    tps(d.auto) / best_other
                );
                // The cost model never does worse than uploading every miss, and with every
                // expert resident all placements but "all on CPU" agree.
                assert!(d.auto <= d.never + 1e-9);
                if d.resident >= 1.0 {
                    assert!(
                        (d.auto - d.never).abs() < 1e-9 && (d.n_cpu_moe - d.never).abs() < 1e-9
                    );
                }
            }
        }
    }
}
