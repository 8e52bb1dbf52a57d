//! The shape, math and capacity of one attention call, and the keys its queries see.

use crate::error::{Error, Result};
use crate::kernels::attention::key_split::partials_bytes;

/// Largest value head (`MAX_V` in `attention.wgsl`: accumulators in registers). DeepSeek's
/// latent attention needs kv_lora_rank = 512.
pub const MAX_V_DIM: usize = 512;

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
    pub(super) fn pass_keys(&self) -> usize {
        self.pass_keys.unwrap_or_else(|| self.max_pass_keys())
    }

    /// The most keys any query sees.
    pub(super) fn max_keys(&self) -> usize {
        self.window
            .map_or(self.positions, |w| w.min(self.positions))
    }

    /// Keys the last of `tokens` queries at positions pos0.. sees (the most of any of them).
    pub(super) fn keys(&self, tokens: usize, pos0: usize) -> usize {
        self.row_keys(pos0 + tokens - 1)
    }

    /// Keys a query at `position` sees.
    pub(super) fn row_keys(&self, position: usize) -> usize {
        self.window.map_or(position + 1, |w| w.min(position + 1))
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
