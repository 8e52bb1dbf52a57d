//! `shaders/attention*.wgsl`: causal attention of new queries over the KV cache, with GQA, an
//! optional sliding window and optional per-head sinks. `attention.wgsl` runs one thread per
//! (token, head, key split), walking its keys in passes that each stay under llvmpipe's loop
//! limit; `attention_combine.wgsl` merges the splits' partial softmax results in split order
//! (no float atomics, so a result depends only on the split count). Prefill steps and short
//! contexts take one split and one pass, which writes the output directly. Decode steps over
//! long contexts split the keys (flash-decoding): one thread per head would otherwise walk the
//! whole cache alone. Each query reads its place (its sequence's first cache row and its
//! position) from a row table, so one step may hold a decode token of each of several
//! sequences; a query's keys are split by a rule of its own key count, so its result does not
//! depend on the others.

mod key_split;
mod passes;
mod spec;

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{Binding, Context, KernelDef, Override, PipelineKey};
use crate::kernels::{Dispatch, groups};

use key_split::SplitRule;
pub use key_split::{KeySplit, MAX_SPLITS, SplitKv, partials_bytes};
pub use passes::AttentionBuffers;
pub(crate) use passes::AttentionParams;
use passes::Passes;
pub use spec::{AttentionSpec, MAX_V_DIM};

use crate::kernels::rows::{RowPlace, RowTable};

/// The attention family's parameters and `SINKS`, first in both kernels' source.
const ATTENTION_COMMON: &str = include_str!("../../shaders/attention_common.wgsl");

/// Add each head's sink logit to the softmax.
pub const SINKS: Override = Override("SINKS");

/// One thread per (token, head, key split) (`shaders/attention.wgsl`), one parameter block
/// per pass.
pub static ATTENTION: KernelDef = KernelDef {
    name: "attention",
    parts: &[
        ATTENTION_COMMON,
        include_str!("../../shaders/attention.wgsl"),
    ],
    bindings: &[
        Binding::uniform_dynamic("p"),   // AttentionParams, one block per pass
        Binding::read("q"),              // [tokens, heads, qk_dim] (q_stride per token)
        Binding::read("k"),              // [rows, kv_heads, qk_dim] (k_stride per row)
        Binding::read("v"),              // [rows, kv_heads, v_dim] (v_stride per row)
        Binding::read("sinks"),          // [heads] (SINKS only)
        Binding::read_write("partials"), // [tokens, heads, splits, 2 + v_dim] (m, l, acc)
        Binding::read_write("out"),      // [tokens, heads, v_dim] (direct steps)
        Binding::read("rows"),           // [tokens] RowPlace
    ],
    overrides: &[SINKS],
};

/// The fixed-order merge of the key splits (`shaders/attention_combine.wgsl`).
pub static ATTENTION_COMBINE: KernelDef = KernelDef {
    name: "attention_combine",
    parts: &[
        ATTENTION_COMMON,
        include_str!("../../shaders/attention_combine.wgsl"),
    ],
    bindings: &[
        Binding::uniform("p"),      // AttentionParams
        Binding::read("partials"),  // [tokens, heads, splits, 2 + v_dim] (m, l, acc)
        Binding::read("sinks"),     // [heads] (SINKS only)
        Binding::read_write("out"), // [tokens, heads, v_dim]
    ],
    overrides: &[SINKS],
};

/// Threads per workgroup, over heads.
const HEADS_PER_GROUP: u32 = 16;

/// Causal attention over a KV cache, bound to its buffers: one pass per `pass_keys` keys of a
/// key split, then the merge of the partial states.
pub struct Attention {
    spec: AttentionSpec,
    rule: SplitRule,
    base: AttentionParams,
    passes: Passes,
    combine: Dispatch<AttentionParams>,
    rows: Arc<RowTable>,
    /// (token, split) states the partials buffer holds.
    slots: usize,
    /// Rows of the k and v caches (several sequences' caches may share them).
    cache_rows: usize,
}

/// A step's division of its queries' keys: the most splits and the longest split of any.
struct StepSplit {
    rule: SplitRule,
    splits: usize,
    longest: usize,
}

/// `n` as a u32 parameter, saturated.
fn param(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

impl Attention {
    /// Attention that splits decode steps' keys as `policy` says, reading each query's place
    /// from `b.rows`.
    pub fn new(
        ctx: &Context,
        spec: AttentionSpec,
        policy: SplitKv,
        b: AttentionBuffers<'_>,
    ) -> Result<Self> {
        spec.validate()?;
        let s = &spec;
        let slots = (b.partials.size() / spec.partials_bytes(1)) as usize;
        if slots < spec.min_partial_slots() {
            return Err(Error::input(format!(
                "attention: a partials buffer of {} bytes holds {slots} states; queries over \
                 {} keys take several passes and need {} bytes",
                b.partials.size(),
                spec.max_keys(),
                spec.partials_bytes(spec.min_partial_slots())
            )));
        }
        if b.rows.max_rows() < spec.max_tokens {
            return Err(Error::input(format!(
                "attention: a row table of {} rows is shorter than a step of {} tokens",
                b.rows.max_rows(),
                spec.max_tokens
            )));
        }
        let base = AttentionParams {
            tokens: 0,
            heads: s.heads as u32,
            group: (s.heads / s.kv_heads) as u32,
            qk_dim: s.qk_dim as u32,
            v_dim: s.v_dim as u32,
            q_stride: (s.heads * s.qk_dim) as u32,
            k_stride: (s.kv_heads * s.qk_dim) as u32,
            v_stride: (s.kv_heads * s.v_dim) as u32,
            out_stride: (s.heads * s.v_dim) as u32,
            window: s.window.unwrap_or(0) as u32,
            scale: s.scale,
            splits: 1,
            chunk: 0,
            max_splits: 1,
            min_keys: u32::MAX,
            pass_start: 0,
            pass_keys: s.pass_keys() as u32,
            direct: 1,
            _pad: [0; 2],
        };
        let row_bytes = |stride: u32| u64::from(stride) * 4;
        let cache_rows = (b.k.size() / row_bytes(base.k_stride))
            .min(b.v.size() / row_bytes(base.v_stride)) as usize;
        let key = |kernel| PipelineKey::new(kernel).flag(SINKS, s.sinks);
        let max_passes = s.max_keys().div_ceil(s.pass_keys());
        let passes = Passes::new(ctx, &key(&ATTENTION), max_passes, &b)?;
        let combine = Dispatch::new(
            ctx,
            &key(&ATTENTION_COMBINE),
            base,
            &[b.partials, b.sinks, b.out],
        )?;
        Ok(Self {
            spec,
            rule: SplitRule::new(policy, slots, spec.max_tokens),
            base,
            passes,
            combine,
            rows: b.rows.clone(),
            slots,
            cache_rows,
        })
    }

    /// The shape it was built for.
    pub fn spec(&self) -> &AttentionSpec {
        &self.spec
    }

    /// How the last (longest) of `tokens` consecutive queries at positions pos0.. divides its
    /// keys.
    pub fn split_for(&self, tokens: usize, pos0: usize) -> KeySplit {
        let keys = self.spec.keys(tokens, pos0);
        if self
            .rule
            .splits_step(&RowPlace::consecutive(0, pos0, tokens))
        {
            self.rule.for_keys(keys)
        } else {
            KeySplit::whole(keys)
        }
    }

    /// Attends `tokens` consecutive queries at positions pos0.. of a sequence whose cache
    /// starts at row 0, split as [`Self::split_for`] says.
    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        pos0: usize,
    ) -> Result<()> {
        let rows = RowPlace::consecutive(0, pos0, tokens);
        self.rows.set(ctx, &rows)?;
        self.encode_rows(ctx, pass, &rows)
    }

    /// Attends the queries `rows`, which the caller has written to the row table: query t
    /// sees cache rows `cache_row0 ..= cache_row0 + position` (within the window). A decode
    /// step (each query the only one of its sequence) splits as the policy says.
    pub fn encode_rows(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        rows: &[RowPlace],
    ) -> Result<()> {
        let rule = if self.rule.splits_step(rows) {
            self.rule
        } else {
            SplitRule::WHOLE
        };
        let step = self.step_split(rule, rows)?;
        self.record(ctx, pass, rows.len(), step);
        Ok(())
    }

    /// As [`Self::encode`] with every query divided into runs of `split.chunk` keys (tests and
    /// benchmarks); an error unless [`Self::split_fits`].
    pub fn encode_split(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        pos0: usize,
        split: KeySplit,
    ) -> Result<()> {
        if !self.split_fits(tokens, pos0, split) {
            return Err(Error::input(format!(
                "attention: {} splits of {} keys do not fit {tokens} queries at position \
                 {pos0} ({} keys, {} partial slots, {} cache positions)",
                split.splits,
                split.chunk,
                self.spec.keys(tokens, pos0),
                self.slots,
                self.spec.positions
            )));
        }
        let rows = RowPlace::consecutive(0, pos0, tokens);
        self.rows.set(ctx, &rows)?;
        let step = StepSplit {
            rule: SplitRule::forced(split.chunk),
            splits: split.splits,
            longest: split.chunk,
        };
        self.record(ctx, pass, tokens, step);
        Ok(())
    }

    /// Whether `split` covers every key of a step of `tokens` queries at positions pos0.., its
    /// states fit the partials, and the step fits the spec.
    pub fn split_fits(&self, tokens: usize, pos0: usize, split: KeySplit) -> bool {
        let s = &self.spec;
        let passes = split.chunk.div_ceil(s.pass_keys());
        let direct = split.splits == 1 && passes <= 1;
        tokens >= 1
            && tokens <= s.max_tokens
            && pos0 + tokens <= s.positions
            && split.splits >= 1
            && split.splits * split.chunk >= s.keys(tokens, pos0)
            && passes <= self.passes.len()
            && (direct || tokens * split.splits <= self.slots)
    }

    /// The splits of `rows` under `rule`, checked against the spec and the partials.
    fn step_split(&self, rule: SplitRule, rows: &[RowPlace]) -> Result<StepSplit> {
        let s = &self.spec;
        let (mut splits, mut longest) = (1, 1);
        for r in rows {
            let position = r.position as usize;
            if position >= s.positions || r.cache_row0 as usize + position >= self.cache_rows {
                return Err(Error::input(format!(
                    "attention: a query at position {position} of a cache starting at row {} \
                     passes the {} positions or the {} cache rows",
                    r.cache_row0, s.positions, self.cache_rows
                )));
            }
            let split = rule.for_keys(s.row_keys(r.position as usize));
            splits = splits.max(split.splits);
            longest = longest.max(split.chunk);
        }
        if rows.is_empty() || rows.len() > s.max_tokens {
            return Err(Error::input(format!(
                "attention: a step of {} queries (1..={} allowed)",
                rows.len(),
                s.max_tokens
            )));
        }
        if longest.div_ceil(s.pass_keys()) > self.passes.len() {
            return Err(Error::input(format!(
                "attention: runs of {longest} keys take more than the {} passes of {} keys \
                 built for",
                self.passes.len(),
                s.pass_keys()
            )));
        }
        let direct = splits == 1 && longest <= s.pass_keys();
        if !direct && rows.len() * splits > self.slots {
            return Err(Error::input(format!(
                "attention: {} queries of {splits} splits exceed the {} partial states",
                rows.len(),
                self.slots
            )));
        }
        Ok(StepSplit {
            rule,
            splits,
            longest,
        })
    }

    fn record(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        step: StepSplit,
    ) {
        let pass_keys = self.spec.pass_keys();
        let passes = step.longest.div_ceil(pass_keys).max(1);
        let direct = step.splits == 1 && passes == 1;
        let params = AttentionParams {
            tokens: tokens as u32,
            splits: step.splits as u32,
            chunk: param(step.rule.min_chunk),
            max_splits: param(step.rule.max_splits),
            min_keys: param(step.rule.min_keys),
            direct: u32::from(direct),
            ..self.base
        };
        let head_groups = groups(self.spec.heads, HEADS_PER_GROUP);
        for i in 0..passes {
            let params = AttentionParams {
                pass_start: (i * pass_keys) as u32,
                ..params
            };
            self.passes.dispatch(
                ctx,
                pass,
                i,
                params,
                head_groups,
                (tokens * step.splits) as u32,
            );
        }
        if !direct {
            self.combine.set_params(ctx, params);
            self.combine
                .dispatch(pass, self.spec.heads as u32, tokens as u32);
        }
    }
}
