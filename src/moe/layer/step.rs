//! Recording one step of a layer: route (the selection also counts the pairs per expert) →
//! in cache mode, the readback of the step's experts and their uploads → permutation, grouped
//! GEMMs, shared expert, the rows of experts computed on the CPU, and combine. A decode step
//! whose experts all run on the GPU fuses the down GEMM into the combine.

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder};
use crate::kernels::permute::{self, PermuteShape};
use crate::kernels::tiling::TileKind;
use crate::moe::layer::state::{MoeLayer, kind_for};
use crate::spec::routing::DynamicActivation;

/// Where the scan writes the indirect sizes of each GEMM's (full, tail) tile lists.
const GATE_UP_ARGS: (u64, u64) = (permute::ARGS_A, permute::ARGS_A_TAIL);
const DOWN_ARGS: (u64, u64) = (permute::ARGS_B, permute::ARGS_B_TAIL);

/// One step to record: the first `tokens` rows of the layer's input.
#[derive(Clone, Copy)]
pub struct MoeStep<'a> {
    /// Tokens in the step (at most the layer's `max_tokens`).
    pub tokens: usize,
    /// Expert count overrides and skipping for this step.
    pub activation: &'a DynamicActivation,
    /// The following MoE layer and its activation: where it has a predictor (see
    /// [`MoeLayer::attach_predictor`]), this step also predicts its experts, so that its
    /// step can upload them while this one computes.
    pub next: Option<(&'a MoeLayer, &'a DynamicActivation)>,
}

impl<'a> MoeStep<'a> {
    /// A step of `tokens` tokens with no following layer to predict.
    pub fn new(tokens: usize, activation: &'a DynamicActivation) -> Self {
        Self {
            tokens,
            activation,
            next: None,
        }
    }
}

/// Which kernel put a step's (token, slot) pairs in expert order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permutation {
    /// The selection itself: a step of at most 64 tokens with every expert resident.
    Selection,
    /// The scan (and, for many pairs, the scatter) after the selection.
    Scan,
    /// The scan, in the first round of a cache-mode step that needed more experts than slots;
    /// that round and every one but the last ran their GEMMs in their own submits.
    CacheRounds,
}

/// What a cache-mode step did between its routing and its GEMMs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheRounds {
    /// Rounds of GEMMs: 1 unless the step needed more experts than slots.
    pub rounds: usize,
    /// Experts uploaded because the step needed them.
    pub uploads: usize,
    /// Experts uploaded because they were predicted.
    pub prefetched: usize,
    /// Experts the CPU computed instead (their rows joined the GPU's before the combine).
    pub cpu_experts: usize,
}

/// What one recorded step runs: the plan [`MoeLayer::record`] followed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepRecord {
    /// Tokens in the step.
    pub tokens: usize,
    /// Decode (matvec) or prefill (tiled) expert GEMMs.
    pub kind: TileKind,
    /// Which kernel put the pairs in expert order.
    pub permutation: Permutation,
    /// Whether the down projection runs inside the combine.
    pub fused_down_combine: bool,
    /// Cache mode only: what the host did before the GEMMs.
    pub cache: Option<CacheRounds>,
}

impl MoeLayer {
    /// Records one step, `out[..tokens] = moe(x[..tokens])`, into `rec`: the only way a step is
    /// run, by [`MoeLayer::forward`], a stack and a decoder alike. With every expert resident
    /// it only records, so the caller's submission holds the whole step. In cache mode it
    /// submits what `rec` holds with the routing, reads back the experts the step needs,
    /// uploads the missing ones (and runs the GEMMs of all rounds but the last), then records
    /// the rest into `rec`.
    pub fn record(
        &self,
        ctx: &Context,
        rec: &mut Recorder<'_>,
        step: &MoeStep<'_>,
    ) -> Result<StepRecord> {
        let tokens = step.tokens;
        if tokens == 0 || tokens > self.max_tokens {
            return Err(Error::input(format!(
                "{tokens} tokens; the layer takes 1 to {} per step",
                self.max_tokens
            )));
        }
        if step.next.is_some_and(|(n, _)| std::ptr::eq(n, self)) {
            return Err(Error::input("an MoE layer cannot prefetch for itself"));
        }
        let shape = self.permute_shape(tokens);
        let in_selection = self.router.encode(
            ctx,
            rec.pass(),
            tokens,
            step.activation,
            self.offload.is_none().then_some(shape),
        )?;
        if let Some((next, activation)) = step.next {
            next.record_prediction(ctx, rec.pass(), tokens, activation)?;
        }
        let (cache, on_cpu) = match &self.offload {
            Some(off) => {
                let next = step.next.map(|(n, _)| n);
                let (c, cpu) = self.serve_from_cache(ctx, rec, off, tokens, shape, next)?;
                (Some(c), cpu)
            }
            None => (None, Vec::new()),
        };
        let permutation = match cache {
            _ if in_selection => Permutation::Selection,
            Some(c) if c.rounds > 1 => Permutation::CacheRounds,
            _ => Permutation::Scan,
        };
        let v = self.variant(tokens);
        // Rounds before the last already ran the down GEMM unfused, and rows from the CPU
        // join the GPU's before the combine: both use the unfused combine.
        let fused = self
            .down_combine
            .as_ref()
            .filter(|_| v == 1 && permutation != Permutation::CacheRounds && on_cpu.is_empty());
        // A step whose experts all run on the CPU has no GPU GEMMs.
        let gpu_experts = cache.is_none_or(|c| c.rounds > 0);
        let pass = rec.pass();
        if permutation == Permutation::Scan {
            self.permute.encode(ctx, pass, tokens * self.top_k(), shape);
        }
        if gpu_experts {
            self.gate_up[v].encode_indirect(pass, &self.buffers.args, GATE_UP_ARGS);
        }
        if gpu_experts && fused.is_none() {
            self.down[v].encode_indirect(pass, &self.buffers.args, DOWN_ARGS);
        }
        if let Some(shared) = &self.shared {
            shared.encode(ctx, pass, tokens);
        }
        if !on_cpu.is_empty() {
            self.place_cpu_rows(ctx, rec, &on_cpu)?;
        }
        let pass = rec.pass();
        match fused {
            Some(fused) => fused.encode(ctx, pass, tokens),
            None => self.combine.encode(ctx, pass, tokens),
        }
        Ok(StepRecord {
            tokens,
            kind: kind_for(tokens, self.top_k(), self.experts()),
            permutation,
            fused_down_combine: fused.is_some(),
            cache,
        })
    }

    /// Tile height and column blocks of the GEMMs a step of `tokens` tokens runs.
    pub(super) fn permute_shape(&self, tokens: usize) -> PermuteShape {
        let v = self.variant(tokens);
        PermuteShape {
            block_m: self.tilings[v].block_m(),
            tail_m: self.gate_up[v].tail_m(),
            col_blocks: (
                self.gate_up[v].full.col_blocks(),
                self.down[v].full.col_blocks(),
            ),
        }
    }

    /// The grouped GEMMs of one cache round before the last (unfused: the combine follows
    /// the last round).
    pub(super) fn encode_gemms(&self, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        let v = self.variant(tokens);
        self.gate_up[v].encode_indirect(pass, &self.buffers.args, GATE_UP_ARGS);
        self.down[v].encode_indirect(pass, &self.buffers.args, DOWN_ARGS);
    }
}
