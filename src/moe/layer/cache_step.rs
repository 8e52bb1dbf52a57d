//! The expert-cache part of a step, between routing and the GEMMs: read back the step's
//! per-expert counts (and the next layer's prediction), upload what is predicted and then what
//! is missing, and run the GEMMs of all rounds but the last where the step needs more experts
//! than slots. Also the next-layer predictor a cached layer can carry.

use std::cell::RefCell;

use crate::error::Result;
use crate::gpu::{Context, Recorder};
use crate::kernels::permute::PermuteShape;
use crate::moe::layer::state::MoeLayer;
use crate::moe::layer::step::CacheRounds;
use crate::moe::offload::{Offload, Predictor};
use crate::spec::routing::DynamicActivation;

impl MoeLayer {
    /// Copies the step's per-expert counts (and `next`'s prediction) out, submits `rec` with
    /// the routing, uploads the experts predicted for this step while the GPU runs, reads the
    /// counts, then uploads what is still missing. A step that needs more experts than slots
    /// runs its permutation and the GEMMs of every round but the last here, each round its own
    /// submit. `offload` is this layer's cache state.
    pub(super) fn serve_from_cache(
        &self,
        ctx: &Context,
        rec: &mut Recorder<'_>,
        offload: &RefCell<Offload>,
        tokens: usize,
        shape: PermuteShape,
        next: Option<&MoeLayer>,
    ) -> Result<CacheRounds> {
        let mut off = offload.borrow_mut();
        let mut stats = self.stats.borrow_mut();
        let mut next_off = next
            .and_then(|n| n.offload.as_ref())
            .map(|o| o.borrow_mut())
            .filter(|o| o.predictor.is_some());
        off.copy_counts(rec.encoder(), &self.buffers.counts);
        if let Some(p) = next_off.as_ref().and_then(|o| o.predictor.as_ref()) {
            p.copy_out(rec.encoder(), tokens);
        }
        rec.submit()?;
        let predicted = off.prefetch(ctx, &self.arena, &mut stats)?;
        let counts = off.read_counts(ctx)?;
        if let Some(n) = next_off.as_mut() {
            n.take_prediction(ctx, tokens)?;
        }
        if let Some((p, _)) = &predicted {
            stats.record_prediction(p, &counts);
        }
        let plan = off.plan(&counts)?;
        stats.record_step(tokens, &counts, Some(&plan));
        let rounds = plan.rounds.len();
        for (i, round) in plan.rounds.iter().enumerate() {
            off.apply_round(ctx, &self.arena, round, &mut stats)?;
            if i + 1 < rounds {
                let pass = rec.pass();
                if i == 0 {
                    self.permute.encode(ctx, pass, tokens * self.top_k(), shape);
                }
                self.encode_gemms(pass, tokens);
                rec.submit()?;
            }
        }
        stats.note_resident(off.cache.resident());
        Ok(CacheRounds {
            rounds,
            uploads: plan.misses(),
            prefetched: predicted.map_or(0, |(_, n)| n),
        })
    }

    /// Lets this layer predict its experts one MoE layer early: its router is applied to
    /// `hidden` ([max_tokens, hidden] f32, typically the previous MoE layer's input) when the
    /// previous layer records a step with this layer as [`MoeStep::next`]. Returns whether a
    /// predictor was attached: with every expert resident there is nothing to prefetch and
    /// none is.
    ///
    /// [`MoeStep::next`]: crate::moe::layer::MoeStep::next
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
    pub(super) fn record_prediction(
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
