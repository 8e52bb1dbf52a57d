//! The attention kernels against `src/reference/attention.rs` (softmax in f64): one split
//! written directly, split-KV (flash-decoding) with its fixed-order combine, and keys walked in
//! several passes, over GQA ratios, odd head sizes, v_dim ≠ qk_dim, DeepSeek's 512-wide latent
//! values, 1 token and 1 key, several queries per step, sliding windows shorter and longer than
//! the context, sinks, split counts that leave splits empty, pass boundaries inside splits, and
//! contexts long enough that one invocation per head would pass llvmpipe's loop limit.
//! Elementwise results within 1e-5 scaled by max(1, |ref|).

use std::sync::Arc;

use moe_gpu::kernels::attention::{
    Attention, AttentionBuffers, AttentionSpec, KeySplit, MAX_SPLITS, MAX_V_DIM, SplitKv,
};
use moe_gpu::kernels::rows::RowTable;
use moe_gpu::synthetic::Rng;

use crate::common;
use crate::common::attention::{Case, TOL, cases, check, run, setup};

#[test]
fn short_contexts_match_reference() {
    let mut rng = Rng::new(5);
    // (heads, kv_heads, qk_dim, v_dim)
    let shapes = [
        (1, 1, 8, 8),
        (4, 2, 12, 12),
        (6, 1, 16, 16),
        (5, 5, 36, 20),
        (3, 3, 7, 5),
    ];
    let steps = [(1, 0), (7, 0), (1, 9), (3, 5)];
    for c in cases(&shapes, &steps, &[None, Some(1), Some(3), Some(64)]) {
        let s = setup(&mut rng, c, SplitKv::default());
        assert_eq!(
            s.attention.split_for(c.tokens, c.pos0),
            KeySplit::whole(c.keys())
        );
        check(&s, &c, KeySplit::whole(c.keys()));
    }
}

#[test]
fn split_kv_matches_reference_for_every_split_count() {
    let mut rng = Rng::new(6);
    // (heads, kv_heads, qk_dim, v_dim): GQA, odd sizes, v ≠ qk, DeepSeek-like latent.
    let shapes = [
        (4, 2, 12, 12),
        (5, 1, 16, 20),
        (3, 3, 7, 5),
        (2, 1, 40, 300),
    ];
    // (tokens, pos0): 1 key, a long decode step, several queries per step.
    let steps = [(1, 0), (1, 700), (3, 250), (4, 129)];
    for c in cases(&shapes, &steps, &[None, Some(1), Some(100)]) {
        let s = setup(&mut rng, c, SplitKv::default());
        let keys = c.keys();
        let most = MAX_SPLITS / c.tokens;
        let mut splits: Vec<KeySplit> = [2, 3, 7, most]
            .iter()
            .map(|&n| KeySplit {
                splits: n,
                chunk: keys.div_ceil(n),
            })
            .collect();
        // Trailing splits left empty.
        splits.push(KeySplit {
            splits: most,
            chunk: 64,
        });
        for split in splits {
            if split.splits * split.chunk >= keys {
                check(&s, &c, split);
            }
        }
    }
}

#[test]
fn keys_walked_in_several_passes_match_reference() {
    let mut rng = Rng::new(7);
    let shapes = [(4, 2, 12, 12), (3, 3, 7, 5), (2, 1, 40, 300)];
    let steps = [(1, 0), (1, 200), (3, 90), (8, 40)];
    for c in cases(&shapes, &steps, &[None, Some(1), Some(50)]) {
        for pass_keys in [1, 7, 64] {
            let c = Case {
                pass_keys: Some(pass_keys),
                ..c
            };
            let s = setup(&mut rng, c, SplitKv::default());
            let keys = c.keys();
            check(&s, &c, KeySplit::whole(keys));
            if c.tokens * 3 <= MAX_SPLITS {
                let three = KeySplit {
                    splits: 3,
                    chunk: keys.div_ceil(3),
                };
                check(&s, &c, three);
            }
        }
    }
}

/// One invocation per head over 4096 keys of 128 columns would run 4096 · 25 loop iterations;
/// llvmpipe silently ends the loops at 65535. The step must take several passes and still
/// match.
#[test]
fn long_contexts_are_not_cut_short_by_llvmpipe_loop_limit() {
    let mut rng = Rng::new(8);
    for (qk_dim, v_dim) in [(128, 128), (576, 512)] {
        let c = Case {
            heads: 2,
            kv_heads: 1,
            qk_dim,
            v_dim,
            tokens: 1,
            pos0: 4095,
            window: None,
            sinks: false,
            pass_keys: None,
        };
        let s = setup(&mut rng, c, SplitKv::OFF);
        assert!(c.spec().max_pass_keys() < 4096);
        check(&s, &c, KeySplit::whole(4096));
        let auto = s.attention.split_for(1, 4095);
        assert_eq!(auto, KeySplit::whole(4096), "splitting is off");
    }
}

#[test]
fn value_heads_up_to_512_match_reference() {
    let mut rng = Rng::new(9);
    for v_dim in [257, 500, MAX_V_DIM] {
        for (tokens, pos0) in [(1, 0), (5, 3), (1, 300)] {
            let c = Case {
                heads: 3,
                kv_heads: 1,
                qk_dim: 24,
                v_dim,
                tokens,
                pos0,
                window: None,
                sinks: false,
                pass_keys: None,
            };
            let s = setup(&mut rng, c, SplitKv::default());
            let auto = s.attention.split_for(tokens, pos0);
            check(&s, &c, auto);
        }
    }
}

#[test]
fn split_kv_is_deterministic() {
    let mut rng = Rng::new(10);
    let c = Case {
        heads: 4,
        kv_heads: 2,
        qk_dim: 32,
        v_dim: 32,
        tokens: 1,
        pos0: 999,
        window: None,
        sinks: true,
        pass_keys: None,
    };
    let s = setup(&mut rng, c, SplitKv::default());
    let split = s.attention.split_for(c.tokens, c.pos0);
    assert!(split.splits > 1);
    let first = run(&s, &c, split);
    for _ in 0..3 {
        let again = run(&s, &c, split);
        let same = first
            .iter()
            .zip(&again)
            .all(|(a, b)| a.to_bits() == b.to_bits());
        assert!(same, "split-KV results differ between identical runs");
    }
    common::assert_close("deterministic split", &first, &s.want, TOL);
}

/// A kernel for `c`'s spec bound to token buffers (never run), with the partials a decoder
/// gives it.
fn planner(c: Case, policy: SplitKv) -> Attention {
    let ctx = common::ctx();
    let spec = c.spec();
    let b = ctx.storage("b", 64).unwrap();
    let slots = MAX_SPLITS.max(spec.min_partial_slots());
    let partials = ctx.storage("p", spec.partials_bytes(slots)).unwrap();
    let buffers = AttentionBuffers {
        q: &b,
        k: &b,
        v: &b,
        sinks: &b,
        partials: &partials,
        out: &b,
        rows: &Arc::new(RowTable::new(ctx, c.tokens).unwrap()),
    };
    Attention::new(ctx, spec, policy, buffers).unwrap()
}

#[test]
fn default_policy_splits_only_long_decode_steps() {
    let policy = SplitKv::default();
    let case = |tokens, pos0, window| Case {
        heads: 4,
        kv_heads: 2,
        qk_dim: 8,
        v_dim: 8,
        tokens,
        pos0,
        window,
        sinks: false,
        pass_keys: None,
    };
    let a = planner(case(64, 1 << 20, None), policy);
    let a = &a;
    // Short contexts and prefill steps: one split.
    assert_eq!(a.split_for(1, 10), KeySplit::whole(11));
    assert_eq!(a.split_for(64, 4000), KeySplit::whole(4064));
    assert_eq!(
        a.split_for(1, policy.min_keys - 2),
        KeySplit::whole(policy.min_keys - 1)
    );
    // A long decode step: splits of at least min_chunk keys, as many as the partials hold.
    let split = a.split_for(1, 2047);
    assert!(split.splits > 1 && split.chunk >= policy.min_chunk);
    assert!(split.splits * split.chunk >= 2048 && split.splits <= MAX_SPLITS);
    assert_eq!(a.split_for(1, 1 << 19).splits, MAX_SPLITS);
    // Steps of several tokens of one sequence (prefill) do not split. Where four sequences
    // may decode together, each query gets a quarter of the 64 states, whatever the step's
    // size.
    assert_eq!(a.split_for(4, 1 << 19), KeySplit::whole((1 << 19) + 4));
    let four = planner(
        case(64, 1 << 20, None),
        SplitKv {
            max_tokens: 4,
            ..policy
        },
    );
    assert_eq!(four.split_for(4, 1 << 19), KeySplit::whole((1 << 19) + 4));
    assert_eq!(four.split_for(1, 1 << 19).splits, 16);
    // A window caps the keys a query sees.
    let windowed = planner(case(1, 5000, Some(64)), policy);
    assert_eq!(windowed.split_for(1, 5000), KeySplit::whole(64));
}

#[test]
fn attention_rejects_bad_shapes_and_splits() {
    let ctx = common::ctx();
    let b = ctx.storage("b", 64).unwrap();
    let rows = Arc::new(RowTable::new(ctx, 1).unwrap());
    let bufs = || AttentionBuffers {
        q: &b,
        k: &b,
        v: &b,
        sinks: &b,
        partials: &b,
        out: &b,
        rows: &rows,
    };
    let spec = AttentionSpec {
        heads: 6,
        kv_heads: 4,
        qk_dim: 8,
        v_dim: 8,
        window: None,
        sinks: false,
        scale: 1.0,
        max_tokens: 1,
        positions: 5000,
        pass_keys: None,
    };
    let new = |spec| Attention::new(ctx, spec, SplitKv::default(), bufs());
    let err = new(spec).err().unwrap().to_string();
    assert!(err.contains("kv heads"), "{err}");
    let spec = AttentionSpec {
        kv_heads: 6,
        ..spec
    };
    for bad in [
        AttentionSpec {
            v_dim: MAX_V_DIM + 1,
            ..spec
        },
        AttentionSpec {
            window: Some(0),
            ..spec
        },
        AttentionSpec {
            pass_keys: Some(0),
            ..spec
        },
        AttentionSpec {
            max_tokens: 0,
            ..spec
        },
    ] {
        assert!(new(bad).is_err(), "{bad:?} accepted");
    }
    // Several passes need a state per query: 64 bytes hold none of 6 heads.
    let err = new(AttentionSpec {
        pass_keys: Some(100),
        ..spec
    })
    .err()
    .unwrap()
    .to_string();
    assert!(err.contains("partials"), "{err}");

    // One pass covers the context: no state needed, and the automatic split stays whole.
    let a = new(spec).unwrap();
    assert_eq!(a.split_for(1, 4999), KeySplit::whole(5000));
    let cases = [
        (
            1,
            4999,
            KeySplit {
                splits: 4,
                chunk: 1250,
            },
        ), // no partial slots
        (
            1,
            4999,
            KeySplit {
                splits: 1,
                chunk: 10,
            },
        ), // short of the keys
        (2, 10, KeySplit::whole(12)),     // more queries than max_tokens
        (1, 5000, KeySplit::whole(5001)), // past the cache
    ];
    for (tokens, pos0, split) in cases {
        assert!(!a.split_fits(tokens, pos0, split), "{split:?} fits");
        let mut result = Ok(());
        common::run_pass(ctx, |pass| {
            result = a.encode_split(ctx, pass, tokens, pos0, split)
        });
        let err = result.err().unwrap().to_string();
        assert!(err.contains("do not fit"), "{err}");
    }
}
