//! What `moe bench` reports. Every figure carries its unit in its name (`_ms`, `_us`,
//! `_bytes`, `_gb_per_s`, `_gflop_per_s`) or is a plain ratio, and every metric names the
//! shape it ran at. Serialised as one JSON object by `moe bench --json`.

use serde::Serialize;

use crate::bench::shapes::{RealModel, ScaledShape};
use crate::gpu::TimeSource;
use crate::kernels::matmul::Tiling;

/// Version of the JSON layout below; bumped when a field changes meaning.
pub const SCHEMA: &str = "moe-gpu-bench/2";

#[derive(Debug, Clone, Serialize)]
/// The JSON report of `moe bench`: the adapter and, per real model imitated, the figures.
pub struct BenchReport {
    /// [`SCHEMA`], the layout version.
    pub schema: &'static str,
    /// `quick`, `full` or `tiny`.
    pub mode: String,
    /// The command line that reproduces this report.
    pub command: String,
    /// The adapter the figures were measured on.
    pub adapter: AdapterReport,
    /// Whether GPU timestamps or host wall-clock times were used.
    pub time_source: TimeSource,
    /// Storage format of the expert weights (`f32` or `f16`).
    pub weight_format: String,
    /// Whether tilings came from the autotuner (else the fixed defaults).
    pub autotune: bool,
    /// Timings per figure; each figure is their median.
    pub repeats: usize,
    /// One entry per benchmarked model shape.
    pub models: Vec<ModelReport>,
}

#[derive(Debug, Clone, Serialize)]
/// The adapter as wgpu reports it.
pub struct AdapterReport {
    /// Adapter name, e.g. `NVIDIA H100` or `llvmpipe`.
    pub name: String,
    /// Backend: `Vulkan`, `Metal`, `Dx12` or `Gl`.
    pub backend: String,
    /// Discrete, integrated, virtual or CPU.
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
}

#[derive(Debug, Clone, Serialize)]
/// The figures measured for one real model's (scaled) layer shape.
pub struct ModelReport {
    /// Name of the imitated model.
    pub model: &'static str,
    /// The real layer shape this one imitates.
    pub real: RealModel,
    /// Tilings the layers ran with (prefill: many rows per expert; decode: a matvec).
    pub prefill_tiling: Tiling,
    /// Tiling of the decode-step expert GEMMs.
    pub decode_tiling: Tiling,
    /// MoE layer step against its dense equivalent.
    pub sparse_speedup: SparseSpeedup,
    /// Grouped GEMM throughput against dense matmuls of equal FLOPs.
    pub grouped_gemm_efficiency: GemmEfficiency,
    /// Decode step weight bandwidth against a copy kernel.
    pub decode_bandwidth_efficiency: DecodeBandwidth,
    /// Host time to record one layer step, in microseconds.
    pub host_us_per_layer: HostCost,
    /// Queue submissions per forward step.
    pub submits_per_step: Submits,
    /// Expert, router and shared-expert bytes uploaded to build this model's layers.
    pub uploaded_bytes: u64,
}

/// The MoE layer against the same layer routing every token to all experts.
#[derive(Debug, Clone, Serialize)]
pub struct SparseSpeedup {
    /// The layer shape measured.
    pub shape: ScaledShape,
    /// Tokens per step.
    pub tokens: usize,
    /// One whole layer step with k experts per token.
    pub sparse_ms: f64,
    /// The same layer with k = experts (the dense equivalent).
    pub dense_ms: f64,
    /// dense / sparse time of each round (the two timed in turn).
    pub round_ratios: Vec<f64>,
    /// The median of round_ratios.
    pub measured: f64,
    /// experts / k: the speedup if only expert FLOPs cost time.
    pub ideal: f64,
    /// measured / ideal.
    pub fraction_of_ideal: f64,
}

/// The prefill grouped GEMMs (gate/up + down) against plain dense matmuls of the same FLOPs.
#[derive(Debug, Clone, Serialize)]
pub struct GemmEfficiency {
    /// The layer shape measured.
    pub shape: ScaledShape,
    /// Tokens per step.
    pub tokens: usize,
    /// (token, expert) rows: tokens · k.
    pub rows: usize,
    /// FLOPs of the gate/up and down GEMMs over all rows.
    pub flops: f64,
    /// Time of the grouped GEMMs, in milliseconds.
    pub grouped_ms: f64,
    /// `flops` over `grouped_ms`, in GFLOP/s.
    pub grouped_gflop_per_s: f64,
    /// Tiling the grouped GEMMs ran with.
    pub grouped_tiling: Tiling,
    /// The fastest of the tuner's candidate tilings on the dense matmuls.
    pub dense_ms: f64,
    /// `flops` over `dense_ms`, in GFLOP/s.
    pub dense_gflop_per_s: f64,
    /// The tiling that gave `dense_ms`.
    pub dense_tiling: Tiling,
    /// Dense / grouped time of each round (the two timed in turn): the grouped GEMMs' GFLOP/s
    /// over the dense matmuls'.
    pub round_ratios: Vec<f64>,
    /// The median of round_ratios.
    pub value: f64,
    /// The grouped GEMMs on the same number of rows spread evenly over the experts (no
    /// partly filled tiles beyond what the even split leaves).
    pub even_routing_ms: f64,
    /// Dense / even-routing time, median over the rounds: `value` if routing were balanced.
    pub even_routing_value: f64,
}

/// A one-token decode layer step's weight traffic against a plain copy kernel.
#[derive(Debug, Clone, Serialize)]
pub struct DecodeBandwidth {
    /// The layer shape measured.
    pub shape: ScaledShape,
    /// Tokens per step (1).
    pub tokens: usize,
    /// Router, the k selected experts and the shared expert: what one step must read.
    pub weight_bytes: u64,
    /// Time of the layer step, in milliseconds.
    pub layer_ms: f64,
    /// `weight_bytes` over `layer_ms`, in GB/s.
    pub weight_gb_per_s: f64,
    /// Bytes one copy reads plus bytes it writes (it copies weight_bytes, from a pool of
    /// sources as large as the layer's routed experts, so it is as cold in the caches as the
    /// step's experts).
    pub copy_bytes_moved: u64,
    /// Workgroups of the copy: the fastest of a few grid sizes.
    pub copy_groups: u32,
    /// Time of the copy, in milliseconds.
    pub copy_ms: f64,
    /// (bytes read + bytes written) / time, the usual copy-bandwidth convention.
    pub copy_gb_per_s: f64,
    /// A plain read of weight_bytes (cycling through the same pool size): what a kernel that
    /// only reads its data once reaches, the ceiling for any decode kernel.
    pub read_bytes: u64,
    /// Workgroups of the read: the fastest of the same grid sizes.
    pub read_groups: u32,
    /// Time of the read, in milliseconds.
    pub read_ms: f64,
    /// `read_bytes` over `read_ms`, in GB/s.
    pub read_gb_per_s: f64,
    /// The read's bytes per second over the copy's (bytes moved), median over rounds: the
    /// highest `value` this adapter allows.
    pub read_vs_copy: f64,
    /// Per round (the layer step, the copy and the read timed in turn): the layer's weight
    /// bytes per second over the copy's bytes moved per second.
    pub round_ratios: Vec<f64>,
    /// The median of round_ratios.
    pub value: f64,
}

/// Host time to record one layer step (encoder, passes, dispatches; no GPU wait).
#[derive(Debug, Clone, Serialize)]
pub struct HostCost {
    /// The layer shape measured.
    pub shape: ScaledShape,
    /// Tokens per step.
    pub tokens: usize,
    /// Layer steps recorded into one encoder for the measurement.
    pub layers_encoded: usize,
    /// Microseconds per layer step.
    pub value: f64,
}

/// Queue submissions of one forward step (upload, layer, readback) with every expert resident.
#[derive(Debug, Clone, Serialize)]
pub struct Submits {
    /// The layer shape measured.
    pub shape: ScaledShape,
    /// Tokens per step.
    pub tokens: usize,
    /// Submissions counted by [`crate::Context::submit_count`].
    pub value: u64,
}

impl BenchReport {
    /// A few lines per model for people; `--json` gives everything.
    pub fn to_text(&self) -> String {
        let mut s = format!(
            "adapter: {} ({}, {}), times from {:?}, {} weights, autotune {}, ratios: median of {} rounds\n",
            self.adapter.name,
            self.adapter.backend,
            self.adapter.device_type,
            self.time_source,
            self.weight_format,
            if self.autotune { "on" } else { "off" },
            self.repeats
        );
        for m in &self.models {
            let sp = &m.sparse_speedup;
            let g = &m.grouped_gemm_efficiency;
            let d = &m.decode_bandwidth_efficiency;
            let sh = &sp.shape;
            s += &format!(
                "{} (E={}, k={}; prefill H={} I={}, decode H={} I={})\n",
                m.model, sh.experts, sh.top_k, sh.hidden, sh.inter, d.shape.hidden, d.shape.inter
            );
            s += &format!(
                "  sparse speedup      {:6.2} of ideal {:5.2} ({:.0}%) at {} tokens: {:.2} ms vs dense {:.2} ms\n",
                sp.measured,
                sp.ideal,
                100.0 * sp.fraction_of_ideal,
                sp.tokens,
                sp.sparse_ms,
                sp.dense_ms
            );
            s += &format!(
                "  grouped GEMM        {:6.2} of dense: {:.2} vs {:.2} GFLOP/s at {} rows ({:.2} with even routing)\n",
                g.value, g.grouped_gflop_per_s, g.dense_gflop_per_s, g.rows, g.even_routing_value
            );
            s += &format!(
                "  decode bandwidth    {:6.2} of copy: {:.2} vs {:.2} GB/s, {:.1} MB of weights in {:.3} ms (a plain read: {:.2} of copy)\n",
                d.value,
                d.weight_gb_per_s,
                d.copy_gb_per_s,
                d.weight_bytes as f64 / 1e6,
                d.layer_ms,
                d.read_vs_copy
            );
            s += &format!(
                "  host encode         {:6.1} µs per layer; {} submit(s) per step\n",
                m.host_us_per_layer.value, m.submits_per_step.value
            );
        }
        s
    }
}
