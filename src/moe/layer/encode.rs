//! Recording a layer's kernels: routing (whose selection also counts the pairs per expert),
//! the optional host sync of an expert cache, then the permutation, grouped GEMMs, shared
//! expert and combine; a decode step fuses the down GEMM into the combine.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::permute::{self, PermuteShape};
use crate::kernels::tiling::TileKind;
use crate::moe::layer::{MoeLayer, kind_for};
use crate::moe::routing::DynamicActivation;

/// Where the scan writes the indirect sizes of each GEMM's (full, tail) tile lists.
const GATE_UP_ARGS: (u64, u64) = (permute::ARGS_A, permute::ARGS_A_TAIL);
const DOWN_ARGS: (u64, u64) = (permute::ARGS_B, permute::ARGS_B_TAIL);

impl MoeLayer {
    /// Records router and selection, which also counts the pairs per expert, for `tokens`
    /// tokens. With every expert resident, the selection of a step of at most 64 tokens also
    /// builds the permutation, which [`Self::encode_experts`] then leaves out.
    pub fn encode_route(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        activation: &DynamicActivation,
    ) -> Result<()> {
        let permute = self.offload.is_none().then(|| self.permute_shape(tokens));
        let permuted = self.router.encode(ctx, pass, tokens, activation, permute)?;
        self.select_permuted.set(permuted);
        Ok(())
    }

    /// Tile height and column blocks of the GEMMs a step of `tokens` tokens runs.
    fn permute_shape(&self, tokens: usize) -> PermuteShape {
        let v = self.variant(tokens);
        PermuteShape {
            block_m: self.tilings[v].block_m(),
            tail_m: self.gate_up[v].tail_m(),
            col_blocks: (
                self.gate_up[v].full.spec.col_blocks(),
                self.down[v].full.spec.col_blocks(),
            ),
        }
    }

    /// Whether the host must act between [`Self::encode_route`] and [`Self::encode_experts`]
    /// by calling [`Self::sync`]: true in cache mode, false while every expert is resident.
    pub fn needs_sync(&self) -> bool {
        self.offload.is_some()
    }

    /// Records the expert part (permutation, grouped GEMMs, shared expert, combine) after
    /// [`Self::encode_route`] (and [`Self::sync`] where needed).
    pub fn encode_experts(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        let select_permuted = self.select_permuted.take();
        let synced = self
            .offload
            .as_ref()
            .is_some_and(|o| std::mem::take(&mut o.borrow_mut().permuted));
        // A cache sync that already ran the permutation ran the GEMMs of earlier rounds too,
        // and the unfused combine must follow its last round.
        let fused = match &self.down_combine {
            Some(fused) if !synced && self.variant(tokens) == 1 => Some(fused),
            _ => None,
        };
        if !synced && !select_permuted {
            self.encode_permute(ctx, pass, tokens);
        }
        let v = self.variant(tokens);
        self.gate_up[v].encode_indirect(pass, &self.args, GATE_UP_ARGS);
        if fused.is_none() {
            self.down[v].encode_indirect(pass, &self.args, DOWN_ARGS);
        }
        if let Some(shared) = &self.shared {
            shared.encode(ctx, pass, tokens);
        }
        match fused {
            Some(fused) => fused.encode(ctx, pass, tokens),
            None => self.combine.encode(ctx, pass, tokens),
        }
    }

    fn variant(&self, tokens: usize) -> usize {
        usize::from(kind_for(tokens, self.top_k(), self.experts()) == TileKind::Decode)
    }

    /// Scan (and, for a few pairs, scatter) of the counted pairs into expert segments and
    /// GEMM tiles.
    pub(crate) fn encode_permute(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
    ) {
        let shape = self.permute_shape(tokens);
        self.permute.encode(ctx, pass, tokens * self.top_k(), shape);
    }

    /// The grouped GEMMs over the experts the slot table maps (unfused: a cache sync runs
    /// them round by round, and the combine follows the last round).
    pub(crate) fn encode_gemms(&self, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        let v = self.variant(tokens);
        self.gate_up[v].encode_indirect(pass, &self.args, GATE_UP_ARGS);
        self.down[v].encode_indirect(pass, &self.args, DOWN_ARGS);
    }

    /// Records the whole layer, `out[..tokens] = moe(x[..tokens])`, submitting and syncing in
    /// the middle when [`Self::needs_sync`] says so. Returns the encoder to continue with.
    pub fn encode(
        &self,
        ctx: &Context,
        encoder: wgpu::CommandEncoder,
        tokens: usize,
        activation: &DynamicActivation,
    ) -> Result<wgpu::CommandEncoder> {
        self.encode_with_next(ctx, encoder, tokens, activation, None)
    }

    /// As [`Self::encode`], also predicting the experts of `next` (the following MoE layer,
    /// whose predictor reads this layer's hidden state; see [`Self::attach_predictor`]) so
    /// that its sync can upload them while this layer computes.
    pub fn encode_with_next(
        &self,
        ctx: &Context,
        mut encoder: wgpu::CommandEncoder,
        tokens: usize,
        activation: &DynamicActivation,
        next: Option<&MoeLayer>,
    ) -> Result<wgpu::CommandEncoder> {
        if tokens == 0 || tokens > self.max_tokens {
            return Err(Error::input(format!(
                "{tokens} tokens; the layer takes 1 to {} per step",
                self.max_tokens
            )));
        }
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.encode_route(ctx, &mut pass, tokens, activation)?;
            if let Some(next) = next {
                next.encode_prediction(ctx, &mut pass, tokens, activation)?;
            }
        }
        if self.needs_sync() {
            encoder = self.sync(ctx, encoder, tokens, next)?;
        }
        {
            let mut pass = encoder.begin_compute_pass(&Default::default());
            self.encode_experts(ctx, &mut pass, tokens);
        }
        Ok(encoder)
    }
}
