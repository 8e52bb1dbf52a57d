//! Building a layer once: its kernels bound to the step buffers (shared, or its own), the
//! router, permutation, grouped GEMMs (tuned per adapter), shared expert and combine, then the
//! expert arena and its residency mode.

use std::cell::{OnceCell, RefCell};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::combine::{Combine, CombineBuffers, DownCombine, DownCombineBuffers};
use crate::kernels::cpu_rows::CpuRows;
use crate::kernels::expert_arena::ExpertArena;
use crate::kernels::grouped_matmul::GroupedMatmul;
use crate::kernels::matmul::{Glu, MatmulBuffers, MatmulSpec, WeightFormat};
use crate::kernels::permute::{Permute, PermuteBuffers};
use crate::kernels::tiling::{MatmulVariant, TileKind};
use crate::kernels::tune::{self, ExpertGemms};
use crate::moe::budget::ResidencyOptions;
use crate::moe::cpu_options::CpuPolicy;
use crate::moe::cpu_side::CpuSide;
use crate::moe::layer::state::MoeLayer;
use crate::moe::mlp::{DenseMlp, MlpIo};
use crate::moe::offload::Offload;
use crate::moe::pool::{CacheView, ExpertPool};
use crate::moe::router::{Router, RouterWeights};
use crate::moe::stats::LayerStats;
use crate::moe::step_buffers::{StepBuffers, StepShape};
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::weights::MoeWeights;

/// How to build a layer beyond its shape and weights.
pub struct LayerBuild<'a> {
    /// Most tokens per step.
    pub max_tokens: usize,
    /// Caller-owned [max_tokens, hidden] f32 input and output; the layer allocates its own
    /// when `None`.
    pub io: Option<(wgpu::Buffer, wgpu::Buffer)>,
    /// The step buffers of the model the layer belongs to, shared with its other MoE layers
    /// (they run one after another); the layer allocates its own when `None`.
    pub buffers: Option<Arc<StepBuffers>>,
    /// Expert slots, from [`ResidencyOptions::slots_per_layer`]. At least the expert count:
    /// every expert is uploaded now and steps need no readback. Fewer: cache mode, where an
    /// expert is uploaded only when a step first needs it.
    pub slots: usize,
    /// Budget and policy of the expert cache.
    pub residency: &'a ResidencyOptions,
    /// Decoder layer index, for statistics and traces.
    pub layer: usize,
    /// Slots shared with the model's other MoE layers, and this layer's index among the
    /// pool's layers: cache mode in the pool's slots, and `slots` is not used.
    pub pool: Option<(&'a ExpertPool, usize)>,
}

impl MoeLayer {
    /// Builds the layer with its own input and output buffers and every expert resident.
    pub fn new(
        ctx: &Context,
        spec: MoeLayerSpec,
        weights: &MoeWeights,
        max_tokens: usize,
    ) -> Result<Self> {
        let slots = spec.routing.experts;
        let build = LayerBuild {
            max_tokens,
            io: None,
            buffers: None,
            slots,
            residency: &ResidencyOptions::default(),
            layer: 0,
            pool: None,
        };
        Self::build(ctx, spec, weights, build)
    }

    /// Builds the layer around caller-owned `x` and `out` buffers ([max_tokens, hidden] f32),
    /// with an empty arena of one slot per expert (see [`Self::upload_all`]).
    pub fn with_io(
        ctx: &Context,
        spec: MoeLayerSpec,
        weights: &MoeWeights,
        max_tokens: usize,
        x: wgpu::Buffer,
        out: wgpu::Buffer,
    ) -> Result<Self> {
        let slots = spec.routing.experts;
        let build = LayerBuild {
            max_tokens,
            io: Some((x, out)),
            buffers: None,
            slots,
            residency: &ResidencyOptions::default(),
            layer: 0,
            pool: None,
        };
        Self::assemble(ctx, spec, weights, build)
    }

    /// Builds the layer with the expert residency of `b`: every expert uploaded now when the
    /// slots hold them all, otherwise an empty cache that uploads experts as steps need them.
    pub fn build(
        ctx: &Context,
        spec: MoeLayerSpec,
        weights: &MoeWeights,
        b: LayerBuild<'_>,
    ) -> Result<Self> {
        let layer = Self::assemble(ctx, spec, weights, b)?;
        if !layer.is_cached() {
            layer.upload_all(ctx, weights)?;
        }
        Ok(layer)
    }

    fn assemble(
        ctx: &Context,
        spec: MoeLayerSpec,
        weights: &MoeWeights,
        b: LayerBuild<'_>,
    ) -> Result<Self> {
        let max_tokens = b.max_tokens;
        let r = &spec.routing;
        r.validate()?;
        let (h, i, e, k) = (spec.hidden, spec.inter, r.experts, r.top_k);
        if max_tokens == 0 {
            return Err(Error::input("max_tokens must be at least 1"));
        }
        weights.check(&spec)?;
        // A layer whose experts all run on the CPU needs no slots (its arena has one, unused).
        let cpu_only = b.residency.cpu.policy == CpuPolicy::Always;
        if b.slots < k && b.pool.is_none() && !cpu_only {
            return Err(Error::input(format!(
                "{} expert slots are below k = {k}: each token needs its {k} experts resident at once",
                b.slots
            )));
        }
        let (x, out) = match b.io {
            Some((x, out)) => {
                let need = (max_tokens * h * 4) as u64;
                if x.size() < need || out.size() < need {
                    return Err(Error::input(format!(
                        "input/output buffers of {} and {} bytes; [{max_tokens}, {h}] f32 needs {need}",
                        x.size(),
                        out.size()
                    )));
                }
                (x, out)
            }
            None => {
                let bytes = (max_tokens * h * 4) as u64;
                (
                    ctx.storage("moe input", bytes)?,
                    ctx.storage("moe output", bytes)?,
                )
            }
        };

        let buffers = match b.buffers {
            Some(shared) => {
                shared.check_fits(StepShape::of(&spec, max_tokens))?;
                shared
            }
            None => Arc::new(StepBuffers::new(ctx, StepShape::of(&spec, max_tokens))?),
        };
        let sb = &*buffers;
        let route = &sb.route;
        // Expert GEMM tilings (tuned per adapter and shape, or the defaults).
        let gemms = ExpertGemms {
            hidden: h,
            inter: i,
            glu: spec.glu,
            bias: spec.expert_bias,
            format: spec.format,
        };
        let tilings =
            [TileKind::Prefill, TileKind::Decode].map(|kind| tune::tiling(ctx, kind, &gemms));
        let permute_buffers = PermuteBuffers {
            ids: &route.ids,
            counts: &sb.counts,
            offsets: &sb.offsets,
            cursor: &sb.cursor,
            tiles: &sb.tiles,
            args: &sb.args,
            rows: &sb.rows,
            pos: &sb.pos,
        };
        // Router and selection, which counts the pairs per expert and, for a step of few
        // tokens, builds the permutation too.
        let router_weights = RouterWeights::new(ctx, &spec, weights)?;
        let tag = u32::try_from(b.layer + 1)
            .map_err(|_| Error::input(format!("layer index {} is out of range", b.layer)))?;
        let router = Router::new(
            ctx,
            &spec,
            &router_weights,
            &x,
            route,
            Some(&permute_buffers),
            Some((&sb.status, tag)),
        )?;
        let permute = Permute::new(ctx, e, permute_buffers)?;

        // Grouped expert GEMMs over the arena: the pool's, or the layer's own.
        let arena = match b.pool {
            Some((pool, _)) => {
                let a = &pool.arena;
                if (a.hidden, a.inter, a.format) != (h, i, spec.format) {
                    return Err(Error::input(format!(
                        "an expert pool of [{}, {}] {} experts cannot hold layer {}'s [{h}, {i}] {}",
                        a.hidden, a.inter, a.format, b.layer, spec.format
                    )));
                }
                pool.arena.clone()
            }
            None => Arc::new(ExpertArena::new(
                ctx,
                h,
                i,
                if cpu_only { 1 } else { b.slots.min(e) },
                spec.format,
                spec.expert_bias,
            )?),
        };
        let slots = arena.slots;
        let table = ExpertArena::new_table(ctx, e)?;
        let grouped = |n, kk, glu, gather, format, tiling| MatmulSpec {
            n,
            k: kk,
            glu,
            bias: spec.expert_bias,
            format,
            grouped: true,
            gather,
            tail: false,
            tiling,
        };
        let gate_up_buffers = MatmulBuffers {
            x: &x,
            w: &arena.gate_up,
            bias: &arena.gate_up_bias,
            slots: &table,
            tiles: &sb.tiles,
            rows: &sb.rows,
            out: &sb.hidden,
        };
        let down_buffers = MatmulBuffers {
            x: &sb.hidden,
            w: &arena.down,
            bias: &arena.down_bias,
            slots: &table,
            tiles: &sb.tiles,
            rows: &sb.rows,
            out: &sb.expert_out,
        };
        let mut gate_up = Vec::new();
        let mut down = Vec::new();
        for tiling in tilings {
            gate_up.push(GroupedMatmul::new(
                ctx,
                grouped(i, h, spec.glu, true, spec.format.gate_up, tiling),
                h,
                i,
                k,
                gate_up_buffers,
            )?);
            down.push(GroupedMatmul::new(
                ctx,
                grouped(h, i, Glu::None, false, spec.format.down, tiling),
                i,
                h,
                k,
                down_buffers,
            )?);
        }

        // Shared expert and combine.
        let shared = match (&weights.shared, spec.shared_inter) {
            (Some(s), Some(si)) => Some(DenseMlp::new(
                ctx,
                &s.mlp,
                h,
                si,
                spec.glu,
                spec.format,
                s.packed.as_ref(),
                max_tokens,
                MlpIo {
                    x: &x,
                    hidden: &sb.shared_hidden,
                    out: &sb.shared_out,
                },
            )?),
            _ => None,
        };
        let combine_buffers = CombineBuffers {
            weights: &route.weights,
            pos: &sb.pos,
            y: &sb.expert_out,
            shared_out: &sb.shared_out,
            shared_gate: &route.shared_gate,
            out: &out,
        };
        let combine = Combine::new(ctx, h, k, shared.is_some(), r.shared_gate, combine_buffers)?;
        let decode_down = &down[1].full;
        // The fused down + combine cannot apply int8's per-row scales of the down matrix.
        let fusable = decode_down.spec.tiling.variant == MatmulVariant::Vector
            && spec.format.down != WeightFormat::Int8;
        let down_combine = if fusable {
            Some(DownCombine::new(
                ctx,
                decode_down,
                h,
                shared.is_some(),
                r.shared_gate,
                DownCombineBuffers {
                    down: down_buffers,
                    ids: &route.ids,
                    combine: combine_buffers,
                },
            )?)
        } else {
            None
        };

        let [gp, gd] = vec_to_pair(gate_up);
        let [dp, dd] = vec_to_pair(down);
        let expert_bytes = ExpertArena::expert_bytes(h, i, spec.format, spec.expert_bias);
        let mut stats = LayerStats::new(b.layer, e, slots, expert_bytes, b.residency.record_trace);
        if b.pool.is_some() {
            stats.mode = "pool";
        }
        if cpu_only {
            stats.mode = "cpu";
        }
        let cache = match b.pool {
            Some((pool, index)) => Some(pool.view(index)?),
            None if slots < e || cpu_only => Some(CacheView::own(e, slots, b.residency.policy)?),
            None => None,
        };
        let (mut offload, mut cpu_rows) = (None, None);
        if let Some(cache) = cache {
            let source = weights.experts.clone();
            let cpu = CpuSide::new(ctx, &spec, source.clone(), &b.residency.cpu, max_tokens)?;
            if cpu.is_some() {
                let rows = sb.cpu_rows(ctx)?;
                cpu_rows = Some(CpuRows::new(ctx, rows, &sb.pos, &sb.expert_out)?);
            }
            let off = Offload::new(ctx, &spec, source, cache, table.clone(), cpu)?;
            offload = Some(RefCell::new(off));
        }
        Ok(Self {
            spec,
            max_tokens,
            x,
            out,
            buffers,
            arena,
            table,
            router_weights,
            tilings,
            router,
            permute,
            gate_up: [gp, gd],
            down: [dp, dd],
            shared,
            combine,
            down_combine,
            offload,
            cpu_rows,
            stats: RefCell::new(stats),
            readback: OnceCell::new(),
        })
    }
}

fn vec_to_pair(mut v: Vec<GroupedMatmul>) -> [GroupedMatmul; 2] {
    let second = v.pop();
    let first = v.pop();
    match (first, second) {
        (Some(a), Some(b)) => [a, b],
        _ => unreachable!("one matmul per tiling variant"),
    }
}
