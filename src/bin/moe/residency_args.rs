//! The expert-residency options shared by the commands that run MoE layers (`block`, `demo`,
//! and `generate` once the decoder lands): budget, policy, prefetch, statistics and trace.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use moe_gpu::moe::residency::DEFAULT_LFU_HALF_LIFE;
use moe_gpu::moe::{
    CpuOptions, CpuPolicy, ExpertBudget, Policy, ResidencyOptions, ResidencyStats, parse_bytes,
};

#[derive(clap::Args, Debug)]
pub struct ResidencyArgs {
    /// VRAM for routed experts (e.g. 512M, 2G, 1.5GiB): below every expert, one pool of
    /// slots the MoE layers share (at least k experts). Default: every expert resident if all
    /// fit in half of the adapter's max_buffer_size, otherwise that budget, lowered to what
    /// fits the adapter's memory where known (a discrete GPU on Vulkan, or
    /// MOE_GPU_DEVICE_MEMORY). Fewer slots than experts turns on the expert cache.
    #[arg(long, value_name = "BYTES", conflicts_with = "expert_slots")]
    pub expert_budget: Option<String>,
    /// Expert slots per MoE layer instead of a byte budget (at least k).
    #[arg(long, value_name = "N")]
    pub expert_slots: Option<usize>,
    /// Which expert the cache evicts: least recently used, or least frequently used with
    /// counts halving every --lfu-half-life steps.
    #[arg(long, default_value = "lru", value_parser = ["lru", "lfu"])]
    pub policy: String,
    /// Half-life in steps of the LFU policy's use counts.
    #[arg(long, value_name = "STEPS", default_value_t = DEFAULT_LFU_HALF_LIFE)]
    pub lfu_half_life: f64,
    /// Do not predict the next MoE layer's experts and upload them ahead of time.
    #[arg(long)]
    pub no_prefetch: bool,
    /// Where a step's missing experts run: `auto` uploads each or computes it on the CPU from
    /// host memory, whichever a cost model measured on this machine says finishes the step
    /// sooner (only in cache mode: resident experts always run on the GPU); `never` uploads
    /// them all; `always` computes every routed expert on the CPU and uploads none.
    #[arg(long, value_name = "MODE", default_value = "auto", value_parser = ["auto", "never", "always"])]
    pub cpu_experts: String,
    /// Keep the experts of the first N MoE layers on the CPU, with no VRAM slots (llama.cpp's
    /// --n-cpu-moe); the other layers follow --cpu-experts.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub n_cpu_moe: usize,
    /// Threads of the CPU expert kernels (default: one per core).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub cpu_threads: usize,
    /// Host memory for experts converted to the GPU format for the CPU (e.g. 2G); an expert
    /// the checkpoint stores in that format is copied from the mapped file when not kept.
    #[arg(long, value_name = "BYTES", default_value = "4G")]
    pub cpu_cache: String,
    /// Write residency statistics as JSON: hits, misses, bytes uploaded, experts activated,
    /// uploaded and resident, prefetch precision and recall, per-layer expert histograms.
    #[arg(long, value_name = "FILE.json")]
    pub stats: Option<PathBuf>,
    /// Write the routing trace (experts each step activated, per layer) for `moe cache-sim`.
    #[arg(long, value_name = "TRACE.json")]
    pub trace_out: Option<PathBuf>,
}

impl ResidencyArgs {
    pub fn options(&self) -> Result<ResidencyOptions> {
        let budget = match (&self.expert_budget, self.expert_slots) {
            (Some(text), _) => ExpertBudget::Bytes(parse_bytes(text)?),
            (None, Some(n)) => ExpertBudget::SlotsPerLayer(n),
            (None, None) => ExpertBudget::Auto,
        };
        Ok(ResidencyOptions {
            budget,
            policy: Policy::parse(&self.policy, self.lfu_half_life)?,
            prefetch: !self.no_prefetch,
            record_trace: self.trace_out.is_some(),
            cpu: CpuOptions {
                policy: CpuPolicy::parse(&self.cpu_experts)?,
                n_cpu_moe: self.n_cpu_moe,
                threads: self.cpu_threads,
                host_cache: parse_bytes(&self.cpu_cache).context("--cpu-cache")?,
            },
        })
    }

    /// Prints a one-line summary and writes the files asked for.
    pub fn finish(&self, stats: &ResidencyStats, top_k: usize) -> Result<()> {
        eprintln!("{}", summary(stats));
        if let Some(path) = &self.stats {
            let text = serde_json::to_string_pretty(stats)?;
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
        }
        if let Some(path) = &self.trace_out {
            let trace = stats
                .trace(top_k)
                .context("the layers recorded no common routing trace")?;
            trace.save(path)?;
        }
        Ok(())
    }
}

/// e.g. `experts: cache of 4 slots per layer: 120 hits, 40 misses (75.0% hit rate), 2.10 MiB
/// uploaded ...`; with every expert resident only what was uploaded at load.
pub fn summary(s: &ResidencyStats) -> String {
    let mib = |b: u64| b as f64 / (1 << 20) as f64;
    let slots = s.per_layer.first().map_or(0, |l| l.slots);
    if s.per_layer.iter().all(|l| l.mode == "resident") {
        return format!(
            "experts: all resident, {:.2} MiB uploaded at load",
            mib(s.expert_bytes_total)
        );
    }
    let cpu_layers = s.per_layer.iter().filter(|l| l.mode == "cpu").count();
    let mode = if cpu_layers == s.per_layer.len() {
        "every expert on the CPU".to_string()
    } else if s.per_layer.iter().any(|l| l.mode == "pool") {
        let resident: Vec<String> = s.per_layer.iter().map(|l| l.resident.to_string()).collect();
        format!(
            "pool of {slots} slots shared by {} layers (resident per layer: {})",
            s.per_layer.len(),
            resident.join("/")
        )
    } else {
        format!("cache of {slots} slots per layer")
    };
    let mut line = format!(
        "experts: {mode}: {} hits, {} misses ({:.1}% hit rate), {:.2} MiB uploaded (an evicted \
         expert uploads again when needed; every expert once is {:.2} MiB)",
        s.hits,
        s.misses,
        100.0 * s.hit_rate,
        mib(s.bytes_uploaded),
        mib(s.expert_bytes_total),
    );
    if let Some(ms) = s.upload_host_ms_per_expert {
        line.push_str(&format!("; {ms:.2} ms host time per upload"));
    }
    if s.cpu_experts > 0 {
        line.push_str(&format!(
            "; CPU: {} experts ({} rows) in {:.1} ms, {:.2} MiB not uploaded",
            s.cpu_experts,
            s.cpu_rows,
            s.cpu_ms,
            mib(s.cpu_bytes_not_uploaded)
        ));
    }
    if let (Some(p), Some(r)) = (s.prefetch_precision, s.prefetch_recall) {
        line.push_str(&format!(
            "; prefetch: {} uploads, {} used, precision {:.2}, recall {:.2}",
            s.prefetch_uploads, s.prefetch_hits, p, r
        ));
    }
    line
}
