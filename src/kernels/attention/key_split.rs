//! How a step divides each query's keys: the split-KV (flash-decoding) policy and the
//! (token, split) states of the partials buffer.

use crate::kernels::rows::RowPlace;

/// Most splits of one query's keys (a decoder's partials hold this many states for a
/// one-token step); more would make the combine cost more than the split saves.
pub const MAX_SPLITS: usize = 32;

/// Bytes of a partials buffer holding `slots` (token, split) states of `heads` heads with
/// `v_dim` value columns: each a running max, a sum and an unnormalised accumulator.
pub fn partials_bytes(slots: usize, heads: usize, v_dim: usize) -> u64 {
    (slots * heads * (2 + v_dim) * 4) as u64
}

/// When a step splits its keys over invocations (flash-decoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitKv {
    /// A query splits its keys once it sees at least this many.
    pub min_keys: usize,
    /// Keys per split, at least.
    pub min_chunk: usize,
    /// Decode steps of at most this many sequences split (one query each); prefill steps have
    /// enough (token, head) pairs to fill the device without splitting.
    pub max_tokens: usize,
}

impl SplitKv {
    /// Never split: one thread per (token, head) over all its keys.
    pub const OFF: SplitKv = SplitKv {
        min_keys: usize::MAX,
        min_chunk: usize::MAX,
        max_tokens: 0,
    };

    /// Partial states a step that splits needs at most: [`MAX_SPLITS`] per query.
    pub fn states(&self) -> usize {
        self.max_tokens.saturating_mul(MAX_SPLITS)
    }
}

impl Default for SplitKv {
    /// Measured on lavapipe (BENCHMARKS.md, `moe bench-attention`).
    fn default() -> Self {
        SplitKv {
            min_keys: 256,
            min_chunk: 128,
            max_tokens: 1,
        }
    }
}

/// How a step divides a query's keys: `splits` runs of `chunk` keys (the last may be short or
/// empty), each walked in passes of at most the spec's pass size. One split of one pass
/// writes the output directly; anything else goes through the combine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeySplit {
    /// Runs of keys per query, each with its own partial state.
    pub splits: usize,
    /// Keys per run.
    pub chunk: usize,
}

impl KeySplit {
    /// No split: one run over all of `keys`.
    pub fn whole(keys: usize) -> Self {
        Self {
            splits: 1,
            chunk: keys.max(1),
        }
    }
}

/// The split rule of an attention: each query's keys are divided by a function of its own key
/// count alone (`row_chunk` in `shaders/attention.wgsl`), so a query's result does not depend
/// on the other queries of its step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct SplitRule {
    /// Queries split once they see this many keys.
    pub min_keys: usize,
    /// Keys per split, at least.
    pub min_chunk: usize,
    /// Splits per query, at most.
    pub max_splits: usize,
    /// Steps of at most this many queries split.
    pub max_tokens: usize,
}

impl SplitRule {
    /// The rule of `policy` over a partials buffer of `slots` states: at most [`MAX_SPLITS`]
    /// per query, and as many as the slots hold for a step of `policy.max_tokens` queries
    /// (no splitting where that is under two).
    pub fn new(policy: SplitKv, slots: usize, max_tokens: usize) -> Self {
        let tokens = policy.max_tokens.min(max_tokens);
        let max_splits = (slots / tokens.max(1)).min(MAX_SPLITS);
        if tokens == 0 || max_splits < 2 {
            return Self::WHOLE;
        }
        Self {
            min_keys: policy.min_keys.max(2),
            min_chunk: policy.min_chunk.max(1),
            max_splits,
            max_tokens: tokens,
        }
    }

    /// Every query's keys in one run: no step splits.
    pub const WHOLE: SplitRule = SplitRule {
        min_keys: usize::MAX,
        min_chunk: usize::MAX,
        max_splits: 1,
        max_tokens: 0,
    };

    /// Every query of any step in runs of `chunk` keys (tests and benchmarks).
    pub fn forced(chunk: usize) -> Self {
        Self {
            min_keys: 0,
            min_chunk: chunk.max(1),
            max_splits: usize::MAX,
            max_tokens: usize::MAX,
        }
    }

    /// Whether a step of the queries `rows` splits: a decode step, each query the only one of
    /// its sequence, of at most `max_tokens` queries. (A prefill step has enough queries to
    /// fill the device unsplit; and since a decode step splits whatever its size, a query's
    /// result does not depend on how many sequences decode with it.)
    pub fn splits_step(&self, rows: &[RowPlace]) -> bool {
        rows.len() <= self.max_tokens
            && rows
                .iter()
                .enumerate()
                .all(|(i, r)| rows[..i].iter().all(|o| o.cache_row0 != r.cache_row0))
    }

    /// How a query that sees `keys` keys divides them in a step that splits.
    pub fn for_keys(&self, keys: usize) -> KeySplit {
        if keys < self.min_keys {
            return KeySplit::whole(keys);
        }
        let chunk = self.min_chunk.max(keys.div_ceil(self.max_splits));
        KeySplit {
            splits: keys.div_ceil(chunk).max(1),
            chunk,
        }
    }
}
