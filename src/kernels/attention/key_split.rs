//! How a step divides each query's keys: the split-KV (flash-decoding) policy and the
//! (token, split) states of the partials buffer.

/// Steps of at most this many queries may split their keys (decode steps); longer steps have
/// enough (token, head) pairs to fill the device without splitting.
pub const SPLIT_MAX_TOKENS: usize = 4;

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
    /// Steps of at most [`SPLIT_MAX_TOKENS`] queries split once their last query sees at least
    /// this many keys.
    pub min_keys: usize,
    /// Keys per split, at least (fewer splits where the partials hold fewer).
    pub min_chunk: usize,
}

impl SplitKv {
    /// Never split: one thread per (token, head) over all its keys.
    pub const OFF: SplitKv = SplitKv {
        min_keys: usize::MAX,
        min_chunk: usize::MAX,
    };

    /// Whether a step of `tokens` queries whose last query sees `keys` keys splits.
    pub fn applies(&self, tokens: usize, keys: usize) -> bool {
        tokens <= SPLIT_MAX_TOKENS && keys >= self.min_keys && keys >= 2
    }
}

impl Default for SplitKv {
    /// Measured on lavapipe (BENCHMARKS.md, `moe bench-attention`).
    fn default() -> Self {
        SplitKv {
            min_keys: 256,
            min_chunk: 128,
        }
    }
}

/// How a step divides each query's keys: `splits` runs of `chunk` keys (the last may be short
/// or empty), each walked in passes of at most the spec's pass size. One split of one pass
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

/// Split the `keys` of a step of `tokens` queries where `policy` says so and `slots` hold at
/// least two splits per query, into as many splits of at least `min_chunk` keys as the slots
/// (and [`MAX_SPLITS`]) allow; else whole.
pub(super) fn split_for(policy: SplitKv, slots: usize, tokens: usize, keys: usize) -> KeySplit {
    let max_splits = (slots / tokens.max(1)).min(MAX_SPLITS);
    if policy.applies(tokens, keys) && max_splits >= 2 {
        let splits = keys.div_ceil(policy.min_chunk).min(max_splits);
        if splits >= 2 {
            return KeySplit {
                splits,
                chunk: keys.div_ceil(splits),
            };
        }
    }
    KeySplit::whole(keys)
}
