//! Cache mode of an MoE layer on the GPU: read back which experts a step needs (one [experts]
//! u32 copy), upload the missing ones from the host store, point the slot table at them, and
//! predict the next layer's experts so they can be uploaded ahead of time.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::gpu::{Context, Staging};
use crate::kernels::expert_arena::ExpertArena;
use crate::moe::cpu_options::CpuPolicy;
use crate::moe::cpu_side::CpuSide;
use crate::moe::pool::CacheView;
use crate::moe::residency::{Round, StepPlan, Upload};
use crate::moe::router::{Router, RouterOutputs, RouterWeights};
use crate::moe::stats::LayerStats;
use crate::spec::INVALID;
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::routing::DynamicActivation;
use crate::spec::weights::ExpertSource;

/// The residency state of a layer whose experts do not all fit in its slots.
pub(crate) struct Offload {
    source: Arc<dyn ExpertSource>,
    spec: MoeLayerSpec,
    pub cache: CacheView,
    /// `[experts]` the layer's expert → slot table.
    table: wgpu::Buffer,
    /// Receives the per-expert token counts of each step.
    counts_staging: Staging,
    /// Experts predicted for this layer's coming step, most tokens first.
    prediction: Option<Vec<usize>>,
    pub predictor: Option<Predictor>,
    /// Where the CPU may compute some of the step's experts instead.
    pub cpu: Option<CpuSide>,
}

impl Offload {
    /// Serves the layer's steps from `cache`, pointing `table` at its resident experts, with
    /// the CPU side `cpu` where it has one.
    pub fn new(
        ctx: &Context,
        spec: &MoeLayerSpec,
        source: Arc<dyn ExpertSource>,
        cache: CacheView,
        table: wgpu::Buffer,
        cpu: Option<CpuSide>,
    ) -> Result<Self> {
        let experts = spec.routing.experts;
        Ok(Self {
            cpu,
            source,
            spec: spec.clone(),
            cache,
            table,
            counts_staging: Staging::new(ctx, "expert counts readback", (experts * 4) as u64)?,
            prediction: None,
            predictor: None,
        })
    }

    /// Whether every expert of the layer runs on the CPU (nothing is ever uploaded).
    pub fn cpu_only(&self) -> bool {
        self.cpu
            .as_ref()
            .is_some_and(|c| c.policy() == CpuPolicy::Always)
    }

    /// Records the copy of the step's per-expert counts for [`Self::read_counts`].
    pub fn copy_counts(&self, encoder: &mut wgpu::CommandEncoder, counts: &wgpu::Buffer) {
        let bytes = (self.spec.routing.experts * 4) as u64;
        self.counts_staging.copy_from(encoder, counts, 0, 0, bytes);
    }

    /// Waits for the submitted routing and returns the tokens per expert.
    pub fn read_counts(&self, ctx: &Context) -> Result<Vec<u32>> {
        self.counts_staging.read(ctx, self.spec.routing.experts)
    }

    /// Uploads the experts predicted for this step (call right after submitting, so that the
    /// host work overlaps the GPU's) and returns the prediction, for the accuracy statistics,
    /// with the number of experts it uploaded.
    pub fn prefetch(
        &mut self,
        ctx: &Context,
        arena: &ExpertArena,
        stats: &mut LayerStats,
    ) -> Result<Option<(Vec<usize>, usize)>> {
        let Some(predicted) = self.prediction.take() else {
            return Ok(None);
        };
        let uploads = self.cache.prefetch(&predicted)?;
        for up in &uploads {
            let host = self.upload(ctx, arena, up)?;
            stats.uploaded(up.expert, true, host);
        }
        Ok(Some((predicted, uploads.len())))
    }

    /// Reads the prediction the predictor computed for this layer's next step.
    pub fn take_prediction(&mut self, ctx: &Context, tokens: usize) -> Result<()> {
        if let Some(p) = &self.predictor {
            self.prediction = Some(p.read(ctx, tokens, self.spec.routing.experts)?);
        }
        Ok(())
    }

    /// Plans the step that routed `counts[e]` tokens to each expert e: the experts (ascending)
    /// the CPU computes, and how the GPU serves the others.
    pub fn plan(&self, counts: &[u32]) -> Result<(Vec<usize>, StepPlan)> {
        let on_cpu = match &self.cpu {
            Some(cpu) => cpu.place(counts, |e| self.cache.holds(e)),
            None => Vec::new(),
        };
        let needed: Vec<usize> = (0..counts.len())
            .filter(|&e| counts[e] > 0 && on_cpu.binary_search(&e).is_err())
            .collect();
        Ok((on_cpu, self.cache.plan_step(&needed)?))
    }

    /// Points the table at no expert: a step whose experts all run on the CPU.
    pub fn clear_table(&self, ctx: &Context) {
        let table = vec![INVALID; self.spec.routing.experts];
        ExpertArena::write_table(ctx, &self.table, &table);
    }

    /// Uploads a round's missing experts and maps exactly the round's experts in the table.
    pub fn apply_round(
        &mut self,
        ctx: &Context,
        arena: &ExpertArena,
        round: &Round,
        stats: &mut LayerStats,
    ) -> Result<()> {
        for up in &round.uploads {
            let host = self.upload(ctx, arena, up)?;
            stats.uploaded(up.expert, false, host);
        }
        let table = round.table(self.spec.routing.experts);
        ExpertArena::write_table(ctx, &self.table, &table);
        Ok(())
    }

    /// Reads, converts and queues one expert's upload; returns the host time it took, which
    /// the cost model of a CPU side also learns from.
    fn upload(&mut self, ctx: &Context, arena: &ExpertArena, up: &Upload) -> Result<Duration> {
        let start = Instant::now();
        let bias = self.spec.expert_bias;
        arena.upload_from(ctx, up.slot, self.source.as_ref(), up.expert, bias)?;
        let host = start.elapsed();
        if let Some(rates) = self.cpu.as_mut().and_then(|c| c.rates.as_mut()) {
            let bytes = ExpertArena::expert_bytes(arena.hidden, arena.inter, arena.format, bias);
            rates.observe_upload(bytes, host.as_secs_f64());
        }
        Ok(host)
    }
}

/// A layer's router applied to another hidden state (the previous MoE layer's input), so that
/// its experts can be predicted one layer early.
pub(crate) struct Predictor {
    router: Router,
    outputs: RouterOutputs,
    /// Receives [tokens, k] predicted ids.
    staging: Staging,
    top_k: usize,
    max_tokens: usize,
}

impl Predictor {
    pub fn new(
        ctx: &Context,
        spec: &MoeLayerSpec,
        weights: &RouterWeights,
        hidden: &wgpu::Buffer,
        max_tokens: usize,
    ) -> Result<Self> {
        let need = (max_tokens * spec.hidden * 4) as u64;
        if hidden.size() < need {
            return Err(Error::input(format!(
                "prefetch hidden-state buffer holds {} bytes, the layer needs {need} \
                 ([{max_tokens}, {}] f32)",
                hidden.size(),
                spec.hidden
            )));
        }
        let outputs = RouterOutputs::new(ctx, spec, max_tokens)?;
        let router = Router::new(ctx, spec, weights, hidden, &outputs, None, None)?;
        let top_k = spec.routing.top_k;
        Ok(Self {
            router,
            staging: Staging::new(ctx, "prediction readback", (max_tokens * top_k * 4) as u64)?,
            outputs,
            top_k,
            max_tokens,
        })
    }

    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        activation: &DynamicActivation,
    ) -> Result<()> {
        if tokens > self.max_tokens {
            return Err(Error::input(format!(
                "{tokens} tokens exceed the layer's max_tokens {}",
                self.max_tokens
            )));
        }
        self.router.encode(ctx, pass, tokens, activation, None)?;
        Ok(())
    }

    pub fn copy_out(&self, encoder: &mut wgpu::CommandEncoder, tokens: usize) {
        let bytes = (tokens * self.top_k * 4) as u64;
        self.staging
            .copy_from(encoder, &self.outputs.ids, 0, 0, bytes);
    }

    /// The predicted experts, most tokens first (ties: lower id).
    fn read(&self, ctx: &Context, tokens: usize, experts: usize) -> Result<Vec<usize>> {
        let ids: Vec<u32> = self.staging.read(ctx, tokens * self.top_k)?;
        let mut counts = vec![0u32; experts];
        for id in ids.into_iter().filter(|&id| id != INVALID) {
            if let Some(c) = counts.get_mut(id as usize) {
                *c += 1;
            }
        }
        let mut ranked: Vec<usize> = (0..experts).filter(|&e| counts[e] > 0).collect();
        ranked.sort_by_key(|&e| (std::cmp::Reverse(counts[e]), e));
        Ok(ranked)
    }
}
