//! One MoE layer on the GPU: router → select (counting the pairs per expert) → scan/scatter →
//! grouped gate/up → grouped down → combine (+ shared expert); a step of at most 64 tokens
//! builds the permutation inside its selection (no scan dispatch), and a decode step fuses the
//! down projection into the combine. Pipelines, bind groups and buffers are built once for a
//! maximum token count. Where every expert is resident a forward step records every kernel
//! into one submit; in cache mode (fewer slots than experts) the host reads back which experts
//! the step needs and uploads them between routing and the GEMMs (see `src/moe/offload.rs`).

use std::cell::{Cell, RefCell};

mod build;
mod encode;
mod forward;

pub use forward::{ForwardOptions, MoeOutput, check_input};

use crate::gpu::Staging;
use crate::kernels::INVALID;
use crate::kernels::combine::{Combine, DownCombine};
use crate::kernels::matmul::{Glu, GroupedMatmul, Tiling, WeightFormat};
use crate::kernels::permute::Permute;
use crate::kernels::tiling::TileKind;
use crate::moe::arena::ExpertArena;
use crate::moe::budget::ResidencyOptions;
use crate::moe::mlp::DenseMlp;
use crate::moe::offload::Offload;
use crate::moe::router::{Router, RouterOutputs, RouterWeights};
use crate::moe::routing::RoutingSpec;
use crate::moe::stats::LayerStats;

/// The shape and math of one MoE layer.
#[derive(Debug, Clone, PartialEq)]
pub struct MoeLayerSpec {
    pub hidden: usize,
    /// Routed expert width (`moe_intermediate_size`).
    pub inter: usize,
    pub routing: RoutingSpec,
    pub glu: Glu,
    /// Experts carry biases (gpt-oss).
    pub expert_bias: bool,
    /// Width of the shared expert, if the layer has one.
    pub shared_inter: Option<usize>,
    /// Storage format of expert weights.
    pub format: WeightFormat,
}

/// The kind of GEMM a step of `tokens` tokens runs: a matvec when experts see about one row.
fn kind_for(tokens: usize, k: usize, experts: usize) -> TileKind {
    if tokens * k <= experts {
        TileKind::Decode
    } else {
        TileKind::Prefill
    }
}

pub struct MoeLayer {
    pub spec: MoeLayerSpec,
    pub max_tokens: usize,
    /// [max_tokens, hidden] input.
    pub x: wgpu::Buffer,
    /// [max_tokens, hidden] output.
    pub out: wgpu::Buffer,
    /// Logits, ids, weights and shared gate of the last step.
    route: RouterOutputs,
    /// [experts] tokens per expert, counted by the selection until the scan zeroes them.
    pub(crate) counts: wgpu::Buffer,
    /// [12] indirect dispatch sizes of the grouped GEMMs (full and tail tile lists).
    args: wgpu::Buffer,
    /// [max_tokens · k] expert-sorted row of each (token, slot) pair, `INVALID` if dropped.
    pos: wgpu::Buffer,
    /// [max_tokens · k, hidden] expert outputs in expert-sorted rows.
    expert_out: wgpu::Buffer,
    pub arena: ExpertArena,
    pub(crate) router_weights: RouterWeights,
    router: Router,
    permute: Permute,
    /// Prefill and decode tilings (tuned per adapter and shape, or the defaults).
    tilings: [Tiling; 2],
    /// Indexed like `tilings`.
    gate_up: [GroupedMatmul; 2],
    down: [GroupedMatmul; 2],
    shared: Option<DenseMlp>,
    combine: Combine,
    /// Decode steps' down GEMM + combine in one kernel, where the decode tiling is the
    /// matvec and the weights are f32 or f16.
    down_combine: Option<DownCombine>,
    /// Cache mode only: slot table management, uploads and prediction.
    pub(crate) offload: Option<RefCell<Offload>>,
    /// Whether the selection last recorded also built the step's permutation (a step of at
    /// most 64 tokens with every expert resident), so the expert part skips the scan.
    select_permuted: Cell<bool>,
    pub(crate) stats: RefCell<LayerStats>,
    /// Host-visible copy of output (+ captured routing) for [`Self::forward_with`], sized for
    /// max_tokens so a step allocates nothing.
    readback: Staging,
}

/// How to build a layer beyond its shape and weights.
pub struct LayerBuild<'a> {
    pub max_tokens: usize,
    /// Caller-owned [max_tokens, hidden] f32 input and output; the layer allocates its own
    /// when `None`.
    pub io: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// Expert slots, from [`ResidencyOptions::slots_per_layer`]. At least the expert count:
    /// every expert is uploaded now and steps need no readback. Fewer: cache mode, where an
    /// expert is uploaded only when a step first needs it.
    pub slots: usize,
    pub residency: &'a ResidencyOptions,
    /// Decoder layer index, for statistics and traces.
    pub layer: usize,
}

impl MoeLayer {
    /// The expert GEMMs' tiling for `kind`.
    pub fn tiling(&self, kind: TileKind) -> Tiling {
        self.tilings[usize::from(kind == TileKind::Decode)]
    }

    /// [max_tokens, k] expert ids of the last step (`u32::MAX` for dropped slots).
    pub fn ids_buffer(&self) -> &wgpu::Buffer {
        &self.route.ids
    }

    /// [max_tokens, k] routing weights of the last step (0 for dropped slots).
    pub fn weights_buffer(&self) -> &wgpu::Buffer {
        &self.route.weights
    }

    /// The last step's expert outputs: [max_tokens · k, hidden] in expert-sorted rows, and the
    /// [max_tokens · k] row of each (token, slot) pair (`INVALID` for dropped slots).
    pub fn expert_output_buffers(&self) -> (&wgpu::Buffer, &wgpu::Buffer) {
        (&self.expert_out, &self.pos)
    }

    /// This layer's residency statistics so far.
    pub fn stats(&self) -> LayerStats {
        self.stats.borrow().clone()
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

    pub fn experts(&self) -> usize {
        self.spec.routing.experts
    }

    pub fn top_k(&self) -> usize {
        self.spec.routing.top_k
    }
}
