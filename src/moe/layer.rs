//! One MoE layer on the GPU: router → select → count/scan/scatter → grouped gate/up → grouped
//! down → combine (+ shared expert). Pipelines, bind groups and buffers are built once for a
//! maximum token count. Where every expert is resident a forward step records every kernel
//! into one submit; in cache mode (fewer slots than experts) the host reads back which experts
//! the step needs and uploads them between routing and the GEMMs (see `src/moe/offload.rs`).

use std::cell::RefCell;

use crate::error::{Error, Result};
use crate::gpu::{Context, Staging, decode};
use crate::kernels::INVALID;
use crate::kernels::combine::{Combine, CombineBuffers};
use crate::kernels::matmul::{Glu, Matmul, MatmulBuffers, MatmulSpec, Tiling, WeightFormat};
use crate::kernels::permute::{self, Permute, PermuteBuffers};
use crate::kernels::tiling::TileKind;
use crate::kernels::tune::{self, ExpertGemms};
use crate::moe::arena::ExpertArena;
use crate::moe::budget::ResidencyOptions;
use crate::moe::experts::MoeWeights;
use crate::moe::mlp::DenseMlp;
use crate::moe::offload::Offload;
use crate::moe::router::{Router, RouterOutputs, RouterWeights, logit_cols};
use crate::moe::routing::{DynamicActivation, RoutingSpec};
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

/// What a forward step returns.
#[derive(Debug, Clone, Default)]
pub struct MoeOutput {
    /// [tokens, hidden]
    pub output: Vec<f32>,
    /// [tokens, experts], when routing capture was asked for.
    pub router_logits: Option<Vec<f32>>,
    /// [tokens, k]; dropped slots hold `u32::MAX`.
    pub topk_ids: Option<Vec<u32>>,
    /// [tokens, k]; dropped slots hold 0.
    pub topk_weights: Option<Vec<f32>>,
}

/// Options of one forward call.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardOptions {
    /// Also read back router logits, expert ids and weights.
    pub capture_routing: bool,
    pub activation: DynamicActivation,
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
    /// [experts] tokens per expert, from routing until the scan zeroes them.
    pub(crate) counts: wgpu::Buffer,
    /// [6] indirect dispatch sizes of the grouped GEMMs.
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
    gate_up: [Matmul; 2],
    down: [Matmul; 2],
    shared: Option<DenseMlp>,
    combine: Combine,
    /// Cache mode only: slot table management, uploads and prediction.
    pub(crate) offload: Option<RefCell<Offload>>,
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
        check_weights(&spec, weights)?;
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

        // Router and selection.
        let route = RouterOutputs::new(ctx, &spec, max_tokens)?;
        let router_weights = RouterWeights::new(ctx, &spec, weights)?;
        let router = Router::new(ctx, &spec, &router_weights, &x, &route)?;

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
        let counts = ctx.storage("expert counts", (e * 4) as u64)?;
        let offsets = ctx.storage("expert offsets", ((e + 1) * 4) as u64)?;
        let cursor = ctx.storage("expert cursor", (e * 4) as u64)?;
        let tiles = ctx.storage(
            "gemm tiles",
            (permute::max_tiles(pairs, min_block, e) * 16) as u64,
        )?;
        let args = ctx.indirect_storage("gemm dispatch args", (permute::ARGS_WORDS * 4) as u64)?;
        let rows = ctx.storage("sorted rows", (pairs * 4) as u64)?;
        let pos = ctx.storage("pair positions", (pairs * 4) as u64)?;
        let permute = Permute::new(
            ctx,
            e,
            PermuteBuffers {
                ids: &route.ids,
                counts: &counts,
                offsets: &offsets,
                cursor: &cursor,
                tiles: &tiles,
                args: &args,
                rows: &rows,
                pos: &pos,
            },
        )?;

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
            tiling,
        };
        let mut gate_up = Vec::new();
        let mut down = Vec::new();
        for tiling in tilings {
            gate_up.push(Matmul::new(
                ctx,
                grouped(i, h, spec.glu, true, tiling),
                h,
                i,
                k,
                MatmulBuffers {
                    x: &x,
                    w: &arena.gate_up,
                    bias: &arena.gate_up_bias,
                    slots: &arena.table,
                    tiles: &tiles,
                    rows: &rows,
                    out: &hbuf,
                },
            )?);
            down.push(Matmul::new(
                ctx,
                grouped(h, i, Glu::None, false, tiling),
                i,
                h,
                k,
                MatmulBuffers {
                    x: &hbuf,
                    w: &arena.down,
                    bias: &arena.down_bias,
                    slots: &arena.table,
                    tiles: &tiles,
                    rows: &rows,
                    out: &y,
                },
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
        let combine = Combine::new(
            ctx,
            h,
            k,
            shared.is_some(),
            r.shared_gate,
            CombineBuffers {
                weights: &route.weights,
                pos: &pos,
                y: &y,
                shared_out: &shared_out,
                shared_gate: &route.shared_gate,
                out: &out,
            },
        )?;

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
            offload,
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

    /// Records router, selection and the per-expert token counts for `tokens` tokens.
    pub fn encode_route(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        activation: &DynamicActivation,
    ) -> Result<()> {
        self.router.encode(ctx, pass, tokens, activation)?;
        self.permute.encode_count(ctx, pass, tokens * self.top_k());
        Ok(())
    }

    /// Whether the host must act between [`Self::encode_route`] and [`Self::encode_experts`]
    /// by calling [`Self::sync`]: true in cache mode, false while every expert is resident.
    pub fn needs_sync(&self) -> bool {
        self.offload.is_some()
    }

    /// Records the expert part (permutation, grouped GEMMs, shared expert, combine) after
    /// [`Self::encode_route`] (and [`Self::sync`] where needed).
    pub fn encode_experts(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        let permuted = self
            .offload
            .as_ref()
            .is_some_and(|o| std::mem::take(&mut o.borrow_mut().permuted));
        if !permuted {
            self.encode_permute(ctx, pass, tokens);
        }
        self.encode_gemms(pass, tokens);
        if let Some(shared) = &self.shared {
            shared.encode(ctx, pass, tokens);
        }
        self.combine.encode(ctx, pass, tokens);
    }

    fn variant(&self, tokens: usize) -> usize {
        usize::from(kind_for(tokens, self.top_k(), self.experts()) == TileKind::Decode)
    }

    /// Scan and scatter of the counted pairs into expert segments and GEMM tiles.
    pub(crate) fn encode_permute(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
    ) {
        let v = self.variant(tokens);
        self.permute.encode_segments(
            ctx,
            pass,
            tokens * self.top_k(),
            self.tilings[v].block_m(),
            (
                self.gate_up[v].spec.col_blocks(),
                self.down[v].spec.col_blocks(),
            ),
        );
    }

    /// The grouped GEMMs over the experts the slot table maps.
    pub(crate) fn encode_gemms(&self, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        let v = self.variant(tokens);
        self.gate_up[v].encode_indirect(pass, &self.args, permute::ARGS_A);
        self.down[v].encode_indirect(pass, &self.args, permute::ARGS_B);
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

    /// Runs the layer on `x` ([tokens, hidden], row-major) and returns [tokens, hidden].
    pub fn forward(&self, ctx: &Context, x: &[f32]) -> Result<Vec<f32>> {
        Ok(self
            .forward_with(ctx, x, &ForwardOptions::default())?
            .output)
    }

    /// Runs the layer, in chunks of at most `max_tokens` tokens, one submit per chunk.
    pub fn forward_with(
        &self,
        ctx: &Context,
        x: &[f32],
        options: &ForwardOptions,
    ) -> Result<MoeOutput> {
        let h = self.spec.hidden;
        check_input(x, h)?;
        options.activation.validate()?;
        let tokens = x.len() / h;
        let mut result = MoeOutput::default();
        let capture = options.capture_routing;
        if capture {
            result.router_logits = Some(Vec::with_capacity(tokens * self.experts()));
            result.topk_ids = Some(Vec::with_capacity(tokens * self.top_k()));
            result.topk_weights = Some(Vec::with_capacity(tokens * self.top_k()));
        }
        for chunk in x.chunks(self.max_tokens * h) {
            let part = self.forward_chunk(ctx, chunk, options)?;
            result.output.extend(part.output);
            if capture {
                extend(&mut result.router_logits, part.router_logits);
                extend(&mut result.topk_ids, part.topk_ids);
                extend(&mut result.topk_weights, part.topk_weights);
            }
        }
        Ok(result)
    }

    fn forward_chunk(
        &self,
        ctx: &Context,
        x: &[f32],
        options: &ForwardOptions,
    ) -> Result<MoeOutput> {
        let (h, e, k) = (self.spec.hidden, self.experts(), self.top_k());
        let tokens = x.len() / h;
        let logit_cols = logit_cols(&self.spec);
        ctx.queue.write_buffer(&self.x, 0, bytemuck::cast_slice(x));
        let encoder = ctx.device.create_command_encoder(&Default::default());
        let mut encoder = self.encode(ctx, encoder, tokens, &options.activation)?;

        let out_bytes = (tokens * h * 4) as u64;
        let logit_bytes = (tokens * logit_cols * 4) as u64;
        let pair_bytes = (tokens * k * 4) as u64;
        let capture = options.capture_routing;
        let total = out_bytes
            + if capture {
                logit_bytes + 2 * pair_bytes
            } else {
                0
            };
        let staging = &self.readback;
        staging.copy_from(&mut encoder, &self.out, 0, 0, out_bytes);
        if capture {
            staging.copy_from(&mut encoder, &self.route.logits, 0, out_bytes, logit_bytes);
            staging.copy_from(
                &mut encoder,
                &self.route.ids,
                0,
                out_bytes + logit_bytes,
                pair_bytes,
            );
            staging.copy_from(
                &mut encoder,
                &self.route.weights,
                0,
                out_bytes + logit_bytes + pair_bytes,
                pair_bytes,
            );
        }
        ctx.submit([encoder.finish()]);
        let bytes = staging.read_bytes(ctx, total)?;
        let mut result = MoeOutput {
            output: decode(&bytes, 0, tokens * h),
            ..Default::default()
        };
        if capture {
            let logits: Vec<f32> = decode(&bytes, out_bytes, tokens * logit_cols);
            result.router_logits = Some(
                logits
                    .chunks(logit_cols)
                    .flat_map(|row| row[..e].iter().copied())
                    .collect(),
            );
            let ids: Vec<u32> = decode(&bytes, out_bytes + logit_bytes, tokens * k);
            self.observe_routing(tokens, &ids);
            result.topk_ids = Some(ids);
            result.topk_weights = Some(decode(
                &bytes,
                out_bytes + logit_bytes + pair_bytes,
                tokens * k,
            ));
        }
        Ok(result)
    }
}

fn extend<T>(into: &mut Option<Vec<T>>, part: Option<Vec<T>>) {
    if let (Some(all), Some(p)) = (into.as_mut(), part) {
        all.extend(p);
    }
}

fn vec_to_pair(mut v: Vec<Matmul>) -> [Matmul; 2] {
    let second = v.pop();
    let first = v.pop();
    match (first, second) {
        (Some(a), Some(b)) => [a, b],
        _ => unreachable!("one matmul per tiling variant"),
    }
}

/// Rejects empty, ragged or non-finite input.
pub fn check_input(x: &[f32], hidden: usize) -> Result<()> {
    if x.is_empty() || !x.len().is_multiple_of(hidden) {
        return Err(Error::input(format!(
            "input has {} values, not a positive multiple of hidden size {hidden}",
            x.len()
        )));
    }
    if let Some(at) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::input(format!(
            "input value at token {}, column {} is {} (NaN or infinite)",
            at / hidden,
            at % hidden,
            x[at]
        )));
    }
    Ok(())
}

fn check_weights(spec: &MoeLayerSpec, w: &MoeWeights) -> Result<()> {
    let (h, e) = (spec.hidden, spec.routing.experts);
    let len_check = |name: &str, got: usize, want: usize| {
        if got != want {
            Err(Error::tensor(
                name,
                format!("has {got} values, expected {want}"),
            ))
        } else {
            Ok(())
        }
    };
    len_check("router.weight", w.router.len(), e * h)?;
    if w.experts.num_experts() != e {
        return Err(Error::tensor(
            "experts",
            format!(
                "{} experts in the weights, {e} in the routing spec",
                w.experts.num_experts()
            ),
        ));
    }
    match (&w.router_bias, spec.routing.router_bias) {
        (Some(b), true) => len_check("router.bias", b.len(), e)?,
        (None, true) => return Err(Error::tensor("router.bias", "is missing")),
        _ => {}
    }
    match (&w.correction, spec.routing.correction_bias) {
        (Some(b), true) => len_check("e_score_correction_bias", b.len(), e)?,
        (None, true) => return Err(Error::tensor("e_score_correction_bias", "is missing")),
        _ => {}
    }
    if spec.routing.shared_gate {
        match w.shared.as_ref().and_then(|s| s.gate.as_ref()) {
            Some(g) => len_check("shared_expert_gate.weight", g.len(), h)?,
            None => return Err(Error::tensor("shared_expert_gate.weight", "is missing")),
        }
    }
    if spec.shared_inter.is_some() != w.shared.is_some() {
        return Err(Error::tensor(
            "shared_expert",
            "the spec and the weights disagree on whether the layer has a shared expert",
        ));
    }
    Ok(())
}
