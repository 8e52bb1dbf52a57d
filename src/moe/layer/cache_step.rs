//! The expert-cache part of a step, between routing and the GEMMs: read back the step's
//! per-expert counts (and the next layer's prediction), place the experts on the CPU or the
//! GPU, upload what is predicted and then what the GPU misses, and run the GEMMs of all rounds
//! but the last where the step needs more experts than slots; after the GEMMs are submitted,
//! compute the CPU's experts and put their rows among the GPU's. Also the next-layer
//! predictor a cached layer can carry.

use std::cell::RefCell;

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::kernels::permute::PermuteShape;
use crate::moe::layer::state::MoeLayer;
use crate::moe::layer::step::CacheRounds;
use crate::moe::offload::{Offload, Predictor};
use crate::spec::routing::DynamicActivation;

impl MoeLayer {
    /// Copies the step's per-expert counts (and `next`'s prediction, and for a CPU side the
    /// step's ids and input) out, submits `rec` with the routing, uploads the experts
    /// predicted for this step while the GPU runs, reads the counts, places the step's experts
    /// (CPU or GPU), then uploads what the GPU still misses. A step that needs more GPU experts
    /// than slots runs its permutation and the GEMMs of every round but the last here, each
    /// round its own submit. `offload` is this layer's cache state. Returns what the rounds
    /// did and the experts (ascending) the CPU computes, for [`Self::place_cpu_rows`].
    pub(super) fn serve_from_cache(
        &self,
        ctx: &Context,
        rec: &mut Recorder<'_>,
        offload: &RefCell<Offload>,
        tokens: usize,
        shape: PermuteShape,
        next: Option<&MoeLayer>,
    ) -> Result<(CacheRounds, Vec<usize>)> {
        let mut off = offload.borrow_mut();
        let mut stats = self.stats.borrow_mut();
        let mut next_off = next
            .and_then(|n| n.offload.as_ref())
            .map(|o| o.borrow_mut())
            .filter(|o| o.predictor.is_some());
        off.copy_counts(rec.encoder(), &self.buffers.counts);
        if let Some(cpu) = &off.cpu {
            cpu.copy_inputs(rec.encoder(), &self.buffers.route.ids, &self.x, tokens);
        }
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
        let (on_cpu, plan) = off.plan(&counts)?;
        if let Some(cpu) = off.cpu.as_mut().filter(|_| !on_cpu.is_empty()) {
            // Now, while nothing but the routing is submitted: a readback waits for it all.
            cpu.read_inputs(ctx, tokens)?;
        }
        stats.record_step(tokens, &counts, Some(&plan));
        let rounds = plan.rounds.len();
        if rounds == 0 {
            off.clear_table(ctx);
        }
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
        stats.cost_rates = off.cpu.as_ref().and_then(|c| c.rates);
        let rounds = CacheRounds {
            rounds,
            uploads: plan.misses(),
            prefetched: predicted.map_or(0, |(_, n)| n),
            cpu_experts: on_cpu.len(),
        };
        Ok((rounds, on_cpu))
    }

    /// Submits what `rec` holds (the GPU's GEMMs), computes `experts` of the step on the CPU
    /// meanwhile, uploads their rows and records their placement among the GPU's rows into
    /// `rec`, ahead of the combine.
    pub(super) fn place_cpu_rows(
        &self,
        ctx: &Context,
        rec: &mut Recorder<'_>,
        experts: &[usize],
    ) -> Result<()> {
        let offload = self
            .offload
            .as_ref()
            .ok_or_else(|| Error::input("only a cached layer computes experts on the CPU"))?;
        let mut off = offload.borrow_mut();
        let cpu = off
            .cpu
            .as_mut()
            .ok_or_else(|| Error::input("the layer has no CPU side"))?;
        rec.submit()?;
        let out = cpu.compute(experts)?;
        let rows = out.pairs.len();
        let mut stats = self.stats.borrow_mut();
        stats.computed_on_cpu(experts.len(), rows, out.secs);
        stats.cpu_host_bytes = cpu.host_bytes();
        drop(stats);
        let kernel = self
            .cpu_rows
            .as_ref()
            .ok_or_else(|| Error::input("the layer has no CPU rows kernel"))?;
        self.buffers
            .cpu_rows(ctx)?
            .write(ctx, &out.pairs, &out.rows)?;
        kernel.encode(ctx, rec.pass(), rows);
        Ok(())
    }

    /// Lets this layer predict its experts one MoE layer early: its router is applied to
    /// `hidden` ([max_tokens, hidden] f32, typically the previous MoE layer's input) when the
    /// previous layer records a step with this layer as [`MoeStep::next`]. Returns whether a
    /// predictor was attached: with every expert resident, or every expert on the CPU, there
    /// is nothing to prefetch and none is.
    ///
    /// [`MoeStep::next`]: crate::moe::layer::MoeStep::next
    pub fn attach_predictor(&mut self, ctx: &Context, hidden: &wgpu::Buffer) -> Result<bool> {
        let Some(offload) = self.offload.as_ref().filter(|o| !o.borrow().cpu_only()) else {
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
