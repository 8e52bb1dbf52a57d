//! Building a layer once: buffers for `max_tokens`, the router, permutation, grouped GEMMs
//! (tuned per adapter), shared expert and combine, then the expert arena and its residency mode.

use std::cell::{Cell, RefCell};

use crate::error::{Error, Result};
use crate::gpu::{Context, Staging};
use crate::kernels::combine::{Combine, CombineBuffers, DownCombine, DownCombineBuffers};
use crate::kernels::matmul::{Glu, GroupedMatmul, MatmulBuffers, MatmulSpec, WeightFormat};
use crate::kernels::permute::{self, Permute, PermuteBuffers};
use crate::kernels::tiling::{MatmulVariant, TileKind};
use crate::kernels::tune::{self, ExpertGemms};
use crate::moe::arena::ExpertArena;
use crate::moe::budget::ResidencyOptions;
use crate::moe::experts::MoeWeights;
use crate::moe::layer::{LayerBuild, MoeLayer, MoeLayerSpec};
use crate::moe::mlp::DenseMlp;
use crate::moe::offload::Offload;
use crate::moe::router::{Router, RouterOutputs, RouterWeights, logit_cols};
use crate::moe::stats::LayerStats;

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
            slots,
            residency: &ResidencyOptions::default(),
            layer: 0,
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
            slots,
            residency: &ResidencyOptions::default(),
            layer: 0,
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
        let slots = b.slots;
        let layer = Self::assemble(ctx, spec, weights, b)?;
        if slots >= layer.experts() {
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
        if b.slots < k {
            return Err(Error::input(format!(
                "{} expert slots are below k = {k}: each token needs its {k} experts resident at once",
                b.slots
            )));
        }
        let slots = b.slots.min(e);
        let pairs = max_tokens * k;
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

        let counts = ctx.storage("expert counts", (e * 4) as u64)?;
        let route = RouterOutputs::new(ctx, &spec, max_tokens)?;
        // Expert GEMM tilings, then the permutation and tile list (sized for the smaller tile).
        let gemms = ExpertGemms {
            hidden: h,
            inter: i,
            glu: spec.glu,
            bias: spec.expert_bias,
            format: spec.format,
        };
        let tilings =
            [TileKind::Prefill, TileKind::Decode].map(|kind| tune::tiling(ctx, kind, &gemms));
        let min_block = tilings.iter().map(|t| t.block_m()).min().unwrap_or(1);
        let offsets = ctx.storage("expert offsets", ((e + 1) * 4) as u64)?;
        let cursor = ctx.storage("expert cursor", (e * 4) as u64)?;
        let tiles = ctx.storage(
            "gemm tiles",
            (permute::max_tiles(pairs, min_block, e) * 16) as u64,
        )?;
        let args = ctx.indirect_storage("gemm dispatch args", (permute::ARGS_WORDS * 4) as u64)?;
        let rows = ctx.storage("sorted rows", (pairs * 4) as u64)?;
        let pos = ctx.storage("pair positions", (pairs * 4) as u64)?;
        let permute_buffers = PermuteBuffers {
            ids: &route.ids,
            counts: &counts,
            offsets: &offsets,
            cursor: &cursor,
            tiles: &tiles,
            args: &args,
            rows: &rows,
            pos: &pos,
        };
        // Router and selection, which counts the pairs per expert and, for a step of few
        // tokens, builds the permutation too.
        let router_weights = RouterWeights::new(ctx, &spec, weights)?;
        let router = Router::new(
            ctx,
            &spec,
            &router_weights,
            &x,
            &route,
            Some(&counts),
            Some(&permute_buffers),
        )?;
        let permute = Permute::new(ctx, e, permute_buffers)?;

        // Grouped expert GEMMs over the arena.
        let arena = ExpertArena::new(ctx, h, i, e, slots, spec.format, spec.expert_bias)?;
        let hbuf = ctx.storage("expert hidden", (pairs * i * 4) as u64)?;
        let y = ctx.storage("expert output", (pairs * h * 4) as u64)?;
        let grouped = |n, kk, glu, gather, tiling| MatmulSpec {
            n,
            k: kk,
            glu,
            bias: spec.expert_bias,
            format: spec.format,
            grouped: true,
            gather,
            tail: false,
            tiling,
        };
        let gate_up_buffers = MatmulBuffers {
            x: &x,
            w: &arena.gate_up,
            bias: &arena.gate_up_bias,
            slots: &arena.table,
            tiles: &tiles,
            rows: &rows,
            out: &hbuf,
        };
        let down_buffers = MatmulBuffers {
            x: &hbuf,
            w: &arena.down,
            bias: &arena.down_bias,
            slots: &arena.table,
            tiles: &tiles,
            rows: &rows,
            out: &y,
        };
        let mut gate_up = Vec::new();
        let mut down = Vec::new();
        for tiling in tilings {
            gate_up.push(GroupedMatmul::new(
                ctx,
                grouped(i, h, spec.glu, true, tiling),
                h,
                i,
                k,
                gate_up_buffers,
            )?);
            down.push(GroupedMatmul::new(
                ctx,
                grouped(h, i, Glu::None, false, tiling),
                i,
                h,
                k,
                down_buffers,
            )?);
        }

        // Shared expert and combine.
        let shared_out = ctx.storage(
            "shared expert output",
            (spec.shared_inter.map_or(1, |_| max_tokens) * h * 4) as u64,
        )?;
        let shared = match (&weights.shared, spec.shared_inter) {
            (Some(s), Some(si)) => Some(DenseMlp::new(
                ctx,
                &s.mlp,
                h,
                si,
                spec.glu,
                spec.format,
                max_tokens,
                &x,
                &shared_out,
            )?),
            _ => None,
        };
        let combine_buffers = CombineBuffers {
            weights: &route.weights,
            pos: &pos,
            y: &y,
            shared_out: &shared_out,
            shared_gate: &route.shared_gate,
            out: &out,
        };
        let combine = Combine::new(ctx, h, k, shared.is_some(), r.shared_gate, combine_buffers)?;
        let decode_down = &down[1].full;
        let fusable = decode_down.spec.tiling.variant == MatmulVariant::Vector
            && matches!(spec.format, WeightFormat::F32 | WeightFormat::F16);
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

        let readback_bytes = (max_tokens * (h + logit_cols(&spec) + 2 * k) * 4) as u64;
        let readback = Staging::new(ctx, "moe readback", readback_bytes);

        let [gp, gd] = vec_to_pair(gate_up);
        let [dp, dd] = vec_to_pair(down);
        let expert_bytes = ExpertArena::expert_bytes(h, i, spec.format, spec.expert_bias);
        let stats = LayerStats::new(b.layer, e, slots, expert_bytes, b.residency.record_trace);
        let offload = if slots < e {
            let source = weights.experts.clone();
            let off = Offload::new(ctx, &spec, source, slots, b.residency.policy)?;
            Some(RefCell::new(off))
        } else {
            None
        };
        Ok(Self {
            spec,
            max_tokens,
            x,
            out,
            route,
            counts,
            args,
            pos,
            expert_out: y,
            arena,
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
            select_permuted: Cell::new(false),
            stats: RefCell::new(stats),
            readback,
        })
    }

    /// Uploads every expert into the slot of the same number (the arena must hold them all).
    pub fn upload_all(&self, ctx: &Context, weights: &MoeWeights) -> Result<()> {
        let e = self.spec.routing.experts;
        if self.arena.slots < e {
            return Err(Error::input(format!(
                "{} slots cannot hold all {e} experts",
                self.arena.slots
            )));
        }
        for expert in 0..e {
            let w = weights.experts.load(expert)?;
            w.check(
                &format!("expert {expert}"),
                self.spec.hidden,
                self.spec.inter,
                self.spec.expert_bias,
            )?;
            self.arena.upload(ctx, expert, &w);
            self.stats.borrow_mut().uploaded(expert, false);
        }
        let table: Vec<u32> = (0..e as u32).collect();
        self.arena.write_table(ctx, &table);
        self.stats.borrow_mut().note_resident(e);
        Ok(())
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
