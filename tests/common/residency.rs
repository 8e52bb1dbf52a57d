//! Helpers of the expert-cache tests: running a layer under a residency, and a naive LRU to
//! count the misses a trace must cost.

use moe_gpu::kernels::INVALID;
use moe_gpu::moe::{
    CpuOptions, ExpertWeights, LayerBuild, LayerStats, MoeLayer, MoeLayerSpec, MoeWeights, Policy,
    ResidencyOptions,
};

pub fn options(policy: Policy) -> ResidencyOptions {
    ResidencyOptions {
        policy,
        prefetch: false,
        record_trace: true,
        cpu: CpuOptions::never(),
        ..Default::default()
    }
}

/// Builds a layer with `slots` slots and `chunk` tokens per step, runs `x`, returns the output
/// and the statistics.
pub fn run(
    spec: &MoeLayerSpec,
    weights: &MoeWeights,
    x: &[f32],
    chunk: usize,
    slots: usize,
    policy: Policy,
) -> (Vec<f32>, LayerStats) {
    let ctx = super::ctx();
    let build = LayerBuild {
        max_tokens: chunk,
        io: None,
        buffers: None,
        slots,
        residency: &options(policy),
        layer: 0,
        pool: None,
    };
    let layer = MoeLayer::build(ctx, spec.clone(), weights, build).unwrap();
    let out = layer.forward(ctx, x).unwrap();
    (out, layer.stats())
}

pub fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// The bytes an expert's upload writes: its packed matrices and biases.
pub fn upload_bytes(w: &ExpertWeights, spec: &MoeLayerSpec) -> u64 {
    let (f, h, i) = (spec.format, spec.hidden, spec.inter);
    let words = w.pack_gate_up(f.gate_up, h, i).len() + w.pack_down(f.down, h, i).len();
    let biases = if w.gate_bias.is_some() {
        w.gate_up_bias(i).len() + w.down_bias_or_zero(h).len()
    } else {
        0
    };
    (words + biases) as u64 * 4
}

/// The distinct experts of each `chunk`-token step of [tokens, k] ids.
pub fn step_sets(ids: &[u32], k: usize, chunk: usize, experts: usize) -> Vec<Vec<usize>> {
    ids.chunks(chunk * k)
        .map(|step| {
            let mut used = vec![false; experts];
            step.iter()
                .filter(|&&id| id != INVALID)
                .for_each(|&id| used[id as usize] = true);
            (0..experts).filter(|&e| used[e]).collect()
        })
        .collect()
}

/// A plain LRU over single-round steps, independent of the library's cache: misses.
pub fn naive_lru_misses(sets: &[Vec<usize>], slots: usize) -> u64 {
    let mut resident: Vec<usize> = Vec::new(); // least recently used first
    let mut misses = 0;
    for set in sets {
        for &e in set {
            if let Some(p) = resident.iter().position(|&r| r == e) {
                resident.remove(p);
            } else {
                misses += 1;
                if resident.len() == slots {
                    let victim = resident
                        .iter()
                        .position(|r| !set.contains(r))
                        .expect("a victim outside the step");
                    resident.remove(victim);
                }
            }
            resident.push(e);
        }
    }
    misses
}
