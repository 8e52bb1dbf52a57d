//! Expert slots shared by every MoE layer of a model. The layers run one after another, so a
//! budget of k slots runs any model, and the slots go where the routing needs them: a hot layer
//! keeps more of its experts than a cold one. One [`ExpertCache`] keeps all of them, keyed by
//! (layer, expert); each layer plans its steps through its [`CacheView`].
//!
//! Sharing is safe within one forward step because a cached layer submits everything recorded
//! before its uploads (`serve_from_cache`), and a queued write runs after every earlier
//! submission: an earlier layer's GEMMs have read their slots before a later layer overwrites
//! them. Each layer rewrites its own slot table before each of its rounds, so another layer's
//! eviction never leaves it reading a stale slot.

use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::expert_arena::ExpertArena;
use crate::moe::budget::Placement;
use crate::moe::residency::{ExpertCache, Policy, StepPlan, Upload};
use crate::spec::layer_spec::MoeLayerSpec;

/// Expert slots and their residency state, shared by `layers` MoE layers of one shape.
pub struct ExpertPool {
    /// The slots.
    pub arena: Arc<ExpertArena>,
    cache: Arc<Mutex<ExpertCache>>,
    /// Routed experts per layer.
    experts: usize,
    layers: usize,
}

impl ExpertPool {
    /// `slots` empty slots for `layers` layers shaped like `spec` (at least k slots).
    pub fn new(
        ctx: &Context,
        spec: &MoeLayerSpec,
        layers: usize,
        slots: usize,
        policy: Policy,
    ) -> Result<Self> {
        let (e, k) = (spec.routing.experts, spec.routing.top_k);
        if slots < k {
            return Err(Error::input(format!(
                "{slots} shared expert slots are below k = {k}: each token needs its {k} \
                 experts resident at once"
            )));
        }
        let slots = slots.min(e * layers.max(1));
        let arena = ExpertArena::new(
            ctx,
            spec.hidden,
            spec.inter,
            slots,
            spec.format,
            spec.expert_bias,
        )?;
        Ok(Self {
            arena: Arc::new(arena),
            cache: Arc::new(Mutex::new(ExpertCache::new(e * layers, slots, policy)?)),
            experts: e,
            layers,
        })
    }

    /// The pool `placement` asks for, if it asks for one, for `layers` layers like `spec`.
    pub fn for_placement(
        ctx: &Context,
        spec: &MoeLayerSpec,
        layers: usize,
        placement: Placement,
        policy: Policy,
    ) -> Result<Option<Self>> {
        match placement {
            Placement::Pool(slots) => Self::new(ctx, spec, layers, slots, policy).map(Some),
            Placement::PerLayer(_) => Ok(None),
        }
    }

    /// Slots in the pool.
    pub fn slots(&self) -> usize {
        self.arena.slots
    }

    /// The view of the pool's layer `index` (0-based among the pool's layers).
    pub(crate) fn view(&self, index: usize) -> Result<CacheView> {
        if index >= self.layers {
            return Err(Error::input(format!(
                "pool layer {index} is out of range ({} layers)",
                self.layers
            )));
        }
        Ok(CacheView {
            cache: self.cache.clone(),
            base: index * self.experts,
            experts: self.experts,
        })
    }

    /// Experts of each of the pool's layers now resident.
    pub fn occupancy(&self) -> Vec<usize> {
        let cache = lock(&self.cache);
        (0..self.layers)
            .map(|l| cache.resident_in(l * self.experts..(l + 1) * self.experts))
            .collect()
    }
}

/// One layer's part of an expert cache: its own, or its share of an [`ExpertPool`]. Plans and
/// uploads name the layer's experts by their own ids; slots are the arena's.
pub(crate) struct CacheView {
    cache: Arc<Mutex<ExpertCache>>,
    /// Cache id of the layer's expert 0.
    base: usize,
    experts: usize,
}

impl CacheView {
    /// A cache of `slots` slots for one layer of `experts` experts alone.
    pub fn own(experts: usize, slots: usize, policy: Policy) -> Result<Self> {
        Ok(Self {
            cache: Arc::new(Mutex::new(ExpertCache::new(experts, slots, policy)?)),
            base: 0,
            experts,
        })
    }

    fn ids(&self) -> Range<usize> {
        self.base..self.base + self.experts
    }

    /// Plans a step of this layer that needs `needed` (its own expert ids).
    pub fn plan_step(&self, needed: &[usize]) -> Result<StepPlan> {
        let global: Vec<usize> = needed.iter().map(|&e| e + self.base).collect();
        let mut plan = lock(&self.cache).plan_step(&global)?;
        for round in &mut plan.rounds {
            round.experts.iter_mut().for_each(|e| *e -= self.base);
            round.uploads.iter_mut().for_each(|u| self.to_local(u));
        }
        Ok(plan)
    }

    /// Brings `predicted` (own ids, in order of priority) in ahead of the next step.
    pub fn prefetch(&self, predicted: &[usize]) -> Result<Vec<Upload>> {
        let global: Vec<usize> = predicted.iter().map(|&e| e + self.base).collect();
        let mut uploads = lock(&self.cache).prefetch(&global)?;
        uploads.iter_mut().for_each(|u| self.to_local(u));
        Ok(uploads)
    }

    /// Whether the layer's expert `expert` is resident now.
    pub fn holds(&self, expert: usize) -> bool {
        lock(&self.cache).slot_of(self.base + expert).is_some()
    }

    /// The layer's experts now resident.
    pub fn resident(&self) -> usize {
        lock(&self.cache).resident_in(self.ids())
    }

    /// An upload of one of this layer's experts, named by its own id; `evicted` keeps only an
    /// expert of this layer (another layer's eviction is that layer's business).
    fn to_local(&self, up: &mut Upload) {
        up.expert -= self.base;
        up.evicted = up
            .evicted
            .filter(|e| self.ids().contains(e))
            .map(|e| e - self.base);
    }
}

/// The cache, even if a thread panicked while holding it (its state is plain data, consistent
/// between calls).
fn lock(cache: &Mutex<ExpertCache>) -> MutexGuard<'_, ExpertCache> {
    cache
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}
