//! Which routed experts live in a layer's VRAM slots: the slot table, the eviction policy, and
//! the plan of one step. Pure host logic; `src/moe/offload.rs` carries the plans out on the GPU
//! and `src/moe/cachesim.rs` replays recorded routing through the same code.
//!
//! A step needs a set of experts. The resident ones are hits; each missing one is uploaded into
//! a free slot or in place of a victim chosen by the policy. A victim is never an expert of the
//! round being computed. When a step needs more experts than there are slots (a long prefill
//! on a small budget), it is served in rounds of at most `slots` experts: the GEMMs of one round
//! run before the next round's uploads overwrite its slots, so any budget of at least k slots
//! runs any token count, with the same result bit for bit.

use crate::error::{Error, Result};

/// How a victim is chosen among the resident experts that the current round does not use.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub enum Policy {
    /// Least recently used (ties: lowest slot).
    #[default]
    Lru,
    /// Least frequently used, where each use counts 1 and counts halve every `half_life`
    /// steps, so that experts that were popular long ago age out (ties: least recently used).
    /// Counts are kept for every expert, resident or not.
    Lfu {
        /// Steps after which a use counts half.
        half_life: f64,
    },
}

/// Half-life, in steps of the layer, of [`Policy::Lfu`] use counts when none is given.
pub const DEFAULT_LFU_HALF_LIFE: f64 = 64.0;

impl Policy {
    /// `lru` or `lfu` (aging with `half_life` steps).
    pub fn parse(name: &str, half_life: f64) -> Result<Self> {
        if !(half_life.is_finite() && half_life > 0.0) {
            return Err(Error::input(format!(
                "LFU half-life {half_life} must be a positive number of steps"
            )));
        }
        match name.to_ascii_lowercase().as_str() {
            "lru" => Ok(Policy::Lru),
            "lfu" => Ok(Policy::Lfu { half_life }),
            other => Err(Error::input(format!(
                "cache policy `{other}` is not one of: lru, lfu"
            ))),
        }
    }

    /// Name for reports, e.g. `lru` or `lfu (half-life 64 steps)`.
    pub fn name(&self) -> String {
        match self {
            Policy::Lru => "lru".to_string(),
            Policy::Lfu { half_life } => format!("lfu (half-life {half_life} steps)"),
        }
    }
}

/// One expert copied into a slot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Upload {
    /// The expert uploaded.
    pub expert: usize,
    /// The slot it goes to.
    pub slot: usize,
    /// The expert whose slot this was.
    pub evicted: Option<usize>,
}

/// Experts resident together and computed together: the uploads are done first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    /// The experts computed in this round.
    pub experts: Vec<usize>,
    /// The slot of each of `experts` during this round (a later round may reuse it).
    pub slots: Vec<usize>,
    /// Uploads to make before the round's GEMMs.
    pub uploads: Vec<Upload>,
}

impl Round {
    /// The expert → slot table the GEMMs read during this round: only its experts mapped.
    pub fn table(&self, experts: usize) -> Vec<u32> {
        let mut table = vec![crate::spec::INVALID; experts];
        for (&e, &s) in self.experts.iter().zip(&self.slots) {
            table[e] = s as u32;
        }
        table
    }
}

/// How one step is served.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StepPlan {
    /// One round when the step needs at most `slots` experts.
    pub rounds: Vec<Round>,
    /// Needed experts that were resident when the step began.
    pub hits: usize,
    /// Of the hits, those resident only because a prefetch brought them in.
    pub prefetch_hits: usize,
}

impl StepPlan {
    /// Needed experts that had to be uploaded.
    pub fn misses(&self) -> usize {
        self.rounds.iter().map(|r| r.uploads.len()).sum()
    }

    /// Every upload of the step, round by round.
    pub fn uploads(&self) -> impl Iterator<Item = &Upload> {
        self.rounds.iter().flat_map(|r| &r.uploads)
    }
}

/// The residency state of one layer's expert slots.
#[derive(Debug, Clone)]
pub struct ExpertCache {
    policy: Policy,
    /// [experts] slot holding each expert.
    slot_of: Vec<Option<usize>>,
    /// [slots] expert in each slot.
    held: Vec<Option<usize>>,
    /// [experts] step of the last use (or prefetch).
    last_use: Vec<u64>,
    /// [experts] LFU count, as of `scored_at`.
    score: Vec<f64>,
    scored_at: Vec<u64>,
    /// [experts] resident because of a prefetch and not used since.
    prefetched: Vec<bool>,
    /// Steps planned so far.
    step: u64,
}

impl ExpertCache {
    /// An empty cache of `slots` slots for `experts` experts.
    pub fn new(experts: usize, slots: usize, policy: Policy) -> Result<Self> {
        if experts == 0 || slots == 0 {
            return Err(Error::input(format!(
                "an expert cache needs at least one expert and one slot (got {experts} experts, {slots} slots)"
            )));
        }
        Ok(Self {
            policy,
            slot_of: vec![None; experts],
            held: vec![None; slots],
            last_use: vec![0; experts],
            score: vec![0.0; experts],
            scored_at: vec![0; experts],
            prefetched: vec![false; experts],
            step: 0,
        })
    }

    /// Routed experts of the layer.
    pub fn experts(&self) -> usize {
        self.slot_of.len()
    }

    /// Expert slots.
    pub fn slots(&self) -> usize {
        self.held.len()
    }

    /// The eviction policy.
    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Experts now resident.
    pub fn resident(&self) -> usize {
        self.held.iter().filter(|h| h.is_some()).count()
    }

    /// Experts of `range` now resident (one layer's share of a pool).
    pub fn resident_in(&self, range: std::ops::Range<usize>) -> usize {
        self.slot_of[range].iter().filter(|s| s.is_some()).count()
    }

    /// The slot holding `expert`, if it is resident.
    pub fn slot_of(&self, expert: usize) -> Option<usize> {
        self.slot_of.get(expert).copied().flatten()
    }

    /// Plans a step that needs `needed` (distinct expert ids), evicting by the policy.
    pub fn plan_step(&mut self, needed: &[usize]) -> Result<StepPlan> {
        self.plan(needed, None)
    }

    /// As [`Self::plan_step`], evicting the expert whose next use (`next_use[e]`, a step
    /// number; `u64::MAX` for never) is farthest: Belady's MIN, for offline comparison.
    pub fn plan_step_min(&mut self, needed: &[usize], next_use: &[u64]) -> Result<StepPlan> {
        if next_use.len() != self.experts() {
            return Err(Error::input(format!(
                "next-use table has {} entries for {} experts",
                next_use.len(),
                self.experts()
            )));
        }
        self.plan(needed, Some(next_use))
    }

    fn plan(&mut self, needed: &[usize], next_use: Option<&[u64]>) -> Result<StepPlan> {
        self.check_ids(needed, "needed")?;
        let now = self.step;
        self.step += 1;
        let mut plan = StepPlan::default();
        let mut pinned = vec![false; self.experts()];
        let mut round = Round::default();
        let (hits, missing): (Vec<usize>, Vec<usize>) =
            needed.iter().partition(|&&e| self.slot_of[e].is_some());
        for &e in &hits {
            plan.hits += 1;
            plan.prefetch_hits += usize::from(self.prefetched[e]);
            pinned[e] = true;
            round.experts.push(e);
            round.slots.extend(self.slot_of[e]);
            self.touch(e, now);
        }
        for e in missing {
            if round.experts.len() == self.slots() {
                for &done in &round.experts {
                    pinned[done] = false;
                }
                plan.rounds.push(std::mem::take(&mut round));
            }
            let upload = self.place(e, &pinned, next_use);
            pinned[e] = true;
            round.experts.push(e);
            round.slots.push(upload.slot);
            round.uploads.push(upload);
            self.touch(e, now);
        }
        if !round.experts.is_empty() {
            plan.rounds.push(round);
        }
        Ok(plan)
    }

    /// Brings `predicted` (in order of priority) in ahead of the next step, at most `slots` of
    /// them, evicting by the policy but never another predicted expert. A prefetched expert
    /// counts as used now for recency, but gains no frequency until it is really used.
    pub fn prefetch(&mut self, predicted: &[usize]) -> Result<Vec<Upload>> {
        self.check_ids(predicted, "predicted")?;
        let wanted = &predicted[..predicted.len().min(self.slots())];
        let mut pinned = vec![false; self.experts()];
        for &e in wanted {
            pinned[e] = true;
            self.last_use[e] = self.step;
        }
        let mut uploads = Vec::new();
        for &e in wanted {
            if self.slot_of[e].is_none() {
                uploads.push(self.place(e, &pinned, None));
                self.prefetched[e] = true;
            }
        }
        Ok(uploads)
    }

    fn check_ids(&self, ids: &[usize], what: &str) -> Result<()> {
        let mut seen = vec![false; self.experts()];
        for &e in ids {
            if e >= self.experts() {
                return Err(Error::input(format!(
                    "{what} expert {e} is out of range ({} experts)",
                    self.experts()
                )));
            }
            if std::mem::replace(&mut seen[e], true) {
                return Err(Error::input(format!("{what} expert {e} is listed twice")));
            }
        }
        Ok(())
    }

    fn touch(&mut self, e: usize, now: u64) {
        self.last_use[e] = now;
        self.prefetched[e] = false;
        if let Policy::Lfu { half_life } = self.policy {
            self.score[e] = decayed(self.score[e], now - self.scored_at[e], half_life) + 1.0;
            self.scored_at[e] = now;
        }
    }

    /// Puts `e` into a free slot, or evicts the best victim that is not pinned.
    fn place(&mut self, e: usize, pinned: &[bool], next_use: Option<&[u64]>) -> Upload {
        let slot = match self.held.iter().position(Option::is_none) {
            Some(free) => free,
            None => self.victim(pinned, next_use),
        };
        let evicted = self.held[slot];
        if let Some(old) = evicted {
            self.slot_of[old] = None;
            self.prefetched[old] = false;
        }
        self.held[slot] = Some(e);
        self.slot_of[e] = Some(slot);
        Upload {
            expert: e,
            slot,
            evicted,
        }
    }

    /// The slot to evict. A round never holds more than `slots` experts, so when every slot is
    /// taken at least one holds an unpinned expert.
    fn victim(&self, pinned: &[bool], next_use: Option<&[u64]>) -> usize {
        let candidates = self
            .held
            .iter()
            .enumerate()
            .filter_map(|(s, h)| h.map(|e| (s, e)))
            .filter(|&(_, e)| !pinned[e]);
        let best = match (next_use, self.policy) {
            (Some(next), _) => candidates.max_by_key(|&(s, e)| (next[e], std::cmp::Reverse(s))),
            (None, Policy::Lru) => candidates.min_by_key(|&(s, e)| (self.last_use[e], s)),
            (None, Policy::Lfu { half_life }) => candidates.min_by(|&(sa, a), &(sb, b)| {
                let key =
                    |e: usize| decayed(self.score[e], self.step - self.scored_at[e], half_life);
                key(a)
                    .total_cmp(&key(b))
                    .then(self.last_use[a].cmp(&self.last_use[b]))
                    .then(sa.cmp(&sb))
            }),
        };
        best.map_or(0, |(s, _)| s)
    }
}

fn decayed(score: f64, age: u64, half_life: f64) -> f64 {
    if age == 0 {
        score
    } else {
        score * (-(age as f64) / half_life).exp2()
    }
}

#[cfg(test)]
#[path = "residency_tests.rs"]
mod tests;
