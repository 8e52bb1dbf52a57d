//! The select kernel against `reference::route` for every routing family, runtime top-k,
//! skip threshold and top-p, over shape sweeps, exact ties and NaN logits.

use moe_gpu::kernels::INVALID;
use moe_gpu::kernels::select::{Select, SelectBuffers};
use moe_gpu::moe::{DynamicActivation, GroupScore, RoutingSpec, Scoring};
use moe_gpu::reference::route;
use moe_gpu::synthetic::Rng;

use crate::common;

/// What one run of the kernel wrote: ids, weights, shared gate, (with counting) counts and
/// (with a status word) the word.
pub(crate) struct Routed {
    ids: Vec<u32>,
    weights: Vec<f32>,
    gate: Vec<f32>,
    counts: Vec<u32>,
    pub status: Option<u32>,
}

/// Runs the kernel on `logits` ([tokens, experts], plus a shared-gate column when the spec has
/// one), counting into a buffer that starts at `counts` where given, and with `status` =
/// (start, tag) reporting non-finite logits into a word that starts at `start`.
pub(crate) fn run_select(
    spec: &RoutingSpec,
    logits: &[f32],
    tokens: usize,
    correction: Option<&[f32]>,
    act: &DynamicActivation,
    counts: Option<&[u32]>,
    status: Option<(u32, u32)>,
) -> Routed {
    let ctx = common::ctx();
    let (k, e) = (spec.top_k, spec.experts);
    let logits_buf = ctx.storage_with("logits", logits).unwrap();
    let corr = ctx
        .storage_with("corr", correction.unwrap_or(&[0.0]))
        .unwrap();
    let ids = ctx.storage("ids", (tokens * k * 4) as u64).unwrap();
    let weights = ctx.storage("w", (tokens * k * 4) as u64).unwrap();
    let gate = ctx.storage("gate", (tokens * 4) as u64).unwrap();
    let counts_buf = counts.map(|start| ctx.storage_with("counts", start).unwrap());
    let status_buf = status.map(|(start, _)| ctx.storage_with("status", &[start]).unwrap());
    let select = Select::new(
        ctx,
        spec,
        SelectBuffers {
            logits: &logits_buf,
            correction: &corr,
            ids: &ids,
            weights: &weights,
            shared_gate: &gate,
            counts: counts_buf.as_ref(),
            permute: None,
            status: status_buf.as_ref().zip(status.map(|(_, tag)| tag)),
        },
    )
    .unwrap();
    let kk = act.effective_k(k).unwrap();
    common::run_pass(ctx, |pass| {
        select.encode(ctx, pass, tokens, kk, act, None);
    });
    Routed {
        ids: ctx.read_back(&ids, tokens * k).unwrap(),
        weights: ctx.read_back(&weights, tokens * k).unwrap(),
        gate: ctx.read_back(&gate, tokens).unwrap(),
        counts: counts_buf.map_or_else(Vec::new, |c| ctx.read_back(&c, e).unwrap()),
        status: status_buf.map(|b| ctx.read_back::<u32>(&b, 1).unwrap()[0]),
    }
}

/// Runs the kernel without counting and returns (ids, weights, shared gate).
pub(crate) fn gpu_route(
    spec: &RoutingSpec,
    logits: &[f32],
    tokens: usize,
    correction: Option<&[f32]>,
    act: &DynamicActivation,
) -> (Vec<u32>, Vec<f32>, Vec<f32>) {
    let r = run_select(spec, logits, tokens, correction, act, None, None);
    (r.ids, r.weights, r.gate)
}

fn check(
    spec: &RoutingSpec,
    logits: &[f32],
    tokens: usize,
    correction: Option<&[f32]>,
    act: &DynamicActivation,
) {
    let (ids, w, _) = gpu_route(spec, logits, tokens, correction, act);
    let (want_ids, want_w) = route(logits, tokens, spec, correction, act);
    let what = format!("{} T={tokens} {act:?}", spec.describe());
    common::assert_same_routing(&what, spec.top_k, &ids, &w, &want_ids, &want_w, 1e-5);
}

fn families(e: usize, k: usize) -> Vec<RoutingSpec> {
    let mut v = vec![
        RoutingSpec::softmax(e, k, false),
        RoutingSpec::softmax(e, k, true),
    ];
    v.push(RoutingSpec {
        scoring: Scoring::TopKThenSoftmax,
        ..RoutingSpec::softmax(e, k, false)
    });
    v.push(RoutingSpec {
        scale: 2.5,
        ..RoutingSpec::softmax(e, k, false)
    });
    // Group-limited families need a group count dividing E that leaves enough candidates.
    for g in [2usize, 3, 4] {
        if !e.is_multiple_of(g) || e / g < 2 {
            continue;
        }
        let topk_group = (g / 2).max(1);
        if topk_group * (e / g) < k {
            continue;
        }
        v.push(RoutingSpec {
            group: GroupScore::Max,
            n_group: g,
            topk_group,
            scale: 4.0,
            ..RoutingSpec::softmax(e, k, false)
        });
        v.push(RoutingSpec {
            scoring: Scoring::Sigmoid,
            correction_bias: true,
            group: GroupScore::TopTwoSum,
            n_group: g,
            topk_group,
            renormalize: true,
            renorm_eps: 1e-20,
            scale: 2.5,
            ..RoutingSpec::softmax(e, k, false)
        });
    }
    v
}

#[test]
fn select_matches_reference_over_families_and_shapes() {
    let mut rng = Rng::new(11);
    for tokens in [1usize, 2, 7, 33, 130] {
        for e in [4usize, 6, 8, 16, 60] {
            for k in [1usize, 2, 4, 8].into_iter().filter(|k| *k <= e) {
                for spec in families(e, k) {
                    let logits = rng.normals(tokens * e, 2.0);
                    let corr = rng.normals(e, 0.15);
                    check(
                        &spec,
                        &logits,
                        tokens,
                        Some(&corr),
                        &DynamicActivation::default(),
                    );
                }
            }
        }
    }
}

#[test]
fn exact_ties_pick_the_lower_expert_id() {
    // Every logit equal: the first k experts win, in order, with equal weights.
    for spec in families(8, 3) {
        let logits = vec![0.5f32; 2 * 8];
        let corr = vec![0.0f32; 8];
        let (ids, _, _) = gpu_route(
            &spec,
            &logits,
            2,
            Some(&corr),
            &DynamicActivation::default(),
        );
        if spec.group == GroupScore::None {
            assert_eq!(&ids[..3], &[0, 1, 2], "{}", spec.describe());
        }
        check(
            &spec,
            &logits,
            2,
            Some(&corr),
            &DynamicActivation::default(),
        );
    }
}

#[test]
fn near_ties_are_resolved_like_the_reference() {
    let spec = RoutingSpec::softmax(16, 4, true);
    let mut rng = Rng::new(3);
    let mut logits = rng.normals(33 * 16, 1.0);
    // Experts 3 and 4 differ by one ulp-scale step on every token.
    for t in 0..33 {
        logits[t * 16 + 4] = logits[t * 16 + 3] + 1e-6;
    }
    check(&spec, &logits, 33, None, &DynamicActivation::default());
}

#[test]
fn nan_logits_never_select_out_of_range_or_duplicate_experts() {
    let spec = RoutingSpec::softmax(6, 3, true);
    let mut logits = vec![f32::NAN; 6];
    logits[4] = 1.0;
    let (ids, _, _) = gpu_route(&spec, &logits, 1, None, &DynamicActivation::default());
    let mut sorted = ids.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), 3, "distinct ids {ids:?}");
    assert!(ids.iter().all(|&i| i < 6), "ids in range {ids:?}");
    assert_eq!(ids[0], 4, "the only finite logit wins");
}

#[test]
fn runtime_top_k_skip_threshold_and_top_p_match_reference() {
    let mut rng = Rng::new(5);
    for spec in families(16, 4) {
        let logits = rng.normals(33 * 16, 2.0);
        let corr = rng.normals(16, 0.15);
        for act in [
            DynamicActivation {
                top_k: Some(2),
                ..Default::default()
            },
            DynamicActivation {
                skip_beta: 0.3,
                ..Default::default()
            },
            DynamicActivation {
                top_p: 0.6,
                ..Default::default()
            },
            DynamicActivation {
                top_k: Some(3),
                skip_beta: 0.2,
                top_p: 0.9,
            },
        ] {
            check(&spec, &logits, 33, Some(&corr), &act);
        }
    }
}

#[test]
fn skip_threshold_zero_and_top_p_one_equal_plain_top_k() {
    let mut rng = Rng::new(8);
    let spec = RoutingSpec::softmax(60, 8, true);
    let logits = rng.normals(130 * 60, 2.0);
    let plain = gpu_route(&spec, &logits, 130, None, &DynamicActivation::default());
    let same = gpu_route(
        &spec,
        &logits,
        130,
        None,
        &DynamicActivation {
            skip_beta: 0.0,
            top_p: 1.0,
            top_k: None,
        },
    );
    assert_eq!(plain.0, same.0);
    assert_eq!(plain.1, same.1);
    assert!(plain.0.iter().all(|&i| i != INVALID));
}

#[test]
fn shared_gate_is_the_sigmoid_of_the_extra_logit() {
    let spec = RoutingSpec {
        shared_gate: true,
        ..RoutingSpec::softmax(4, 2, false)
    };
    let logits = vec![0.1f32, 0.2, 0.3, 0.4, -1.5, 1.0, 0.0, 0.0, 0.0, 2.0];
    let (_, _, gate) = gpu_route(&spec, &logits, 2, None, &DynamicActivation::default());
    let sig = |v: f32| 1.0 / (1.0 + (-v).exp());
    common::assert_close("shared gate", &gate, &[sig(-1.5), sig(2.0)], 1e-6);
}

/// Runs the kernel with counting on and returns (ids, counts), the counts starting at `start`.
fn gpu_count(
    spec: &RoutingSpec,
    logits: &[f32],
    tokens: usize,
    act: &DynamicActivation,
    start: &[u32],
) -> (Vec<u32>, Vec<u32>) {
    let correction = vec![0.05f32; spec.experts];
    let r = run_select(
        spec,
        logits,
        tokens,
        Some(&correction),
        act,
        Some(start),
        None,
    );
    (r.ids, r.counts)
}

/// With counting on, every kept pick adds one to its expert's count and dropped picks add
/// nothing: the counts are the histogram of the ids, on top of what the buffer held.
#[test]
fn counting_adds_the_histogram_of_the_kept_picks() {
    let mut rng = Rng::new(21);
    let drops = DynamicActivation {
        top_k: Some(3),
        skip_beta: 0.2,
        top_p: 0.9,
    };
    for (e, k) in [(4usize, 1usize), (16, 4), (60, 8)] {
        for spec in families(e, k) {
            for tokens in [1usize, 7, 130] {
                for act in [DynamicActivation::default(), drops] {
                    if act.effective_k(k).is_err() {
                        continue;
                    }
                    let logits = rng.normals(tokens * e, 2.0);
                    let start: Vec<u32> = (0..e as u32).map(|i| i % 3).collect();
                    let (ids, counts) = gpu_count(&spec, &logits, tokens, &act, &start);
                    // The ids themselves are checked against the reference by the tests above.
                    let mut want = start.clone();
                    for &id in ids.iter().filter(|&&id| id != INVALID) {
                        want[id as usize] += 1;
                    }
                    let what = format!("{} T={tokens} {act:?}", spec.describe());
                    assert_eq!(counts, want, "{what}: counts");
                    let kept = ids.iter().filter(|&&id| id != INVALID).count() as u32;
                    let added: u32 = counts.iter().sum::<u32>() - start.iter().sum::<u32>();
                    assert_eq!(added, kept, "{what}: one count per kept pick");
                }
            }
        }
    }
}

/// One token whose picks all land on the same few experts of many, most experts empty.
#[test]
fn counting_one_token_leaves_unpicked_experts_at_zero() {
    let spec = RoutingSpec::softmax(64, 8, true);
    let logits: Vec<f32> = (0..64)
        .map(|i| if i < 8 { 5.0 + i as f32 } else { -3.0 })
        .collect();
    let (ids, counts) = gpu_count(&spec, &logits, 1, &DynamicActivation::default(), &[0; 64]);
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!(sorted, (0..8).collect::<Vec<u32>>());
    assert!(counts[..8].iter().all(|&c| c == 1) && counts[8..].iter().all(|&c| c == 0));
}
