//! Routing: the select kernel for each routing family (ids exact per token, weights within
//! 1e-5), and the permutation (scan → scatter) exactly as `reference::permutation` gives it.

use moe_gpu::moe::{DynamicActivation, GroupScore, RoutingSpec, Scoring};
use moe_gpu::reference::route;
use moe_gpu::synthetic::Rng;

use super::matmul::{Routing, edge_routings, real_routings};
use super::{Measured, Table, model_label, real_models};
use crate::kernel_permute::{check_result, gpu_permute, shape};
use crate::kernel_select::gpu_route;

/// The routing weights' limit (tests/kernels/kernel_select.rs).
const WEIGHT_TOL: f64 = 1e-5;

/// The three routing families for `experts` and `k`: softmax → top-k (renormalised),
/// sigmoid with a correction bias and group-limited top-k, and top-k → softmax.
fn families(experts: usize, k: usize) -> Vec<(&'static str, RoutingSpec)> {
    // The most groups (8, 4 or 2) of at least 2 experts whose better half holds k candidates.
    let (n_group, topk_group) = [8usize, 4, 2]
        .into_iter()
        .filter(|g| experts.is_multiple_of(*g) && experts / g >= 2)
        .map(|g| (g, g / 2))
        .find(|(g, tg)| tg * (experts / g) >= k)
        .unwrap_or((1, 1));
    vec![
        ("softmax", RoutingSpec::softmax(experts, k, true)),
        (
            "sigmoid+corr+groups",
            RoutingSpec {
                scoring: Scoring::Sigmoid,
                correction_bias: true,
                group: GroupScore::TopTwoSum,
                n_group,
                topk_group,
                renormalize: true,
                renorm_eps: 1e-20,
                scale: 2.5,
                ..RoutingSpec::softmax(experts, k, false)
            },
        ),
        (
            "topk_softmax",
            RoutingSpec {
                scoring: Scoring::TopKThenSoftmax,
                ..RoutingSpec::softmax(experts, k, false)
            },
        ),
    ]
}

/// Per token, the ids as sets must match; the weights, matched by id, within the limit.
pub(super) fn compare_routing(
    k: usize,
    ids: &[u32],
    w: &[f32],
    want_ids: &[u32],
    want_w: &[f32],
) -> Measured {
    let mut m = Measured::new("w_max_abs", 0.0, WEIGHT_TOL);
    if ids.len() != want_ids.len() {
        m.note = Some(format!("{} ids, want {}", ids.len(), want_ids.len()));
        return m;
    }
    let mut bad = Vec::new();
    for t in 0..want_ids.len() / k {
        let pairs = |ids: &[u32], w: &[f32]| {
            let mut p: Vec<(u32, f32)> = (t * k..(t + 1) * k).map(|i| (ids[i], w[i])).collect();
            p.sort_by_key(|p| p.0);
            p
        };
        let (got, want) = (pairs(ids, w), pairs(want_ids, want_w));
        for ((gi, gw), (wi, ww)) in got.iter().zip(&want) {
            if gi != wi {
                bad.push(t);
                break;
            }
            let err = (gw - ww).abs() as f64;
            m.value = if err.is_nan() {
                f64::INFINITY
            } else {
                m.value.max(err)
            };
        }
    }
    if !bad.is_empty() {
        m.note = Some(format!("expert sets differ at tokens {bad:?}"));
    }
    m
}

pub fn select(t: &mut Table) {
    // (label, tokens, experts, k)
    let mut shapes = vec![
        ("T=1 E=6 k=2".to_string(), 1, 6, 2),
        ("T=7 E=8 k=1".to_string(), 7, 8, 1),
        ("T=33 E=60 k=8".to_string(), 33, 60, 8),
    ];
    for m in real_models() {
        shapes.push((format!("T=7 {}", model_label(&m)), 7, m.experts, m.top_k));
    }
    let mut rng = Rng::new(11);
    for (label, tokens, experts, k) in shapes {
        for (family, spec) in families(experts, k) {
            let logits = rng.normals(tokens * experts, 2.0);
            let corr = rng.normals(experts, 0.15);
            let shape = format!("{label} {family}");
            t.case("select", &shape, "-", || {
                let act = DynamicActivation::default();
                let (ids, w, _) = gpu_route(&spec, &logits, tokens, Some(&corr), &act);
                let (want_ids, want_w) = route(&logits, tokens, &spec, Some(&corr), &act);
                let mut m = compare_routing(k, &ids, &w, &want_ids, &want_w);
                m.metric = "ids=,w_abs";
                m
            });
        }
    }
}

pub fn permute(t: &mut Table) {
    let mut routings = edge_routings();
    routings.extend(real_routings(33, 13));
    // Dropped picks (the runtime top-k and skip threshold leave INVALID slots).
    let mut rng = Rng::new(4);
    let dropped: Vec<u32> = (0..33 * 4)
        .map(|i| {
            if i % 3 == 1 {
                moe_gpu::kernels::INVALID
            } else {
                rng.below(16) as u32
            }
        })
        .collect();
    routings.push(Routing {
        label: "T=33 k=4 E=16 a third dropped".into(),
        experts: 16,
        k: 4,
        ids: dropped,
        missing: None,
    });
    // Tile heights: one row, and the prefill tiling's 4 with its tail of 2.
    for (block_m, tail_m) in [(1u32, 0u32), (4, 2)] {
        for r in &routings {
            let label = format!("{} tiles {block_m}/{tail_m}", r.label);
            t.case("permute", &label, "-", || {
                let s = shape(block_m, tail_m);
                let got = gpu_permute(&r.ids, r.experts, s, 1);
                // Every offset, row, inverse and tile is compared; the first difference panics.
                check_result(&got, &r.ids, r.experts, s);
                Measured::exact(0)
            });
        }
    }
}
