//! What a built MoE layer holds: its kernels bound to the step buffers and the expert arena,
//! its residency state and statistics.

use std::cell::{OnceCell, RefCell};
use std::sync::Arc;

use crate::error::Result;
use crate::gpu::{Context, Staging};
use crate::kernels::combine::{Combine, DownCombine};
use crate::kernels::cpu_rows::CpuRows;
use crate::kernels::expert_arena::ExpertArena;
use crate::kernels::grouped_matmul::GroupedMatmul;
use crate::kernels::matmul::Tiling;
use crate::kernels::permute::Permute;
use crate::kernels::tiling::TileKind;
use crate::moe::mlp::DenseMlp;
use crate::moe::offload::Offload;
use crate::moe::router::{Router, RouterWeights};
use crate::moe::stats::LayerStats;
use crate::moe::step_buffers::StepBuffers;
use crate::spec::INVALID;
use crate::spec::layer_spec::MoeLayerSpec;

/// One MoE layer built for steps of up to `max_tokens` tokens.
pub struct MoeLayer {
    /// Shape and routing the layer was built for.
    pub spec: MoeLayerSpec,
    /// Most tokens per step.
    pub max_tokens: usize,
    /// [max_tokens, hidden] input.
    pub x: wgpu::Buffer,
    /// [max_tokens, hidden] output.
    pub out: wgpu::Buffer,
    /// Routing, permutation and expert activations: shared by the layers of a model.
    pub(super) buffers: Arc<StepBuffers>,
    /// The expert weights in VRAM: the layer's own slots, or a pool shared with other layers.
    pub arena: Arc<ExpertArena>,
    /// `[experts]` slot of each of the layer's experts in `arena`, INVALID when not resident.
    pub table: wgpu::Buffer,
    pub(super) router_weights: RouterWeights,
    pub(super) router: Router,
    pub(super) permute: Permute,
    /// Prefill and decode tilings (tuned per adapter and shape, or the defaults).
    pub(super) tilings: [Tiling; 2],
    /// Indexed like `tilings`.
    pub(super) gate_up: [GroupedMatmul; 2],
    pub(super) down: [GroupedMatmul; 2],
    pub(super) shared: Option<DenseMlp>,
    pub(super) combine: Combine,
    /// Decode steps' down GEMM + combine in one kernel, where the decode tiling is the
    /// matvec and the weights have no per-row scales (every format but int8).
    pub(super) down_combine: Option<DownCombine>,
    /// Cache mode only: slot table management, uploads and prediction.
    pub(super) offload: Option<RefCell<Offload>>,
    /// Puts the rows of experts computed on the CPU among the GPU's, where the layer may
    /// compute any there.
    pub(super) cpu_rows: Option<CpuRows>,
    pub(super) stats: RefCell<LayerStats>,
    /// Host-visible copy of output (+ captured routing) for [`MoeLayer::forward_with`], made on
    /// its first call: a layer driven by a model never reads back and never allocates it.
    pub(super) readback: OnceCell<Staging>,
}

/// The kind of GEMM a step of `tokens` tokens runs: a matvec when experts see about one row.
pub(super) fn kind_for(tokens: usize, k: usize, experts: usize) -> TileKind {
    if tokens * k <= experts {
        TileKind::Decode
    } else {
        TileKind::Prefill
    }
}

impl MoeLayer {
    /// The expert GEMMs' tiling for `kind`.
    pub fn tiling(&self, kind: TileKind) -> Tiling {
        self.tilings[usize::from(kind == TileKind::Decode)]
    }

    /// [max_tokens, k] expert ids of the last step (`u32::MAX` for dropped slots). Shared with
    /// the other layers of a model: read it before the next layer's step.
    pub fn ids_buffer(&self) -> &wgpu::Buffer {
        &self.buffers.route.ids
    }

    /// [max_tokens, k] routing weights of the last step (0 for dropped slots); shared likewise.
    pub fn weights_buffer(&self) -> &wgpu::Buffer {
        &self.buffers.route.weights
    }

    /// The last step's expert outputs: [max_tokens · k, hidden] in expert-sorted rows, and the
    /// [max_tokens · k] row of each (token, slot) pair (`INVALID` for dropped slots); shared
    /// likewise.
    pub fn expert_output_buffers(&self) -> (&wgpu::Buffer, &wgpu::Buffer) {
        (&self.buffers.expert_out, &self.buffers.pos)
    }

    /// `[1]` u32 router status word of the model's layers (see [`StepBuffers::status`]).
    pub fn status_buffer(&self) -> &wgpu::Buffer {
        &self.buffers.status
    }

    /// Zeroes the router status word with a queued write, which runs before the next submit
    /// (it makes no submit of its own).
    pub fn clear_status(&self, ctx: &Context) -> Result<()> {
        ctx.write(&self.buffers.status, 0, &[0; 4])
    }

    /// This layer's residency statistics so far.
    pub fn stats(&self) -> LayerStats {
        let mut stats = self.stats.borrow().clone();
        if let Some(off) = &self.offload {
            // Now, not after the layer's last step: other layers of a pool evict too.
            stats.resident = off.borrow().cache.resident();
        }
        stats
    }

    /// Whether the layer runs as an expert cache (fewer slots than experts, or a shared pool),
    /// so that each step reads back its routing and may upload experts before the GEMMs.
    pub fn is_cached(&self) -> bool {
        self.offload.is_some()
    }

    /// The slots the grouped GEMMs read and this layer's expert → slot table.
    pub fn expert_slots(&self) -> (&ExpertArena, &wgpu::Buffer) {
        (&self.arena, &self.table)
    }

    /// Feeds routing that the caller read back ([tokens, k] ids) into the statistics of a
    /// layer with every expert resident, which reads nothing back itself. Ignored in cache
    /// mode, where every step is recorded as it is served.
    pub fn observe_routing(&self, tokens: usize, ids: &[u32]) {
        if self.offload.is_none() {
            let mut counts = vec![0u32; self.experts()];
            for &id in ids.iter().filter(|&&id| id != INVALID) {
                if let Some(c) = counts.get_mut(id as usize) {
                    *c += 1;
                }
            }
            self.stats.borrow_mut().record_step(tokens, &counts, None);
        }
    }

    /// Routed experts.
    pub fn experts(&self) -> usize {
        self.spec.routing.experts
    }

    /// Experts per token (the checkpoint's k).
    pub fn top_k(&self) -> usize {
        self.spec.routing.top_k
    }

    /// Prefill (0) or decode (1) index of `tilings`, `gate_up` and `down` for a step.
    pub(super) fn variant(&self, tokens: usize) -> usize {
        usize::from(kind_for(tokens, self.top_k(), self.experts()) == TileKind::Decode)
    }
}
