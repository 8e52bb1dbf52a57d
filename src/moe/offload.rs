//! Cache mode of an MoE layer on the GPU: read back which experts a step needs (one [experts]
//! u32 copy), upload the missing ones from the host store, point the slot table at them, and
//! predict the next layer's experts so they can be uploaded ahead of time.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{Context, Staging};
use crate::kernels::INVALID;
use crate::moe::arena::ExpertArena;
use crate::moe::experts::ExpertSource;
use crate::moe::layer::{MoeLayer, MoeLayerSpec};
use crate::moe::residency::{ExpertCache, Policy, Round, StepPlan, Upload};
use crate::moe::router::{Router, RouterOutputs, RouterWeights};
use crate::moe::routing::DynamicActivation;
use crate::moe::stats::LayerStats;

/// The residency state of a layer whose experts do not all fit in its slots.
pub(crate) struct Offload {
    source: Arc<dyn ExpertSource>,
    spec: MoeLayerSpec,
    pub cache: ExpertCache,
    /// Receives the per-expert token counts of each step.
    counts_staging: Staging,
    /// Experts predicted for this layer's coming step, most tokens first.
    prediction: Option<Vec<usize>>,
    pub predictor: Option<Predictor>,
    /// The permutation ran during sync (a step served in rounds), not in encode_experts.
    pub permuted: bool,
}

impl Offload {
    pub fn new(
        ctx: &Context,
        spec: &MoeLayerSpec,
        source: Arc<dyn ExpertSource>,
        slots: usize,
        policy: Policy,
    ) -> Result<Self> {
        let experts = spec.routing.experts;
        Ok(Self {
            source,
            spec: spec.clone(),
            cache: ExpertCache::new(experts, slots, policy)?,
            counts_staging: Staging::new(ctx, "expert counts readback", (experts * 4) as u64),
            prediction: None,
            predictor: None,
            permuted: false,
        })
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
    /// host work overlaps the GPU's) and returns the prediction for the accuracy statistics.
    pub fn prefetch(
        &mut self,
        ctx: &Context,
        arena: &ExpertArena,
        stats: &mut LayerStats,
    ) -> Result<Option<Vec<usize>>> {
        let Some(predicted) = self.prediction.take() else {
            return Ok(None);
        };
        for up in self.cache.prefetch(&predicted)? {
            self.upload(ctx, arena, &up)?;
            stats.uploaded(up.expert, true);
        }
        Ok(Some(predicted))
    }

    /// Reads the prediction the predictor computed for this layer's next step.
    pub fn take_prediction(&mut self, ctx: &Context, tokens: usize) -> Result<()> {
        if let Some(p) = &self.predictor {
            self.prediction = Some(p.read(ctx, tokens, self.spec.routing.experts)?);
        }
        Ok(())
    }

    /// Plans the step that routed `counts[e]` tokens to each expert e.
    pub fn plan(&mut self, counts: &[u32]) -> Result<StepPlan> {
        let needed: Vec<usize> = (0..counts.len()).filter(|&e| counts[e] > 0).collect();
        self.cache.plan_step(&needed)
    }

    /// Uploads a round's missing experts and maps exactly the round's experts in the table.
    pub fn apply_round(
        &self,
        ctx: &Context,
        arena: &ExpertArena,
        round: &Round,
        stats: &mut LayerStats,
    ) -> Result<()> {
        for up in &round.uploads {
            self.upload(ctx, arena, up)?;
            stats.uploaded(up.expert, false);
        }
        arena.write_table(ctx, &round.table(self.cache.experts()));
        Ok(())
    }

    fn upload(&self, ctx: &Context, arena: &ExpertArena, up: &Upload) -> Result<()> {
        let w = self.source.load(up.expert)?;
        let s = &self.spec;
        w.check(
            &format!("expert {}", up.expert),
            s.hidden,
            s.inter,
            s.expert_bias,
        )?;
        arena.upload(ctx, up.slot, &w);
        Ok(())
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
            staging: Staging::new(ctx, "prediction readback", (max_tokens * top_k * 4) as u64),
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

impl MoeLayer {
    /// Host work between [`MoeLayer::encode_route`] and [`MoeLayer::encode_experts`] in cache
    /// mode: copies the step's per-expert counts (and `next`'s prediction) out of `encoder`,
    /// submits it, uploads the experts predicted for this step while the GPU runs, reads the
    /// counts, then uploads what is still missing. A step that needs more experts than slots
    /// runs its GEMMs round by round here, each round its own submit. Returns the encoder to
    /// record the experts into. Without cache mode it returns `encoder` untouched.
    pub fn sync(
        &self,
        ctx: &Context,
        mut encoder: wgpu::CommandEncoder,
        tokens: usize,
        next: Option<&MoeLayer>,
    ) -> Result<wgpu::CommandEncoder> {
        let Some(offload) = &self.offload else {
            return Ok(encoder);
        };
        if next.is_some_and(|n| std::ptr::eq(n, self)) {
            return Err(Error::input("an MoE layer cannot prefetch for itself"));
        }
        let mut off = offload.borrow_mut();
        let mut stats = self.stats.borrow_mut();
        let mut next_off = next
            .and_then(|n| n.offload.as_ref())
            .map(|o| o.borrow_mut())
            .filter(|o| o.predictor.is_some());
        off.copy_counts(&mut encoder, &self.counts);
        if let Some(p) = next_off.as_ref().and_then(|o| o.predictor.as_ref()) {
            p.copy_out(&mut encoder, tokens);
        }
        ctx.submit([encoder.finish()]);
        let predicted = off.prefetch(ctx, &self.arena, &mut stats)?;
        let counts = off.read_counts(ctx)?;
        if let Some(n) = next_off.as_mut() {
            n.take_prediction(ctx, tokens)?;
        }
        if let Some(p) = &predicted {
            stats.record_prediction(p, &counts);
        }
        let plan = off.plan(&counts)?;
        stats.record_step(tokens, &counts, Some(&plan));
        let rounds = plan.rounds.len();
        for (i, round) in plan.rounds.iter().enumerate() {
            off.apply_round(ctx, &self.arena, round, &mut stats)?;
            if i + 1 < rounds {
                let mut enc = ctx.device.create_command_encoder(&Default::default());
                {
                    let mut pass = enc.begin_compute_pass(&Default::default());
                    if i == 0 {
                        self.encode_permute(ctx, &mut pass, tokens);
                    }
                    self.encode_gemms(&mut pass, tokens);
                }
                ctx.submit([enc.finish()]);
                off.permuted = true;
            }
        }
        stats.note_resident(off.cache.resident());
        Ok(ctx.device.create_command_encoder(&Default::default()))
    }

    /// Lets this layer predict its experts one MoE layer early: its router is applied to
    /// `hidden` ([max_tokens, hidden] f32, typically the previous MoE layer's input) when the
    /// previous layer calls [`MoeLayer::encode_with_next`] with this layer as `next`. Returns
    /// whether a predictor was attached: with every expert resident there is nothing to
    /// prefetch and none is.
    pub fn attach_predictor(&mut self, ctx: &Context, hidden: &wgpu::Buffer) -> Result<bool> {
        let Some(offload) = &self.offload else {
            return Ok(false);
        };
        let p = Predictor::new(
            ctx,
            &self.spec,
            &self.router_weights,
            hidden,
            self.max_tokens,
        )?;
        offload.borrow_mut().predictor = Some(p);
        Ok(true)
    }

    /// Records this layer's expert prediction for `tokens` tokens of its predictor's hidden
    /// state, in the previous MoE layer's routing pass (nothing without a predictor).
    pub fn encode_prediction(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        activation: &DynamicActivation,
    ) -> Result<()> {
        if let Some(off) = &self.offload
            && let Some(p) = &off.borrow().predictor
        {
            p.encode(ctx, pass, tokens, activation)?;
        }
        Ok(())
    }
}
