//! scan → scatter (one kernel up to `SCAN_SCATTER_MAX_PAIRS` pairs, two above) against
//! `reference::permutation`: CSR segments, the inverse permutation, the tile list and the
//! indirect dispatch sizes, for random routings, empty experts, all pairs on one expert and
//! dropped (INVALID) slots. The counts they start from (the select kernel's, tested in
//! tests/kernel_select.rs) are written by the host here. A selection of at most 64 tokens
//! builds the same permutation itself (last test).

mod common;

use moe_gpu::kernels::INVALID;
use moe_gpu::kernels::permute::{self, Permute, PermuteBuffers, SCAN_SCATTER_MAX_PAIRS};
use moe_gpu::kernels::select::{PermuteShape, Select, SelectBuffers, SelectPermuteBuffers};
use moe_gpu::moe::{DynamicActivation, RoutingSpec};
use moe_gpu::reference::permutation;
use moe_gpu::synthetic::Rng;

struct Result {
    offsets: Vec<u32>,
    rows: Vec<u32>,
    pos: Vec<u32>,
    tiles: Vec<[u32; 4]>,
    args: Vec<u32>,
}

fn gpu_permute(ids: &[u32], experts: usize, block_m: u32, steps: usize) -> Result {
    let ctx = common::ctx();
    let pairs = ids.len();
    let max_tiles = permute::max_tiles(pairs, block_m, experts);
    let ids_b = ctx.storage_with("ids", ids).unwrap();
    let counts = ctx.storage("counts", (experts * 4) as u64).unwrap();
    let offsets = ctx.storage("offsets", ((experts + 1) * 4) as u64).unwrap();
    let cursor = ctx.storage("cursor", (experts * 4) as u64).unwrap();
    let tiles = ctx.storage("tiles", (max_tiles * 16) as u64).unwrap();
    let args = ctx.indirect_storage("args", 24).unwrap();
    let rows = ctx.storage("rows", (pairs * 4) as u64).unwrap();
    let pos = ctx.storage("pos", (pairs * 4) as u64).unwrap();
    let p = Permute::new(
        ctx,
        experts,
        PermuteBuffers {
            ids: &ids_b,
            counts: &counts,
            offsets: &offsets,
            cursor: &cursor,
            tiles: &tiles,
            args: &args,
            rows: &rows,
            pos: &pos,
        },
    )
    .unwrap();
    let (host_counts, _) = permutation(ids, experts);
    // Several steps in a row: the scan must leave the counts zeroed for the next one, so the
    // host adds this step's counts to what is there.
    for step in 0..steps {
        let left: Vec<u32> = ctx.read_back(&counts, experts).unwrap();
        if step > 0 {
            assert!(left.iter().all(|&c| c == 0), "the scan zeroes the counts");
        }
        ctx.queue
            .write_buffer(&counts, 0, bytemuck::cast_slice(&host_counts));
        common::run_pass(ctx, |pass| p.encode(ctx, pass, pairs, block_m, (3, 5)));
    }
    let args_v: Vec<u32> = ctx.read_back(&args, 6).unwrap();
    let tiles_flat: Vec<u32> = ctx.read_back(&tiles, args_v[0] as usize * 4).unwrap();
    Result {
        offsets: ctx.read_back(&offsets, experts + 1).unwrap(),
        rows: ctx.read_back(&rows, pairs).unwrap(),
        pos: ctx.read_back(&pos, pairs).unwrap(),
        tiles: tiles_flat
            .chunks(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
        args: args_v,
    }
}

fn check(ids: &[u32], experts: usize, block_m: u32) {
    check_result(
        &gpu_permute(ids, experts, block_m, 2),
        ids,
        experts,
        block_m,
    );
}

fn check_result(r: &Result, ids: &[u32], experts: usize, block_m: u32) {
    let (counts, offsets) = permutation(ids, experts);
    assert_eq!(r.offsets, offsets, "offsets");
    let valid = ids.iter().filter(|i| **i != INVALID).count();
    // Every valid pair sits once in its expert's segment, and pos inverts rows.
    for (pair, &id) in ids.iter().enumerate() {
        if id == INVALID {
            assert_eq!(r.pos[pair], INVALID, "dropped pair {pair}");
            continue;
        }
        let p = r.pos[pair] as usize;
        assert!(p >= offsets[id as usize] as usize && p < offsets[id as usize + 1] as usize);
        assert_eq!(r.rows[p] as usize, pair, "rows[pos[{pair}]]");
    }
    // Tiles: ceil(count / block_m) per expert, covering each segment exactly.
    let want_tiles: u32 = counts.iter().map(|c| c.div_ceil(block_m)).sum();
    assert_eq!(
        r.args,
        vec![want_tiles, 3, 1, want_tiles, 5, 1],
        "indirect args"
    );
    let mut covered = vec![0u32; valid];
    for t in &r.tiles {
        let (e, r0, end) = (t[0] as usize, t[1], t[2]);
        assert_eq!(end, offsets[e + 1], "tile end is the segment end");
        assert!(r0 >= offsets[e] && r0 < end);
        for row in r0..(r0 + block_m).min(end) {
            covered[row as usize] += 1;
        }
    }
    assert!(
        covered.iter().all(|c| *c == 1),
        "each row in exactly one tile"
    );
}

#[test]
fn permutation_matches_reference_over_shapes() {
    let mut rng = Rng::new(9);
    for tokens in [1usize, 2, 7, 33, 130] {
        for experts in [4usize, 6, 8, 16, 60, 300] {
            for k in [1usize, 2, 4, 8].into_iter().filter(|k| *k <= experts) {
                let ids: Vec<u32> = (0..tokens * k).map(|_| rng.below(experts) as u32).collect();
                for block_m in [1, 4] {
                    check(&ids, experts, block_m);
                }
            }
        }
    }
}

#[test]
fn scan_scatters_small_steps_itself_and_leaves_large_ones_to_the_scatter() {
    let mut rng = Rng::new(12);
    for pairs in [
        1,
        SCAN_SCATTER_MAX_PAIRS - 1,
        SCAN_SCATTER_MAX_PAIRS,
        SCAN_SCATTER_MAX_PAIRS + 1,
    ] {
        let ids: Vec<u32> = (0..pairs).map(|_| rng.below(37) as u32).collect();
        check(&ids, 37, 1);
        check(&ids, 37, 8);
    }
}

#[test]
fn all_pairs_on_one_expert_and_most_experts_empty() {
    let ids = vec![5u32; 130 * 2];
    check(&ids, 60, 4);
    let ids: Vec<u32> = (0..33).map(|t| if t % 2 == 0 { 0 } else { 59 }).collect();
    check(&ids, 60, 4);
}

#[test]
fn dropped_slots_are_left_out() {
    let mut rng = Rng::new(4);
    let ids: Vec<u32> = (0..33 * 4)
        .map(|i| {
            if i % 3 == 1 {
                INVALID
            } else {
                rng.below(16) as u32
            }
        })
        .collect();
    check(&ids, 16, 4);
    check(&[INVALID; 8], 16, 1);
}

/// Routes `logits` with a selection that has the permutation's buffers, asking it to permute
/// for GEMMs of tile height `block_m`; returns whether it did, the ids and the permutation.
fn gpu_select_permute(
    spec: &RoutingSpec,
    logits: &[f32],
    tokens: usize,
    act: &DynamicActivation,
    block_m: u32,
) -> (bool, Vec<u32>, Result) {
    let ctx = common::ctx();
    let (k, experts) = (spec.top_k, spec.experts);
    let pairs = tokens * k;
    let buf = |label, bytes: usize| ctx.storage(label, bytes as u64).unwrap();
    let logits_b = ctx.storage_with("logits", logits).unwrap();
    let (corr, ids, weights, gate) = (
        buf("corr", 4),
        buf("ids", pairs * 4),
        buf("w", pairs * 4),
        buf("gate", tokens * 4),
    );
    let counts = buf("counts", experts * 4);
    let (offsets, cursor) = (
        buf("offsets", (experts + 1) * 4),
        buf("cursor", experts * 4),
    );
    let tiles = buf("tiles", permute::max_tiles(pairs, block_m, experts) * 16);
    let args = ctx.indirect_storage("args", 24).unwrap();
    let (rows, pos) = (buf("rows", pairs * 4), buf("pos", pairs * 4));
    let select = Select::new(
        ctx,
        spec,
        SelectBuffers {
            logits: &logits_b,
            correction: &corr,
            ids: &ids,
            weights: &weights,
            shared_gate: &gate,
            counts: Some(&counts),
            permute: Some(SelectPermuteBuffers {
                offsets: &offsets,
                cursor: &cursor,
                tiles: &tiles,
                args: &args,
                rows: &rows,
                pos: &pos,
            }),
        },
    )
    .unwrap();
    let kk = act.effective_k(k).unwrap();
    let shape = PermuteShape {
        block_m,
        col_blocks: (3, 5),
    };
    let mut permuted = false;
    common::run_pass(ctx, |pass| {
        permuted = select.encode(ctx, pass, tokens, kk, act, Some(shape));
    });
    let args_v: Vec<u32> = ctx.read_back(&args, 6).unwrap();
    let tiles_flat: Vec<u32> = ctx.read_back(&tiles, args_v[0] as usize * 4).unwrap();
    let left: Vec<u32> = ctx.read_back(&counts, experts).unwrap();
    if permuted {
        assert!(
            left.iter().all(|&c| c == 0),
            "the permutation zeroes the counts"
        );
    }
    let r = Result {
        offsets: ctx.read_back(&offsets, experts + 1).unwrap(),
        rows: ctx.read_back(&rows, pairs).unwrap(),
        pos: ctx.read_back(&pos, pairs).unwrap(),
        tiles: tiles_flat
            .chunks(4)
            .map(|c| [c[0], c[1], c[2], c[3]])
            .collect(),
        args: args_v,
    };
    (permuted, ctx.read_back(&ids, pairs).unwrap(), r)
}

/// A selection of at most one workgroup (64 tokens) permutes the step itself, with dropped
/// picks left out, exactly as scan → scatter would; a larger one leaves it to the scan.
#[test]
fn selection_permutes_steps_of_one_workgroup_itself() {
    let mut rng = Rng::new(31);
    for (experts, k) in [(6usize, 2usize), (64, 8), (300, 6)] {
        let spec = RoutingSpec::softmax(experts, k, true);
        let drops = DynamicActivation {
            top_k: Some(k - 1),
            skip_beta: 0.3,
            top_p: 1.0,
        };
        for tokens in [1usize, 7, 64, 65] {
            for act in [DynamicActivation::default(), drops] {
                for block_m in [1, 4] {
                    let logits = rng.normals(tokens * experts, 2.0);
                    let (permuted, ids, r) =
                        gpu_select_permute(&spec, &logits, tokens, &act, block_m);
                    assert_eq!(permuted, tokens <= 64, "E={experts} T={tokens}");
                    if permuted {
                        check_result(&r, &ids, experts, block_m);
                    }
                }
            }
        }
    }
}
