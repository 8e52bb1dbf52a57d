//! Residency statistics: per layer as steps run, and summed over a model for `--stats`.

use serde::Serialize;

use crate::moe::cost_model::Rates;
use crate::moe::residency::StepPlan;
use crate::moe::routing_trace::{RoutingTrace, TraceStep};

/// What one MoE layer's expert residency did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LayerStats {
    /// Decoder layer index (as given to the layer's options).
    pub layer: usize,
    /// Routed experts of the layer.
    pub experts: usize,
    /// Expert slots in VRAM (at least `experts` in `resident` mode; the shared pool's in
    /// `pool` mode).
    pub slots: usize,
    /// `resident` (every expert uploaded at build, no readback), `cache` (slots of its own) or
    /// `pool` (slots shared with the model's other MoE layers).
    pub mode: &'static str,
    /// Bytes one expert occupies in VRAM and on the bus.
    pub expert_bytes: u64,
    /// Steps observed (in `resident` mode only those whose routing was read back).
    pub steps: u64,
    /// Readbacks of the routing (one per step in `cache` mode, none in `resident` mode).
    pub readbacks: u64,
    /// Submits of GEMM rounds beyond the first, for steps that needed more experts than slots.
    pub extra_rounds: u64,
    /// Needed experts that were resident when their step began.
    pub hits: u64,
    /// Needed experts that had to be uploaded during their step.
    pub misses: u64,
    /// Every expert byte copied to VRAM: at build (`resident`), on misses and on prefetches.
    pub bytes_uploaded: u64,
    /// Host time of those uploads: reading the checkpoint, converting and packing the weights,
    /// queueing the copies (milliseconds).
    pub upload_host_ms: f64,
    /// Experts uploaded ahead of their step because they were predicted.
    pub prefetch_uploads: u64,
    /// Hits on experts that were resident only thanks to a prefetch.
    pub prefetch_hits: u64,
    /// Needed experts the CPU computed instead of the GPU (neither hits nor misses).
    pub cpu_experts: u64,
    /// (token, slot) rows those experts computed.
    pub cpu_rows: u64,
    /// Expert bytes not uploaded because the CPU computed the expert.
    pub cpu_bytes_not_uploaded: u64,
    /// Host time of the CPU experts: the step's input read back, experts read, rows computed
    /// (milliseconds). The GPU side's host time is `upload_host_ms`.
    pub cpu_ms: f64,
    /// Bytes of experts the host keeps converted for the CPU, at the last CPU step.
    pub cpu_host_bytes: u64,
    /// The cost model's rates when the last step placed its experts (`--cpu-experts auto`).
    pub cost_rates: Option<Rates>,
    /// Σ over predicted steps of |predicted|, |predicted ∩ activated| and |activated|.
    pub predicted: u64,
    /// Σ of |predicted ∩ activated|.
    pub predicted_and_activated: u64,
    /// Σ of |activated| over the predicted steps.
    pub activated_when_predicted: u64,
    /// Most experts resident at once.
    pub resident_max: usize,
    /// Experts resident now (in cache and pool modes; at the last step otherwise): with a
    /// shared pool, this layer's share of it.
    pub resident: usize,
    /// Tokens routed to each expert, over all observed steps.
    pub histogram: Vec<u64>,
    #[serde(skip)]
    activated: Vec<bool>,
    #[serde(skip)]
    uploaded: Vec<bool>,
    #[serde(skip)]
    trace: Option<Vec<TraceStep>>,
}

impl LayerStats {
    /// Empty statistics of decoder layer `layer`; `slots >= experts` means `resident` mode.
    pub fn new(
        layer: usize,
        experts: usize,
        slots: usize,
        expert_bytes: u64,
        record_trace: bool,
    ) -> Self {
        Self {
            layer,
            experts,
            slots,
            mode: if slots >= experts {
                "resident"
            } else {
                "cache"
            },
            expert_bytes,
            histogram: vec![0; experts],
            activated: vec![false; experts],
            uploaded: vec![false; experts],
            trace: record_trace.then(Vec::new),
            ..Default::default()
        }
    }

    /// Distinct experts activated by some step.
    pub fn experts_ever_activated(&self) -> usize {
        self.activated.iter().filter(|&&b| b).count()
    }

    /// Distinct experts uploaded at some point.
    pub fn experts_ever_uploaded(&self) -> usize {
        self.uploaded.iter().filter(|&&b| b).count()
    }

    /// Records an upload of `expert` (`prefetch`: ahead of its use) that took `host` on the
    /// host.
    pub fn uploaded(&mut self, expert: usize, prefetch: bool, host: std::time::Duration) {
        self.uploaded[expert] = true;
        self.bytes_uploaded += self.expert_bytes;
        self.upload_host_ms += host.as_secs_f64() * 1e3;
        self.prefetch_uploads += u64::from(prefetch);
    }

    /// Records one step: `counts[e]` tokens went to expert e; `plan` is how it was served
    /// (`None` in resident mode, where every activated expert is a hit).
    pub fn record_step(&mut self, tokens: usize, counts: &[u32], plan: Option<&StepPlan>) {
        let active: Vec<usize> = (0..self.experts).filter(|&e| counts[e] > 0).collect();
        self.steps += 1;
        for &e in &active {
            self.histogram[e] += u64::from(counts[e]);
            self.activated[e] = true;
        }
        match plan {
            Some(p) => {
                self.readbacks += 1;
                self.hits += p.hits as u64;
                self.misses += p.misses() as u64;
                self.prefetch_hits += p.prefetch_hits as u64;
                self.extra_rounds += p.rounds.len().saturating_sub(1) as u64;
            }
            None => self.hits += active.len() as u64,
        }
        if let Some(trace) = &mut self.trace {
            trace.push(TraceStep {
                tokens,
                experts: vec![active],
            });
        }
    }

    /// Records `experts` experts of one step computed on the CPU: `rows` rows in `secs`.
    pub fn computed_on_cpu(&mut self, experts: usize, rows: usize, secs: f64) {
        self.cpu_experts += experts as u64;
        self.cpu_rows += rows as u64;
        self.cpu_bytes_not_uploaded += experts as u64 * self.expert_bytes;
        self.cpu_ms += secs * 1e3;
    }

    /// Records how a prediction of this step compared with what it activated.
    pub fn record_prediction(&mut self, predicted: &[usize], counts: &[u32]) {
        self.predicted += predicted.len() as u64;
        self.predicted_and_activated += predicted.iter().filter(|&&e| counts[e] > 0).count() as u64;
        self.activated_when_predicted += counts.iter().filter(|&&c| c > 0).count() as u64;
    }

    /// Raises `resident_max` to `resident` if higher.
    pub fn note_resident(&mut self, resident: usize) {
        self.resident = resident;
        self.resident_max = self.resident_max.max(resident);
    }
}

/// Residency statistics summed over the MoE layers of a model, as `--stats` writes them.
#[derive(Debug, Clone, Serialize)]
pub struct ResidencyStats {
    /// Needed experts resident when their step began, all layers.
    pub hits: u64,
    /// Needed experts uploaded during their step, all layers.
    pub misses: u64,
    /// hits / (hits + misses + CPU experts): the needed experts found resident.
    pub hit_rate: f64,
    /// Needed experts computed on the CPU, all layers.
    pub cpu_experts: u64,
    /// Rows they computed, all layers.
    pub cpu_rows: u64,
    /// Expert bytes they did not upload, all layers.
    pub cpu_bytes_not_uploaded: u64,
    /// Host time of the CPU experts, all layers (milliseconds).
    pub cpu_ms: f64,
    /// Expert bytes copied to VRAM, all layers.
    pub bytes_uploaded: u64,
    /// Host time of the uploads after load (misses and prefetches) per upload, milliseconds:
    /// what reading and converting one expert costs.
    pub upload_host_ms_per_expert: Option<f64>,
    /// Bytes of every routed expert of every MoE layer.
    pub expert_bytes_total: u64,
    /// Routed experts of all MoE layers.
    pub experts_total: usize,
    /// Distinct (layer, expert) pairs ever activated / ever uploaded.
    pub experts_ever_activated: usize,
    /// (See `experts_ever_activated`.)
    pub experts_ever_uploaded: usize,
    /// Most experts resident at once, all layers together.
    pub experts_resident_max: usize,
    /// Routing readbacks, all layers.
    pub readbacks: u64,
    /// GEMM rounds beyond the first, all layers.
    pub extra_rounds: u64,
    /// Experts uploaded because they were predicted, all layers.
    pub prefetch_uploads: u64,
    /// Hits on experts resident only thanks to a prefetch, all layers.
    pub prefetch_hits: u64,
    /// |predicted ∩ activated| / |predicted|, over steps with a prediction.
    pub prefetch_precision: Option<f64>,
    /// |predicted ∩ activated| / |activated|, over steps with a prediction.
    pub prefetch_recall: Option<f64>,
    /// Each layer's own statistics.
    pub per_layer: Vec<LayerStats>,
}

impl ResidencyStats {
    /// Sums the statistics of a model's MoE layers.
    pub fn from_layers(layers: Vec<LayerStats>) -> Self {
        let sum = |f: fn(&LayerStats) -> u64| layers.iter().map(f).sum::<u64>();
        let (hits, misses) = (sum(|l| l.hits), sum(|l| l.misses));
        let cpu_experts = sum(|l| l.cpu_experts);
        let both = sum(|l| l.predicted_and_activated);
        let ratio = |num: u64, den: u64| (den > 0).then(|| num as f64 / den as f64);
        Self {
            hits,
            misses,
            hit_rate: ratio(hits, hits + misses + cpu_experts).unwrap_or(0.0),
            cpu_experts,
            cpu_rows: sum(|l| l.cpu_rows),
            cpu_bytes_not_uploaded: sum(|l| l.cpu_bytes_not_uploaded),
            cpu_ms: layers.iter().map(|l| l.cpu_ms).sum(),
            bytes_uploaded: sum(|l| l.bytes_uploaded),
            upload_host_ms_per_expert: {
                let cached = layers.iter().filter(|l| l.mode != "resident");
                let ms: f64 = cached.clone().map(|l| l.upload_host_ms).sum();
                let ups: u64 = cached.map(|l| l.misses + l.prefetch_uploads).sum();
                (ups > 0).then(|| ms / ups as f64)
            },
            expert_bytes_total: sum(|l| l.expert_bytes * l.experts as u64),
            experts_total: layers.iter().map(|l| l.experts).sum(),
            experts_ever_activated: layers.iter().map(|l| l.experts_ever_activated()).sum(),
            experts_ever_uploaded: layers.iter().map(|l| l.experts_ever_uploaded()).sum(),
            // A layer's own slots are only ever refilled, never emptied, so each layer's
            // maximum is its current count and the sum is the model's maximum at once; a shared
            // pool holds at most its slots.
            experts_resident_max: {
                let sum = layers.iter().map(|l| l.resident_max).sum::<usize>();
                let pool = layers.iter().find(|l| l.mode == "pool").map(|l| l.slots);
                pool.map_or(sum, |slots| sum.min(slots))
            },
            readbacks: sum(|l| l.readbacks),
            extra_rounds: sum(|l| l.extra_rounds),
            prefetch_uploads: sum(|l| l.prefetch_uploads),
            prefetch_hits: sum(|l| l.prefetch_hits),
            prefetch_precision: ratio(both, sum(|l| l.predicted)),
            prefetch_recall: ratio(both, sum(|l| l.activated_when_predicted)),
            per_layer: layers,
        }
    }

    /// The steps recorded by layers built with `record_trace`, as one trace; `None` when no
    /// layer recorded or the layers saw different step counts.
    pub fn trace(&self, top_k: usize) -> Option<RoutingTrace> {
        let recorded: Vec<&Vec<TraceStep>> = self
            .per_layer
            .iter()
            .map(|l| l.trace.as_ref())
            .collect::<Option<_>>()?;
        let steps = recorded.first()?.len();
        if recorded.iter().any(|r| r.len() != steps) {
            return None;
        }
        let experts = self.per_layer.first()?.experts;
        let mut trace = RoutingTrace::new(
            experts,
            top_k,
            self.per_layer.iter().map(|l| l.layer).collect(),
        );
        for s in 0..steps {
            trace.steps.push(TraceStep {
                tokens: recorded[0][s].tokens,
                experts: recorded.iter().map(|r| r[s].experts[0].clone()).collect(),
            });
        }
        Some(trace)
    }
}
