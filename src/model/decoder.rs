//! A whole decoder on the GPU: host embedding lookup, then per layer input norm → attention →
//! post-attention norm → dense MLP or MoE, then the final norm and the LM head. Everything is
//! built once at load; a forward step writes T embedding rows, records every kernel into one
//! compute pass, submits once (unless an expert cache asks for a sync between routing and the
//! experts) and reads back the requested logits through a preallocated staging buffer.

use std::path::Path;
use std::sync::Arc;

mod forward_step;
mod sequences;

use crate::calibration::CalibrationStats;
use crate::error::Result;
use crate::gpu::{Context, Staging};
use crate::kernels::matmul::{ExpertFormat, Glu};
use crate::kernels::norm::{NormBuffers, NormShape, RmsNorm};
use crate::model::attention_block::AttentionBlock;
use crate::model::attention_init::AttentionInit;
use crate::model::capture::RoutingCapture;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::{MlpKind, ModelConfig};
use crate::model::expert_loading::{load_mlp, load_moe_weights, moe_layer_spec_for};
use crate::model::expert_placement::ExpertPlacement;
use crate::model::load_progress::{LoadProgress, LoadTracker};
use crate::model::memory::MemoryPlan;
use crate::model::options::{ModelOptions, Resolved};
use crate::model::projection::LmHead;
use crate::model::scratch::Scratch;
use crate::moe::activation_policy::ActivationPolicy;
use crate::moe::budget::ArenaLimits;
use crate::moe::layer::{LayerBuild, MoeLayer};
use crate::moe::mlp::{DenseMlp, MlpIo};
use crate::moe::stats::ResidencyStats;
use crate::moe::step_buffers::{StepBuffers, StepShape};
use crate::spec::routing::DynamicActivation;

/// Which rows of logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// The last token's `[vocab]` logits (what generation needs).
    Last,
    /// [tokens, vocab] logits of every token of the call (at most `max_logit_rows` tokens).
    All,
}

/// A layer's MLP.
pub enum Mlp {
    /// A dense MLP.
    Dense(Box<DenseMlp>),
    /// A routed MoE layer.
    Moe(Box<MoeLayer>),
}

struct Layer {
    /// Layer 0: norm of the embeddings; later layers first add the previous MLP output.
    input_norm: RmsNorm,
    attention: AttentionBlock,
    /// Adds the attention output to the residual stream, then normalises.
    post_norm: RmsNorm,
    mlp: Mlp,
}

/// A Hugging Face MoE checkpoint loaded onto the GPU, with its KV cache.
///
/// `Model` is `Send`, not `Sync`: every step rewrites its KV cache, scratch and parameter
/// blocks (`&mut self`). Give each thread its own `Model` on one shared [`Context`], or share
/// one behind a `Mutex`; both are bit-identical to one thread (tests/model/threads.rs).
///
/// ```
/// use moe_gpu::{Context, GenerateOptions, Model, Sampling};
///
/// let ctx = Context::new()?;
/// // A real checkpoint directory works the same, e.g. OLMoE-1B-7B's.
/// let mut model = Model::load(&ctx, "tests/fixtures/hf-tiny/olmoe/model".as_ref())?;
/// let options = GenerateOptions {
///     max_new_tokens: 3,
///     sampling: Sampling::Greedy,
///     ..GenerateOptions::for_model(&model)
/// };
/// let mut generator = model.generate(&ctx, &[1, 41, 211], options)?;
/// while let Some(token) = generator.next_token()? {
///     println!("{token}");
/// }
/// # Ok::<(), moe_gpu::Error>(())
/// ```
pub struct Model {
    /// The parsed config.json.
    pub config: ModelConfig,
    /// Context, batch and logit rows the buffers were sized for.
    pub limits: Resolved,
    /// The formats routed and shared experts are stored in on the GPU, by decoder layer (the
    /// entries of dense layers are not used).
    pub expert_formats: Vec<ExpertFormat>,
    ckpt: Arc<Checkpoint>,
    embed_name: String,
    scratch: Scratch,
    layers: Vec<Layer>,
    final_norm: RmsNorm,
    /// [max_logit_rows, hidden] final norm output.
    final_out: wgpu::Buffer,
    lm_head: LmHead,
    logits: Staging,
    /// [MoE layers, max_batch, k] expert ids, with `ModelOptions::routing_stats`.
    routing: Option<Staging>,
    /// Dynamic activation of each decoder layer (unused for dense layers).
    activation: Vec<DynamicActivation>,
    /// Set while [`Model::capture_routing`] runs: per-layer routing and expert outputs.
    pub(crate) capture: Option<RoutingCapture>,
    /// Tokens in each sequence's KV cache.
    positions: Vec<usize>,
}

impl Model {
    /// Loads `dir` (config.json + safetensors) with default [`ModelOptions`].
    pub fn load(ctx: &Context, dir: &Path) -> Result<Self> {
        Self::load_with(ctx, dir, &ModelOptions::default())
    }

    /// Loads the checkpoint in `dir` with `options` (context and batch sizes, weight formats,
    /// expert residency).
    pub fn load_with(ctx: &Context, dir: &Path, options: &ModelOptions) -> Result<Self> {
        Self::load_observed(ctx, dir, options, &mut |_| {})
    }

    /// As [`Self::load_with`], telling `observe` how many bytes of the checkpoint are loaded
    /// after each layer (for a progress bar).
    pub fn load_observed(
        ctx: &Context,
        dir: &Path,
        options: &ModelOptions,
        observe: &mut dyn FnMut(LoadProgress),
    ) -> Result<Self> {
        let config = ModelConfig::load(dir)?;
        let limits = options.resolve(&config)?;
        let ckpt = Arc::new(Checkpoint::open(dir)?);
        let cfg = &config;
        let (h, vocab) = (cfg.hidden, cfg.vocab);
        let embed_name = "model.embed_tokens.weight".to_string();
        ckpt.expect(&embed_name, &[vocab, h])?;
        let plan = MemoryPlan::new(cfg, &ckpt, options, ArenaLimits::of(ctx))?;
        plan.check_least_fits()?;
        let split_kv = options.split_kv_for(limits.context);
        let scratch = Scratch::new(ctx, cfg, limits.batch, limits.context, split_kv)?;
        let s = &scratch;
        let eps = cfg.rms_eps as f32;
        let norm = |name: &str, add: bool, delta: &wgpu::Buffer, out: &wgpu::Buffer| {
            let w = ckpt.f32(name, &[h])?;
            let weight = ctx.storage_with(name, &w)?;
            RmsNorm::new(
                ctx,
                NormShape::rows(h),
                eps,
                add,
                NormBuffers {
                    delta,
                    x: &s.h,
                    weight: &weight,
                    out,
                },
            )
        };
        let mut layers = Vec::with_capacity(cfg.layers);
        let expert_formats = options.expert_formats(&ckpt, cfg)?;
        let step_buffers = step_buffers(ctx, cfg, &expert_formats, limits.batch)?;
        let residency = &plan.fit(&options.residency);
        let experts = ExpertPlacement::new(ctx, cfg, &expert_formats, residency)?;
        let head_name = if cfg.tie_embeddings {
            embed_name.clone()
        } else {
            "lm_head.weight".to_string()
        };
        let rest = ["model.norm.weight", head_name.as_str()];
        let mut tracker = LoadTracker::new(&ckpt, experts.at_load, &rest, observe);
        let mut first_moe = true;
        for (l, &expert_format) in expert_formats.iter().enumerate() {
            let p = format!("model.layers.{l}.");
            let input_norm = if l == 0 {
                norm(&format!("{p}input_layernorm.weight"), false, &s.zeros, &s.x)?
            } else {
                norm(
                    &format!("{p}input_layernorm.weight"),
                    true,
                    &s.mlp_out,
                    &s.x,
                )?
            };
            let attention = AttentionBlock::new(&AttentionInit {
                ctx,
                ckpt: &ckpt,
                cfg,
                layer: l,
                format: options.dense_format,
                scratch: s,
                positions: limits.context,
                sequences: limits.sequences,
                batch: limits.batch,
                split_kv,
            })?;
            let post_norm = norm(
                &format!("{p}post_attention_layernorm.weight"),
                true,
                &s.attn_out,
                &s.x,
            )?;
            let mlp = match cfg.mlp_kinds[l] {
                MlpKind::Dense => {
                    let w = load_mlp(&ckpt, &cfg.arch.mlp_prefix(l), h, cfg.dense_inter)?;
                    Mlp::Dense(Box::new(DenseMlp::new(
                        ctx,
                        &w,
                        h,
                        cfg.dense_inter,
                        Glu::Silu,
                        ExpertFormat::uniform(options.dense_format),
                        None,
                        limits.batch,
                        MlpIo {
                            x: &s.x,
                            hidden: &s.mlp_hidden,
                            out: &s.mlp_out,
                        },
                    )?))
                }
                MlpKind::Moe => {
                    let spec = moe_layer_spec_for(cfg, l, expert_format);
                    let weights = load_moe_weights(&ckpt, cfg, l)?;
                    let (slots, pool) = experts.for_layer(l)?;
                    let layer_residency = experts.residency_for(l, residency);
                    let build = LayerBuild {
                        max_tokens: limits.batch,
                        io: Some((s.x.clone(), s.mlp_out.clone())),
                        buffers: step_buffers.clone(),
                        slots,
                        residency: &layer_residency,
                        layer: l,
                        pool,
                    };
                    let mut layer = MoeLayer::build(ctx, spec, &weights, build)?;
                    // The previous MoE layer routes on its post-attention norm output, which
                    // is in `x` then: this layer's router predicts its experts from it.
                    if residency.prefetch && !first_moe {
                        layer.attach_predictor(ctx, &s.x)?;
                    }
                    first_moe = false;
                    Mlp::Moe(Box::new(layer))
                }
            };
            layers.push(Layer {
                input_norm,
                attention,
                post_norm,
                mlp,
            });
            tracker.layer_done(l);
        }
        let final_out = ctx.storage("final norm", (limits.logit_rows * h * 4) as u64)?;
        let final_norm = norm("model.norm.weight", true, &s.mlp_out, &final_out)?;
        let head_w = ckpt.f32(&head_name, &[vocab, h])?;
        let lm_head = LmHead::new(
            ctx,
            &head_name,
            &head_w,
            vocab,
            h,
            options.dense_format,
            &final_out,
            limits.logit_rows,
        )?;
        tracker.finish();
        // Logits, then the MoE layers' router status word.
        let logits = Staging::new(ctx, "logits", (limits.logit_rows * vocab * 4 + 4) as u64)?;
        let routing = options.routing_stats.then(|| {
            let pairs: usize = layers
                .iter()
                .filter_map(|l| match &l.mlp {
                    Mlp::Moe(m) => Some(limits.batch * m.top_k()),
                    Mlp::Dense(_) => None,
                })
                .sum();
            Staging::new(ctx, "expert ids", (pairs * 4) as u64)
        });
        let (routing, cfg_layers) = (routing.transpose()?, config.layers);
        Ok(Self {
            config,
            limits,
            expert_formats,
            ckpt,
            embed_name,
            scratch,
            layers,
            final_norm,
            final_out,
            lm_head,
            logits,
            routing,
            activation: vec![DynamicActivation::default(); cfg_layers],
            capture: None,
            positions: vec![0; limits.sequences],
        })
    }

    /// Sets the dynamic activation of every MoE layer (runtime top-k, skip threshold,
    /// expert top-p), resolved per layer by `policy` (with calibration statistics for `auto`).
    pub fn set_activation(
        &mut self,
        policy: &ActivationPolicy,
        stats: Option<&CalibrationStats>,
    ) -> Result<()> {
        let moe: Vec<(usize, usize)> = self.moe_layers().map(|(i, m)| (i, m.top_k())).collect();
        for (layer, k) in moe {
            let a = policy.for_layer(layer, stats)?;
            a.effective_k(k)?;
            self.activation[layer] = a;
        }
        Ok(())
    }

    /// Expert residency statistics of every MoE layer so far: hits, misses, bytes uploaded and
    /// per-layer histograms (resident layers count only what [`MoeLayer::observe_routing`] is
    /// given, since they read nothing back).
    pub fn residency_stats(&self) -> ResidencyStats {
        ResidencyStats::from_layers(self.moe_layers().map(|(_, m)| m.stats()).collect())
    }

    /// The experts' formats as the reports name them: one name when every MoE layer has the
    /// same, else each format with its layers ([`ExpertFormat::describe_layers`]).
    pub fn expert_format_name(&self) -> String {
        ExpertFormat::describe_layers(&self.expert_formats, &self.config.moe_layers())
    }

    /// The MoE layers, by decoder layer index.
    pub fn moe_layers(&self) -> impl Iterator<Item = (usize, &MoeLayer)> {
        self.layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match &l.mlp {
                Mlp::Moe(m) => Some((i, m.as_ref())),
                Mlp::Dense(_) => None,
            })
    }
}

/// The step buffers every MoE layer of `cfg` shares, sized for the largest (none without MoE
/// layers).
fn step_buffers(
    ctx: &Context,
    cfg: &ModelConfig,
    expert_formats: &[ExpertFormat],
    batch: usize,
) -> Result<Option<Arc<StepBuffers>>> {
    let shape = cfg
        .moe_layers()
        .into_iter()
        .map(|l| StepShape::of(&moe_layer_spec_for(cfg, l, expert_formats[l]), batch))
        .reduce(StepShape::union);
    shape
        .map(|shape| StepBuffers::new(ctx, shape).map(Arc::new))
        .transpose()
}
