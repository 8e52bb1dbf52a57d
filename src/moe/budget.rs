//! How much VRAM routed experts get: the options behind `--expert-budget`, `--expert-slots`,
//! `--policy` and `--no-prefetch`, and their resolution into slots per MoE layer.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::expert_arena::ExpertArena;
use crate::moe::residency::Policy;
use crate::spec::layer_spec::MoeLayerSpec;

/// The VRAM given to routed experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpertBudget {
    /// Every expert resident if the model's routed experts fit in [`auto_budget`], otherwise
    /// as many slots per layer as that budget holds (at least k).
    #[default]
    Auto,
    /// Bytes for the routed experts of the whole model, split evenly over its MoE layers.
    Bytes(u64),
    /// Slots per MoE layer (at least k).
    SlotsPerLayer(usize),
}

/// Expert residency options of a layer or a model.
///
/// ```
/// use std::sync::Arc;
/// use moe_gpu::kernels::matmul::WeightFormat;
/// use moe_gpu::model::{Checkpoint, ModelConfig, load_moe_weights, moe_layer_spec};
/// use moe_gpu::moe::{
///     ExpertBudget, LayerBuild, MoeLayer, ResidencyOptions, ResidencyStats, parse_bytes,
/// };
/// use moe_gpu::Context;
///
/// # fn main() -> moe_gpu::Result<()> {
/// let ctx = Context::new()?;
/// let dir = std::path::Path::new("tests/fixtures/hf-tiny/olmoe/model");
/// let cfg = ModelConfig::load(dir)?;
/// let ckpt = Arc::new(Checkpoint::open(dir)?);
/// let spec = moe_layer_spec(&cfg, WeightFormat::F32);
/// let options = ResidencyOptions {
///     // Room for about half of the fixture's experts: the layer runs as an expert cache.
///     budget: ExpertBudget::Bytes(parse_bytes("400K")?),
///     ..Default::default()
/// };
/// let slots = options.slots_per_layer(&ctx, &spec, cfg.moe_layers().len())?;
/// let layer = cfg.moe_layers()[0];
/// let weights = load_moe_weights(&ckpt, &cfg, layer)?;
/// let build = LayerBuild {
///     max_tokens: 16,
///     io: None,
///     buffers: None,
///     slots,
///     residency: &options,
///     layer,
/// };
/// let moe = MoeLayer::build(&ctx, spec, &weights, build)?;
/// assert!(moe.is_cached());
/// moe.forward(&ctx, &vec![0.1f32; 4 * cfg.hidden])?;
/// let stats = ResidencyStats::from_layers(vec![moe.stats()]);
/// println!("{} hits, {} misses", stats.hits, stats.misses);
/// # Ok(())
/// # }
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct ResidencyOptions {
    /// How much VRAM the routed experts may take.
    pub budget: ExpertBudget,
    /// Which expert a full cache evicts.
    pub policy: Policy,
    /// Predict and upload the next MoE layer's experts while this one computes.
    pub prefetch: bool,
    /// Keep every step's activated expert set, for [`crate::moe::stats::ResidencyStats::trace`].
    pub record_trace: bool,
}

impl Default for ResidencyOptions {
    fn default() -> Self {
        Self {
            budget: ExpertBudget::Auto,
            policy: Policy::Lru,
            prefetch: true,
            record_trace: false,
        }
    }
}

/// The default expert budget: half of the adapter's `max_buffer_size`. wgpu reports no VRAM
/// size, and the largest buffer the adapter admits is the one portable hint of it (2 GiB on
/// lavapipe; often the driver's largest allocation on discrete GPUs); half leaves the other
/// half for activations, dense weights and the KV cache.
pub fn auto_budget(ctx: &Context) -> u64 {
    ctx.limits.max_buffer_size / 2
}

/// What an adapter allows expert arenas: its largest storage binding and the default budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArenaLimits {
    /// `max_storage_buffer_binding_size` (or the context's lower limit): arena weights are
    /// split into buffers of at most this many bytes.
    pub max_binding: u64,
    /// The budget of [`ExpertBudget::Auto`] ([`auto_budget`]).
    pub auto_budget: u64,
}

impl ArenaLimits {
    /// The limits of `ctx`'s adapter.
    pub fn of(ctx: &Context) -> Self {
        Self {
            max_binding: ctx.max_binding(),
            auto_budget: auto_budget(ctx),
        }
    }
}

impl ResidencyOptions {
    /// Slots per MoE layer for a model of `moe_layers` layers shaped like `spec`. A result of
    /// at least the expert count means every expert is resident.
    pub fn slots_per_layer(
        &self,
        ctx: &Context,
        spec: &MoeLayerSpec,
        moe_layers: usize,
    ) -> Result<usize> {
        self.slots_within(ArenaLimits::of(ctx), spec, moe_layers)
    }

    /// [`Self::slots_per_layer`] under explicit adapter limits (for planning without one).
    pub fn slots_within(
        &self,
        limits: ArenaLimits,
        spec: &MoeLayerSpec,
        moe_layers: usize,
    ) -> Result<usize> {
        let (e, k) = (spec.routing.experts, spec.routing.top_k);
        let per_expert =
            ExpertArena::expert_bytes(spec.hidden, spec.inter, spec.format, spec.expert_bias);
        let layers = moe_layers.max(1) as u64;
        // Arena weights over the binding limit are split by rows, so the limit caps no slots.
        let slots = match self.budget {
            ExpertBudget::SlotsPerLayer(n) if n < k => {
                return Err(Error::input(format!(
                    "--expert-slots {n} is below k = {k}: each token needs its {k} experts resident at once"
                )));
            }
            ExpertBudget::SlotsPerLayer(n) => n.min(e),
            ExpertBudget::Bytes(bytes) => {
                let n = (bytes / layers / per_expert) as usize;
                if n < k {
                    return Err(Error::input(format!(
                        "expert budget of {bytes} bytes gives {n} slots per MoE layer \
                         ({moe_layers} layers, {per_expert} bytes per expert); k = {k} slots \
                         need at least {} bytes",
                        k as u64 * per_expert * layers
                    )));
                }
                n.min(e)
            }
            ExpertBudget::Auto => {
                let budget = limits.auto_budget;
                if e as u64 * per_expert * layers <= budget {
                    e
                } else {
                    ((budget / layers / per_expert) as usize).clamp(k, e)
                }
            }
        };
        Ok(slots)
    }
}
