//! scan → scatter (one kernel up to `SCAN_SCATTER_MAX_PAIRS` pairs, two above) against
//! `reference::permutation`: CSR segments, the inverse permutation, the full and tail tile
//! lists and the indirect dispatch sizes, for random routings, empty experts, all pairs on one
//! expert and dropped (INVALID) slots, with and without a tail list. The counts they start from (the select kernel's, tested in
//! tests/kernels/kernel_select.rs) are written by the host here. A selection of at most 64 tokens
//! builds the same permutation itself (last test).

use moe_gpu::kernels::INVALID;
use moe_gpu::kernels::permute::{
    self, Permute, PermuteBuffers, PermuteShape, SCAN_SCATTER_MAX_PAIRS, TileLists,
};
use moe_gpu::kernels::select::{Select, SelectBuffers};
use moe_gpu::moe::{DynamicActivation, RoutingSpec};
use moe_gpu::reference::permutation;
use moe_gpu::synthetic::Rng;

use crate::common;

pub(crate) struct Result {
    offsets: Vec<u32>,
    rows: Vec<u32>,
    pos: Vec<u32>,
    /// The full list (from the buffer's start) and the tail list (from its end, backwards).
    lists: TileLists,
    args: Vec<u32>,
}

/// Tile heights and tail lists the tests run: none, and the register kernel's halves.
const SHAPES: [(u32, u32); 4] = [(1, 0), (4, 0), (4, 2), (8, 4)];

pub(crate) fn shape(block_m: u32, tail_m: u32) -> PermuteShape {
    PermuteShape {
        block_m,
        tail_m,
        col_blocks: (3, 5),
    }
}

/// The permutation's buffers for `pairs` pairs over `experts` experts, tiles of `block_m` rows.
struct Buffers {
    ids: wgpu::Buffer,
    counts: wgpu::Buffer,
    offsets: wgpu::Buffer,
    cursor: wgpu::Buffer,
    tiles: wgpu::Buffer,
    args: wgpu::Buffer,
    rows: wgpu::Buffer,
    pos: wgpu::Buffer,
}

impl Buffers {
    fn new(ids: wgpu::Buffer, pairs: usize, experts: usize, block_m: u32) -> Self {
        let ctx = common::ctx();
        let buf = |label, bytes: usize| ctx.storage(label, bytes as u64).unwrap();
        Self {
            ids,
            counts: buf("counts", experts * 4),
            offsets: buf("offsets", (experts + 1) * 4),
            cursor: buf("cursor", experts * 4),
            tiles: buf("tiles", permute::max_tiles(pairs, block_m, experts) * 16),
            args: ctx
                .indirect_storage("args", (permute::ARGS_WORDS * 4) as u64)
                .unwrap(),
            rows: buf("rows", pairs * 4),
            pos: buf("pos", pairs * 4),
        }
    }

    fn bindings(&self) -> PermuteBuffers<'_> {
        PermuteBuffers {
            ids: &self.ids,
            counts: &self.counts,
            offsets: &self.offsets,
            cursor: &self.cursor,
            tiles: &self.tiles,
            args: &self.args,
            rows: &self.rows,
            pos: &self.pos,
        }
    }

    fn read(&self, pairs: usize, experts: usize) -> Result {
        let ctx = common::ctx();
        let args: Vec<u32> = ctx.read_back(&self.args, permute::ARGS_WORDS).unwrap();
        let words: Vec<u32> = ctx
            .read_back(&self.tiles, self.tiles.size() as usize / 4)
            .unwrap();
        let tiles: Vec<[u32; 4]> = words.chunks(4).map(|c| [c[0], c[1], c[2], c[3]]).collect();
        let (full, tail) = (args[0] as usize, args[6] as usize);
        Result {
            offsets: ctx.read_back(&self.offsets, experts + 1).unwrap(),
            rows: ctx.read_back(&self.rows, pairs).unwrap(),
            pos: ctx.read_back(&self.pos, pairs).unwrap(),
            lists: TileLists {
                full: tiles[..full].to_vec(),
                tail: tiles.iter().rev().take(tail).copied().collect(),
            },
            args,
        }
    }

    fn counts_left(&self, experts: usize) -> Vec<u32> {
        common::ctx().read_back(&self.counts, experts).unwrap()
    }
}

pub(crate) fn gpu_permute(
    ids: &[u32],
    experts: usize,
    shape: PermuteShape,
    steps: usize,
) -> Result {
    let ctx = common::ctx();
    let pairs = ids.len();
    let b = Buffers::new(
        ctx.storage_with("ids", ids).unwrap(),
        pairs,
        experts,
        shape.block_m,
    );
    let p = Permute::new(ctx, experts, b.bindings()).unwrap();
    let (host_counts, _) = permutation(ids, experts);
    // Several steps in a row: the scan must leave the counts zeroed for the next one, so the
    // host adds this step's counts to what is there.
    for step in 0..steps {
        if step > 0 {
            let left = b.counts_left(experts);
            assert!(left.iter().all(|&c| c == 0), "the scan zeroes the counts");
        }
        ctx.queue
            .write_buffer(&b.counts, 0, bytemuck::cast_slice(&host_counts));
        common::run_pass(ctx, |pass| p.encode(ctx, pass, pairs, shape));
    }
    b.read(pairs, experts)
}

fn check(ids: &[u32], experts: usize, block_m: u32, tail_m: u32) {
    let shape = shape(block_m, tail_m);
    check_result(&gpu_permute(ids, experts, shape, 2), ids, experts, shape);
}

pub(crate) fn check_result(r: &Result, ids: &[u32], experts: usize, shape: PermuteShape) {
    let (block_m, tail_m) = (shape.block_m, shape.tail_m);
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
    // Tiles: ceil(count / block_m) per expert, covering each segment exactly; an expert's
    // last tile is in the tail list when it holds at most tail_m rows.
    let tails = |c: u32| u32::from(c > 0 && c - (c.div_ceil(block_m) - 1) * block_m <= tail_m);
    let want_tail: u32 = counts.iter().map(|&c| tails(c)).sum();
    let want_full: u32 = counts.iter().map(|&c| c.div_ceil(block_m)).sum::<u32>() - want_tail;
    assert_eq!(
        r.args,
        vec![
            want_full, 3, 1, want_full, 5, 1, want_tail, 3, 1, want_tail, 5, 1
        ],
        "indirect args"
    );
    let mut covered = vec![0u32; valid];
    for (list, tail) in [(&r.lists.full, false), (&r.lists.tail, true)] {
        for t in list {
            let (e, r0, end) = (t[0] as usize, t[1], t[2]);
            assert_eq!(end, offsets[e + 1], "tile end is the segment end");
            assert!(r0 >= offsets[e] && r0 < end);
            let held = (end - r0).min(block_m);
            assert_eq!(
                held <= tail_m,
                tail,
                "tile {t:?} of {held} rows, tail_m {tail_m}"
            );
            for row in r0..r0 + held {
                covered[row as usize] += 1;
            }
        }
    }
    assert!(
        covered.iter().all(|c| *c == 1),
        "each row in exactly one tile"
    );
    // The host's mirror (which the autotuner and benchmarks feed the GEMMs) lists the same
    // tiles in the same order.
    assert_eq!(
        r.lists,
        TileLists::new(&counts, block_m, tail_m),
        "host mirror"
    );
}

#[test]
fn permutation_matches_reference_over_shapes() {
    let mut rng = Rng::new(9);
    for tokens in [1usize, 2, 7, 33, 130] {
        for experts in [4usize, 6, 8, 16, 60, 300] {
            for k in [1usize, 2, 4, 8].into_iter().filter(|k| *k <= experts) {
                let ids: Vec<u32> = (0..tokens * k).map(|_| rng.below(experts) as u32).collect();
                for (block_m, tail_m) in SHAPES {
                    check(&ids, experts, block_m, tail_m);
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
        check(&ids, 37, 1, 0);
        check(&ids, 37, 8, 4);
    }
}

#[test]
fn all_pairs_on_one_expert_and_most_experts_empty() {
    for (block_m, tail_m) in SHAPES {
        let ids = vec![5u32; 130 * 2];
        check(&ids, 60, block_m, tail_m);
        let ids: Vec<u32> = (0..33).map(|t| if t % 2 == 0 { 0 } else { 59 }).collect();
        check(&ids, 60, block_m, tail_m);
    }
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
    check(&ids, 16, 4, 2);
    check(&[INVALID; 8], 16, 1, 0);
    check(&[INVALID; 8], 16, 8, 4);
}

/// Routes `logits` with a selection that has the permutation's buffers, asking it to permute
/// for GEMMs of `shape`; returns whether it did, the ids and the permutation.
fn gpu_select_permute(
    spec: &RoutingSpec,
    logits: &[f32],
    tokens: usize,
    act: &DynamicActivation,
    shape: PermuteShape,
) -> (bool, Vec<u32>, Result) {
    let ctx = common::ctx();
    let (k, experts) = (spec.top_k, spec.experts);
    let pairs = tokens * k;
    let buf = |label, bytes: usize| ctx.storage(label, bytes as u64).unwrap();
    let logits_b = ctx.storage_with("logits", logits).unwrap();
    let (corr, weights, gate) = (buf("corr", 4), buf("w", pairs * 4), buf("gate", tokens * 4));
    let b = Buffers::new(buf("ids", pairs * 4), pairs, experts, shape.block_m);
    let bindings = b.bindings();
    let select = Select::new(
        ctx,
        spec,
        SelectBuffers {
            logits: &logits_b,
            correction: &corr,
            ids: &b.ids,
            weights: &weights,
            shared_gate: &gate,
            counts: Some(&b.counts),
            permute: Some(&bindings),
            status: None,
        },
    )
    .unwrap();
    let kk = act.effective_k(k).unwrap();
    let mut permuted = false;
    common::run_pass(ctx, |pass| {
        permuted = select.encode(ctx, pass, tokens, kk, act, Some(shape));
    });
    if permuted {
        let left = b.counts_left(experts);
        assert!(
            left.iter().all(|&c| c == 0),
            "the permutation zeroes the counts"
        );
    }
    let ids = ctx.read_back(&b.ids, pairs).unwrap();
    (permuted, ids, b.read(pairs, experts))
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
                for (block_m, tail_m) in SHAPES {
                    let shape = shape(block_m, tail_m);
                    let logits = rng.normals(tokens * experts, 2.0);
                    let (permuted, ids, r) =
                        gpu_select_permute(&spec, &logits, tokens, &act, shape);
                    assert_eq!(permuted, tokens <= 64, "E={experts} T={tokens}");
                    if permuted {
                        check_result(&r, &ids, experts, shape);
                    }
                }
            }
        }
    }
}

/// A selection must count into, and write the ids of, the permutation it is given.
#[test]
fn selection_refuses_a_permutation_of_other_buffers() {
    let ctx = common::ctx();
    let spec = RoutingSpec::softmax(8, 2, true);
    let buf = |label, bytes: u64| ctx.storage(label, bytes).unwrap();
    let (logits, corr, ids, weights, gate, counts) = (
        buf("logits", 64),
        buf("corr", 4),
        buf("ids", 16),
        buf("w", 16),
        buf("gate", 4),
        buf("counts", 32),
    );
    let other = Buffers::new(buf("other ids", 16), 4, 8, 1);
    let bindings = other.bindings();
    let result = Select::new(
        ctx,
        &spec,
        SelectBuffers {
            logits: &logits,
            correction: &corr,
            ids: &ids,
            weights: &weights,
            shared_gate: &gate,
            counts: Some(&counts),
            permute: Some(&bindings),
            status: None,
        },
    );
    let err = result.err().expect("mismatched buffers are refused");
    assert!(err.to_string().contains("permutation"), "{err}");
}
