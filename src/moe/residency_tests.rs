//! Unit tests of the expert cache: policies, pinning, rounds, prefetch.

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
    assert_eq!(t0[5], crate::spec::INVALID);
    let t1 = p.rounds[1].table(6);
    assert_eq!(p.rounds[1].experts, [5]);
    assert_eq!((t1[1], t1[4]), (crate::spec::INVALID, crate::spec::INVALID));
    assert_eq!(t1[5] as usize, c.slot_of(5).unwrap());
}
