//! `shaders/attention*.wgsl`: causal attention of new queries over the KV cache, with GQA, an
//! optional sliding window and optional per-head sinks. `attention.wgsl` runs one thread per
//! (token, head, key split), walking its keys in passes that each stay under llvmpipe's loop
//! limit; `attention_combine.wgsl` merges the splits' partial softmax results in split order
//! (no float atomics, so a result depends only on the split count). Prefill steps and short
//! contexts take one split and one pass, which writes the output directly. Decode steps over
//! long contexts split the keys (flash-decoding): one thread per head would otherwise walk the
//! whole cache alone.

mod key_split;
mod passes;

use crate::error::{Error, Result};
use crate::gpu::{Binding, Context, KernelDef, Override, PipelineKey};
use crate::kernels::{Dispatch, groups};

pub use key_split::{KeySplit, MAX_SPLITS, SPLIT_MAX_TOKENS, SplitKv, partials_bytes};
pub use passes::AttentionBuffers;
pub(crate) use passes::AttentionParams;
use passes::Passes;

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

/// Largest value head (`MAX_V` in `attention.wgsl`: accumulators in registers). DeepSeek's
/// latent attention needs kv_lora_rank = 512.
pub const MAX_V_DIM: usize = 512;

/// Threads per workgroup, over heads.
const HEADS_PER_GROUP: u32 = 16;

/// The shape, math and capacity of one attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    /// Query heads.
    pub heads: usize,
    /// Key/value heads (a divisor of `heads`).
    pub kv_heads: usize,
    /// Query/key width per head.
    pub qk_dim: usize,
    /// Value width per head.
    pub v_dim: usize,
    /// Keys within this many positions of the query (itself included); None = all.
    pub window: Option<usize>,
    /// Per-head attention sinks (gpt-oss): a learned logit in every softmax.
    pub sinks: bool,
    /// Multiplies q · k.
    pub scale: f32,
    /// Most queries one step attends.
    pub max_tokens: usize,
    /// Cache positions: no query sees more keys.
    pub positions: usize,
    /// Keys one invocation walks per dispatch; None = as many as llvmpipe's loop limit allows
    /// (see [`AttentionSpec::max_pass_keys`]). Smaller values are for tests.
    pub pass_keys: Option<usize>,
}

impl AttentionSpec {
    /// Checks the shape: `heads` a multiple of `kv_heads`, head widths in range, a positive window
    /// and nonzero capacities.
    pub fn validate(&self) -> Result<()> {
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::input(format!(
                "attention: {} kv heads do not divide {} heads",
                self.kv_heads, self.heads
            )));
        }
        if self.qk_dim == 0 || self.v_dim == 0 || self.v_dim > MAX_V_DIM {
            return Err(Error::config(
                "head_dim",
                format!(
                    "value head dim {} must be in 1..={MAX_V_DIM} (query/key head dim {})",
                    self.v_dim, self.qk_dim
                ),
            ));
        }
        if self.window == Some(0) {
            return Err(Error::config("sliding_window", "must be positive"));
        }
        if self.max_tokens == 0 || self.positions == 0 {
            return Err(Error::input(
                "attention: max_tokens and positions must be positive",
            ));
        }
        if let Some(n) = self.pass_keys
            && (n == 0 || n > self.max_pass_keys())
        {
            return Err(Error::input(format!(
                "attention: {n} keys per pass must be in 1..={}",
                self.max_pass_keys()
            )));
        }
        Ok(())
    }

    /// The most keys one invocation may walk in a dispatch. llvmpipe (lavapipe and GL) ends
    /// every loop of an invocation once 65535 loop iterations have run in total
    /// (`LP_MAX_TGSI_LOOP_ITERATIONS`), silently, so a pass must stay under that: each key
    /// costs one iteration, one per 16 columns of q · k, and two per 16 value columns (the
    /// rescale and the accumulation); loading, storing or writing the state costs a few more.
    pub fn max_pass_keys(&self) -> usize {
        const LOOP_ITERATIONS: usize = 65535;
        let blocks = |n: usize| n.div_ceil(16);
        let per_key = 1 + blocks(self.qk_dim) + 2 * blocks(self.v_dim);
        (LOOP_ITERATIONS - 2 * blocks(self.v_dim) - 64) / per_key
    }

    /// Keys a pass walks.
    fn pass_keys(&self) -> usize {
        self.pass_keys.unwrap_or_else(|| self.max_pass_keys())
    }

    /// The most keys any query sees.
    fn max_keys(&self) -> usize {
        self.window
            .map_or(self.positions, |w| w.min(self.positions))
    }

    /// Keys the last of `tokens` queries at positions pos0.. sees (the most of any of them).
    fn keys(&self, tokens: usize, pos0: usize) -> usize {
        let last = pos0 + tokens;
        self.window.map_or(last, |w| w.min(last))
    }

    /// Bytes of a partials buffer holding `slots` (token, split) results of every head.
    pub fn partials_bytes(&self, slots: usize) -> u64 {
        partials_bytes(slots, self.heads, self.v_dim)
    }

    /// (token, split) slots a partials buffer needs at least: one per query where one
    /// query's keys can take more than one pass.
    pub fn min_partial_slots(&self) -> usize {
        if self.max_keys() > self.pass_keys() {
            self.max_tokens
        } else {
            0
        }
    }
}

/// Causal attention over a KV cache, bound to its buffers: one pass per `pass_keys` keys or a key
/// split, then the merge of the partial states.
pub struct Attention {
    spec: AttentionSpec,
    policy: SplitKv,
    base: AttentionParams,
    passes: Passes,
    combine: Dispatch<AttentionParams>,
    /// (token, split) states the partials buffer holds.
    slots: usize,
}

impl Attention {
    /// Attention that splits decode steps' keys as `policy` says.
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
        let base = AttentionParams {
            tokens: 0,
            pos0: 0,
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
            pass_start: 0,
            pass_keys: s.pass_keys() as u32,
            direct: 1,
            _pad: [0; 3],
        };
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
            policy,
            base,
            passes,
            combine,
            slots,
        })
    }

    /// The shape it was built for.
    pub fn spec(&self) -> &AttentionSpec {
        &self.spec
    }

    /// How a step of `tokens` queries at positions pos0.. divides its keys.
    pub fn split_for(&self, tokens: usize, pos0: usize) -> KeySplit {
        key_split::split_for(
            self.policy,
            self.slots,
            tokens,
            self.spec.keys(tokens, pos0),
        )
    }

    /// Attends `tokens` queries at positions pos0.. over cache rows 0..pos0 + tokens, split as
    /// [`Self::split_for`] says.
    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        pos0: usize,
    ) {
        self.record(ctx, pass, tokens, pos0, self.split_for(tokens, pos0));
    }

    /// As [`Self::encode`] with a given split (tests and benchmarks); an error unless
    /// [`Self::split_fits`].
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
        self.record(ctx, pass, tokens, pos0, split);
        Ok(())
    }

    /// Whether `split` covers every key of a step of `tokens` queries at positions pos0.., its
    /// states fit the partials, and the step fits the spec.
    pub fn split_fits(&self, tokens: usize, pos0: usize, split: KeySplit) -> bool {
        let s = &self.spec;
        let keys = s.keys(tokens, pos0);
        let passes = split.chunk.div_ceil(s.pass_keys());
        let direct = split.splits == 1 && passes <= 1;
        tokens >= 1
            && tokens <= s.max_tokens
            && pos0 + tokens <= s.positions
            && split.splits >= 1
            && split.splits * split.chunk >= keys
            && passes <= self.passes.len()
            && (direct || tokens * split.splits <= self.slots)
    }

    fn record(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        pos0: usize,
        split: KeySplit,
    ) {
        let pass_keys = self.spec.pass_keys();
        let passes = split.chunk.div_ceil(pass_keys).max(1);
        let direct = split.splits == 1 && passes == 1;
        let step = AttentionParams {
            tokens: tokens as u32,
            pos0: pos0 as u32,
            splits: split.splits as u32,
            chunk: split.chunk as u32,
            direct: u32::from(direct),
            ..self.base
        };
        let head_groups = groups(self.spec.heads, HEADS_PER_GROUP);
        for i in 0..passes {
            let params = AttentionParams {
                pass_start: (i * pass_keys) as u32,
                ..step
            };
            self.passes.dispatch(
                ctx,
                pass,
                i,
                params,
                head_groups,
                (tokens * split.splits) as u32,
            );
        }
        if !direct {
            self.combine.set_params(ctx, step);
            self.combine
                .dispatch(pass, self.spec.heads as u32, tokens as u32);
        }
    }
}
