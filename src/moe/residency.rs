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
    Lfu { half_life: f64 },
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
    pub expert: usize,
    pub slot: usize,
    /// The expert whose slot this was.
    pub evicted: Option<usize>,
}

/// Experts resident together and computed together: the uploads are done first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Round {
    pub experts: Vec<usize>,
    /// The slot of each of `experts` during this round (a later round may reuse it).
    pub slots: Vec<usize>,
    pub uploads: Vec<Upload>,
}

impl Round {
    /// The expert → slot table the GEMMs read during this round: only its experts mapped.
    pub fn table(&self, experts: usize) -> Vec<u32> {
        let mut table = vec![crate::kernels::INVALID; experts];
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

    pub fn experts(&self) -> usize {
        self.slot_of.len()
    }

    pub fn slots(&self) -> usize {
        self.held.len()
    }

    pub fn policy(&self) -> Policy {
        self.policy
    }

    /// Experts now resident.
    pub fn resident(&self) -> usize {
        self.held.iter().filter(|h| h.is_some()).count()
    }

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
mod tests {
    use super::*;

    fn cache(experts: usize, slots: usize, policy: Policy) -> ExpertCache {
        ExpertCache::new(experts, slots, policy).unwrap()
    }

    fn misses(c: &mut ExpertCache, needed: &[usize]) -> usize {
        c.plan_step(needed).unwrap().misses()
    }

    #[test]
    fn first_use_misses_then_hits() {
        let mut c = cache(8, 4, Policy::Lru);
        let p = c.plan_step(&[3, 5]).unwrap();
        assert_eq!((p.hits, p.misses(), p.rounds.len()), (0, 2, 1));
        let p = c.plan_step(&[5, 3]).unwrap();
        assert_eq!((p.hits, p.misses()), (2, 0));
        assert_eq!(c.resident(), 2);
    }

    #[test]
    fn lru_evicts_the_least_recently_used() {
        let mut c = cache(8, 2, Policy::Lru);
        misses(&mut c, &[0]);
        misses(&mut c, &[1]);
        misses(&mut c, &[0]);
        let p = c.plan_step(&[2]).unwrap();
        assert_eq!(p.rounds[0].uploads[0].evicted, Some(1));
    }

    #[test]
    fn lfu_keeps_the_frequent_expert_that_lru_would_evict() {
        let trace: [&[usize]; 6] = [&[0], &[0], &[0], &[1], &[2], &[0]];
        let mut lru = cache(4, 2, Policy::Lru);
        let mut lfu = cache(4, 2, Policy::Lfu { half_life: 64.0 });
        let l: usize = trace.iter().map(|s| misses(&mut lru, s)).sum();
        let f: usize = trace.iter().map(|s| misses(&mut lfu, s)).sum();
        assert_eq!((l, f), (4, 3));
    }

    #[test]
    fn lfu_aging_lets_old_favourites_go() {
        // Expert 0 was used 50 times long ago; 1 and 2 alternate since, with 2 slots. With
        // aging 0's count fades and 1, 2 settle in; without it 0 hogs a slot and 1, 2 thrash.
        let late_misses = |half_life: f64| {
            let mut c = cache(4, 2, Policy::Lfu { half_life });
            for _ in 0..50 {
                misses(&mut c, &[0]);
            }
            let all: Vec<usize> = (0..40).map(|i| misses(&mut c, &[1 + i % 2])).collect();
            all[20..].iter().sum::<usize>()
        };
        assert_eq!(late_misses(2.0), 0);
        assert_eq!(late_misses(1e12), 20);
    }

    #[test]
    fn eviction_never_takes_an_expert_of_the_current_step() {
        for policy in [Policy::Lru, Policy::Lfu { half_life: 4.0 }] {
            let mut c = cache(16, 4, policy);
            let mut rng = crate::synthetic::Rng::new(3);
            for _ in 0..500 {
                let mut needed: Vec<usize> = Vec::new();
                while needed.len() < 1 + rng.below(4) {
                    let e = rng.below(16);
                    if !needed.contains(&e) {
                        needed.push(e);
                    }
                }
                let before: Vec<Option<usize>> = (0..16).map(|e| c.slot_of(e)).collect();
                let p = c.plan_step(&needed).unwrap();
                assert_eq!(p.rounds.len(), 1);
                for u in p.uploads() {
                    if let Some(v) = u.evicted {
                        assert!(
                            !needed.contains(&v),
                            "{policy:?} evicted {v} needed by {needed:?}"
                        );
                    }
                }
                for &e in &needed {
                    let kept = before[e].is_none() || c.slot_of(e) == before[e];
                    assert!(kept && c.slot_of(e).is_some(), "{e} not resident in place");
                }
            }
        }
    }

    #[test]
    fn a_step_needing_more_experts_than_slots_runs_in_rounds() {
        let mut c = cache(10, 3, Policy::Lru);
        misses(&mut c, &[7, 8]);
        let p = c.plan_step(&[0, 1, 7, 2, 3, 4, 8]).unwrap();
        assert_eq!((p.hits, p.misses()), (2, 5));
        let sizes: Vec<usize> = p.rounds.iter().map(|r| r.experts.len()).collect();
        assert_eq!(sizes, [3, 3, 1]);
        assert_eq!(
            &p.rounds[0].experts[..2],
            &[7, 8],
            "hits are computed first"
        );
        for (i, r) in p.rounds.iter().enumerate() {
            for u in &r.uploads {
                if let Some(v) = u.evicted {
                    assert!(!r.experts.contains(&v), "round {i} evicted its own {v}");
                }
            }
        }
        let mut all: Vec<usize> = p.rounds.iter().flat_map(|r| r.experts.clone()).collect();
        all.sort();
        assert_eq!(
            all,
            [0, 1, 2, 3, 4, 7, 8],
            "every needed expert is computed once"
        );
    }

    #[test]
    fn bad_ids_are_errors() {
        let mut c = cache(4, 2, Policy::Lru);
        assert!(c.plan_step(&[4]).is_err());
        assert!(c.plan_step(&[1, 1]).is_err());
        assert!(c.prefetch(&[9]).is_err());
        assert!(ExpertCache::new(4, 0, Policy::Lru).is_err());
        assert!(Policy::parse("fifo", 1.0).is_err());
        assert!(Policy::parse("lfu", 0.0).is_err());
    }

    #[test]
    fn prefetched_experts_count_as_prefetch_hits_once() {
        let mut c = cache(8, 3, Policy::Lru);
        misses(&mut c, &[0, 1, 2]);
        let ups = c.prefetch(&[5, 0]).unwrap();
        assert_eq!(ups.len(), 1);
        assert_eq!(
            ups[0].evicted,
            Some(1),
            "LRU victim among unpredicted experts"
        );
        let p = c.plan_step(&[5, 2]).unwrap();
        assert_eq!((p.hits, p.prefetch_hits, p.misses()), (2, 1, 0));
        let p = c.plan_step(&[5]).unwrap();
        assert_eq!(p.prefetch_hits, 0, "a second use is an ordinary hit");
    }

    #[test]
    fn prefetch_brings_in_at_most_slots_experts() {
        let mut c = cache(8, 2, Policy::Lru);
        let ups = c.prefetch(&[4, 5, 6]).unwrap();
        assert_eq!(ups.len(), 2);
        assert_eq!(c.resident(), 2);
        assert!(c.slot_of(6).is_none());
    }

    #[test]
    fn each_round_keeps_the_slots_it_was_computed_with() {
        // Round 0's experts are evicted by round 1, so its table must come from the round,
        // not from the cache's state after the step.
        let mut c = cache(6, 2, Policy::Lru);
        misses(&mut c, &[1]);
        let p = c.plan_step(&[1, 4, 5]).unwrap();
        let t0 = p.rounds[0].table(6);
        assert_eq!(p.rounds[0].experts, [1, 4]);
        assert!(t0[1] != t0[4] && t0[1] < 2 && t0[4] < 2);
        assert_eq!(t0[5], crate::kernels::INVALID);
        let t1 = p.rounds[1].table(6);
        assert_eq!(p.rounds[1].experts, [5]);
        assert_eq!(
            (t1[1], t1[4]),
            (crate::kernels::INVALID, crate::kernels::INVALID)
        );
        assert_eq!(t1[5] as usize, c.slot_of(5).unwrap());
    }
}
