//! Replays a routing trace through each cache policy, with the planner the GPU runtime uses,
//! and through Belady's MIN (evict the expert needed farthest in the future), the optimum for
//! a known future. Every traced layer has its own `slots` slots, as at run time.
//!
//! MIN is optimal where every step needs at most `slots` experts (decode, small batches). A
//! step needing more is served in rounds (see `residency.rs`) by every policy alike; there MIN
//! is the same farthest-next-use rule, a strong reference rather than a proven optimum.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::moe::residency::{ExpertCache, Policy};
use crate::moe::routing_trace::RoutingTrace;

/// What a replay counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Replay {
    /// Accesses to a resident expert.
    pub hits: u64,
    /// Accesses that needed an upload.
    pub misses: u64,
}

impl Replay {
    /// hits / (hits + misses), 0 with no accesses.
    pub fn hit_rate(&self) -> f64 {
        let total = self.hits + self.misses;
        if total == 0 {
            0.0
        } else {
            self.hits as f64 / total as f64
        }
    }
}

/// One policy's result next to the optimum.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyResult {
    /// The policy's name (see [`crate::moe::Policy::name`]).
    pub policy: String,
    /// Accesses to a resident expert.
    pub hits: u64,
    /// Accesses that needed an upload.
    pub misses: u64,
    /// hits / (hits + misses).
    pub hit_rate: f64,
    /// hit_rate / MIN's hit_rate; absent when MIN hits nothing.
    pub ratio_to_optimal: Option<f64>,
}

/// Every policy at one slot count.
#[derive(Debug, Clone, Serialize)]
pub struct SimReport {
    /// Expert slots per layer.
    pub slots: usize,
    /// MoE layers in the trace.
    pub layers: usize,
    /// Steps in the trace.
    pub steps: usize,
    /// (layer, expert) accesses in the trace.
    pub accesses: u64,
    /// Belady's MIN.
    pub optimal: PolicyResult,
    /// Each simulated policy.
    pub policies: Vec<PolicyResult>,
}

/// Replays `trace` with `slots` slots per layer under `policy`.
pub fn replay(trace: &RoutingTrace, slots: usize, policy: Policy) -> Result<Replay> {
    check_slots(trace, slots)?;
    let mut total = Replay::default();
    for layer in 0..trace.layers.len() {
        let mut cache = ExpertCache::new(trace.experts, slots, policy)?;
        for step in &trace.steps {
            let plan = cache.plan_step(&step.experts[layer])?;
            total.hits += plan.hits as u64;
            total.misses += plan.misses() as u64;
        }
    }
    Ok(total)
}

/// Replays `trace` with `slots` slots per layer under Belady's MIN.
pub fn replay_optimal(trace: &RoutingTrace, slots: usize) -> Result<Replay> {
    check_slots(trace, slots)?;
    let mut total = Replay::default();
    for layer in 0..trace.layers.len() {
        // uses[e]: the steps that need e, ascending; next[e]: index of its next one.
        let mut uses = vec![Vec::new(); trace.experts];
        for (s, step) in trace.steps.iter().enumerate() {
            for &e in &step.experts[layer] {
                uses[e].push(s as u64);
            }
        }
        let mut next = vec![0usize; trace.experts];
        let next_use = |uses: &[Vec<u64>], next: &[usize]| -> Vec<u64> {
            (0..trace.experts)
                .map(|e| uses[e].get(next[e]).copied().unwrap_or(u64::MAX))
                .collect()
        };
        let mut cache = ExpertCache::new(trace.experts, slots, Policy::Lru)?;
        for step in &trace.steps {
            let needed = &step.experts[layer];
            for &e in needed {
                next[e] += 1;
            }
            let plan = cache.plan_step_min(needed, &next_use(&uses, &next))?;
            total.hits += plan.hits as u64;
            total.misses += plan.misses() as u64;
        }
    }
    Ok(total)
}

/// Each of `policies` and MIN on `trace` at `slots` slots per layer.
pub fn compare(trace: &RoutingTrace, slots: usize, policies: &[Policy]) -> Result<SimReport> {
    trace.validate()?;
    let best = replay_optimal(trace, slots)?;
    let result = |name: String, r: Replay| PolicyResult {
        policy: name,
        hits: r.hits,
        misses: r.misses,
        hit_rate: r.hit_rate(),
        ratio_to_optimal: (best.hit_rate() > 0.0).then(|| r.hit_rate() / best.hit_rate()),
    };
    let mut out = Vec::new();
    for &p in policies {
        out.push(result(p.name(), replay(trace, slots, p)?));
    }
    Ok(SimReport {
        slots,
        layers: trace.layers.len(),
        steps: trace.steps.len(),
        accesses: best.hits + best.misses,
        optimal: result("belady (MIN)".to_string(), best),
        policies: out,
    })
}

fn check_slots(trace: &RoutingTrace, slots: usize) -> Result<()> {
    if slots < trace.top_k {
        return Err(Error::input(format!(
            "{slots} slots per layer is below k = {}: a token's k experts must be resident at once",
            trace.top_k
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::moe::routing_trace::{TraceStep, ZipfTrace};

    /// A one-layer trace of single-expert steps, k = 1.
    fn pages(experts: usize, seq: &[usize]) -> RoutingTrace {
        let mut t = RoutingTrace::new(experts, 1, vec![0]);
        t.steps = seq
            .iter()
            .map(|&e| TraceStep {
                tokens: 1,
                experts: vec![vec![e]],
            })
            .collect();
        t
    }

    #[test]
    fn textbook_reference_strings_have_known_optimal_faults() {
        // Silberschatz, Operating System Concepts: 3 frames, OPT 9 faults, LRU 12.
        let s = [7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2, 1, 2, 0, 1, 7, 0, 1];
        let t = pages(8, &s);
        assert_eq!(replay_optimal(&t, 3).unwrap().misses, 9);
        assert_eq!(replay(&t, 3, Policy::Lru).unwrap().misses, 12);
        // Belady's anomaly string: OPT 7 faults with 3 frames and 6 with 4; LRU 10 and 8.
        let s = [1, 2, 3, 4, 1, 2, 5, 1, 2, 3, 4, 5];
        let t = pages(6, &s);
        assert_eq!(replay_optimal(&t, 3).unwrap().misses, 7);
        assert_eq!(replay_optimal(&t, 4).unwrap().misses, 6);
        assert_eq!(replay(&t, 3, Policy::Lru).unwrap().misses, 10);
        assert_eq!(replay(&t, 4, Policy::Lru).unwrap().misses, 8);
    }

    #[test]
    fn multi_expert_steps_keep_the_whole_set_resident() {
        // k = 2, 3 slots: {0,1} {2,3} {0,1}. MIN evicts 1 of {0,1} for 2 then must keep 2, 3
        // together: 0,1,2,3 cold, then at step 3 only one of 0/1 can remain: 5 misses.
        let mut t = RoutingTrace::new(4, 2, vec![0]);
        for set in [vec![0, 1], vec![2, 3], vec![0, 1]] {
            t.steps.push(TraceStep {
                tokens: 1,
                experts: vec![set],
            });
        }
        assert_eq!(replay_optimal(&t, 3).unwrap().misses, 5);
        assert_eq!(replay(&t, 3, Policy::Lru).unwrap().misses, 5);
    }

    #[test]
    fn no_policy_beats_the_optimum_and_the_optimum_grows_with_slots() {
        for (seed, exponent, tokens) in [(1, 0.0, 1), (2, 0.9, 1), (3, 1.4, 1), (4, 1.1, 3)] {
            let trace = ZipfTrace {
                experts: 24,
                top_k: 3,
                layers: 2,
                steps: 300,
                tokens_per_step: tokens,
                exponent,
                seed,
            }
            .generate()
            .unwrap();
            let mut last = 0;
            for slots in [9, 12, 16, 24] {
                let best = replay_optimal(&trace, slots).unwrap();
                assert_eq!(best.hits + best.misses, trace.accesses() as u64);
                for p in [Policy::Lru, Policy::Lfu { half_life: 32.0 }] {
                    let r = replay(&trace, slots, p).unwrap();
                    assert!(
                        r.hits <= best.hits,
                        "{p:?} {} hits > MIN {} (seed {seed}, {slots} slots)",
                        r.hits,
                        best.hits
                    );
                }
                assert!(best.hits >= last, "MIN is a stack algorithm");
                last = best.hits;
            }
            // With every expert resident only the cold misses remain.
            let all = replay_optimal(&trace, 24).unwrap();
            let distinct: u64 = (0..2)
                .map(|l| {
                    let mut seen = [false; 24];
                    trace
                        .steps
                        .iter()
                        .flat_map(|s| &s.experts[l])
                        .for_each(|&e| seen[e] = true);
                    seen.iter().filter(|&&b| b).count() as u64
                })
                .sum();
            assert_eq!(all.misses, distinct);
        }
    }

    #[test]
    fn compare_reports_ratios_to_the_optimum() {
        let t = pages(
            8,
            &[7, 0, 1, 2, 0, 3, 0, 4, 2, 3, 0, 3, 2, 1, 2, 0, 1, 7, 0, 1],
        );
        let r = compare(&t, 3, &[Policy::Lru]).unwrap();
        assert_eq!(r.accesses, 20);
        assert_eq!(r.optimal.hits, 11);
        let lru = &r.policies[0];
        assert_eq!(lru.hits, 8);
        assert!((lru.ratio_to_optimal.unwrap() - 8.0 / 11.0).abs() < 1e-12);
    }

    #[test]
    fn fewer_slots_than_k_is_an_error() {
        let mut t = pages(8, &[1, 2]);
        t.top_k = 2;
        t.steps.iter_mut().for_each(|s| s.experts[0].push(0));
        let err = replay(&t, 1, Policy::Lru).unwrap_err().to_string();
        assert!(err.contains("below k = 2"), "{err}");
    }
}
