//! How much VRAM routed experts get: the options behind `--expert-budget`, `--expert-slots`,
//! `--policy` and `--no-prefetch`, and their resolution into slots per MoE layer.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::expert_arena::ExpertArena;
use crate::moe::cpu_options::CpuOptions;
use crate::moe::residency::Policy;
use crate::spec::layer_spec::MoeLayerSpec;

/// The VRAM given to routed experts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExpertBudget {
    /// Every expert resident if the model's routed experts fit in [`auto_budget`], otherwise
    /// one pool of as many slots as that budget holds (at least k), shared by all MoE layers.
    #[default]
    Auto,
    /// Bytes for the routed experts of the whole model: every expert resident if they fit,
    /// otherwise one pool of slots shared by all MoE layers (at least k slots).
    Bytes(u64),
    /// Slots per MoE layer (at least k).
    SlotsPerLayer(usize),
}

/// Expert residency options of a layer or a model.
///
/// ```
/// use std::sync::Arc;
/// use moe_gpu::kernels::matmul::{ExpertFormat, WeightFormat};
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
/// let spec = moe_layer_spec(&cfg, ExpertFormat::uniform(WeightFormat::F32));
/// let options = ResidencyOptions {
///     // Room for half of the layer's 16 experts: the layer runs as an expert cache.
///     budget: ExpertBudget::Bytes(parse_bytes("200K")?),
///     ..Default::default()
/// };
/// let slots = options.placement(&ctx, &spec, 1)?.slots();
/// let layer = cfg.moe_layers()[0];
/// let weights = load_moe_weights(&ckpt, &cfg, layer)?;
/// let build = LayerBuild {
///     max_tokens: 16,
///     io: None,
///     buffers: None,
///     slots,
///     residency: &options,
///     layer,
///     pool: None,
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
    /// Which experts the CPU computes instead of the GPU.
    pub cpu: CpuOptions,
}

impl Default for ResidencyOptions {
    fn default() -> Self {
        Self {
            budget: ExpertBudget::Auto,
            policy: Policy::Lru,
            prefetch: true,
            record_trace: false,
            cpu: CpuOptions::default(),
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
    /// The adapter's memory for buffers, where known ([`Context::device_memory`]).
    pub device_memory: Option<u64>,
}

impl ArenaLimits {
    /// The limits of `ctx`'s adapter.
    pub fn of(ctx: &Context) -> Self {
        Self {
            max_binding: ctx.max_binding(),
            auto_budget: auto_budget(ctx),
            device_memory: ctx.device_memory(),
        }
    }
}

impl ResidencyOptions {
    /// Where the routed experts of a model of `moe_layers` MoE layers shaped like `spec` live.
    pub fn placement(
        &self,
        ctx: &Context,
        spec: &MoeLayerSpec,
        moe_layers: usize,
    ) -> Result<Placement> {
        self.placement_within(ArenaLimits::of(ctx), spec, moe_layers)
    }

    /// [`Self::placement`] under explicit adapter limits (for planning without one). Weights
    /// over the binding limit are split by rows, so the limit caps no slots.
    pub fn placement_within(
        &self,
        limits: ArenaLimits,
        spec: &MoeLayerSpec,
        moe_layers: usize,
    ) -> Result<Placement> {
        let [placement] = self
            .placements_within(limits, &[(spec, moe_layers)])?
            .try_into()
            .map_err(|_| Error::input("one group of layers has one placement"))?;
        Ok(placement)
    }

    /// Where the routed experts of a model live whose MoE layers fall in `groups` of layers
    /// that can share slots (one expert format and shape each): `(spec, layers)` per group,
    /// one [`Placement`] each. A budget that holds every expert of every group keeps them all
    /// resident; otherwise each group gets a pool, with k experts of the budget each first and
    /// the rest shared in proportion to the bytes of the group's experts (one group gets the
    /// whole budget).
    pub fn placements_within(
        &self,
        limits: ArenaLimits,
        groups: &[(&MoeLayerSpec, usize)],
    ) -> Result<Vec<Placement>> {
        let per_expert = |spec: &MoeLayerSpec| {
            ExpertArena::expert_bytes(spec.hidden, spec.inter, spec.format, spec.expert_bias).max(1)
        };
        let all_bytes = |&(spec, layers): &(&MoeLayerSpec, usize)| {
            (spec.routing.experts * layers.max(1)) as u64 * per_expert(spec)
        };
        let total: u64 = groups.iter().map(all_bytes).sum();
        let floor: u64 = groups
            .iter()
            .map(|(spec, _)| spec.routing.top_k as u64 * per_expert(spec))
            .sum();
        // Group `g`'s share of `budget` bytes: its k experts, and the rest in proportion (a
        // budget below every group's k experts is cut in proportion to them).
        let part =
            |bytes: u64, of: u64, whole: u64| (bytes as u128 * of as u128 / whole as u128) as u64;
        let share = |budget: u64, g: &(&MoeLayerSpec, usize)| {
            let k = g.0.routing.top_k as u64 * per_expert(g.0);
            match groups.len() {
                1 => budget,
                _ if budget >= total => all_bytes(g),
                _ if budget < floor => part(budget, k, floor),
                _ => k + part(budget - floor, all_bytes(g), total),
            }
        };
        groups
            .iter()
            .map(|g| self.group_placement(limits, g.0, g.1, |b| share(b, g)))
            .collect()
    }

    /// The placement of one group of `moe_layers` layers like `spec`, given its share of a
    /// budget in bytes.
    fn group_placement(
        &self,
        limits: ArenaLimits,
        spec: &MoeLayerSpec,
        moe_layers: usize,
        share: impl Fn(u64) -> u64,
    ) -> Result<Placement> {
        let (e, k) = (spec.routing.experts, spec.routing.top_k);
        let per_expert =
            ExpertArena::expert_bytes(spec.hidden, spec.inter, spec.format, spec.expert_bias);
        let layers = moe_layers.max(1);
        let all = e * layers;
        let pool_of = |bytes: u64| (share(bytes) / per_expert.max(1)).min(all as u64) as usize;
        match self.budget {
            ExpertBudget::SlotsPerLayer(n) if n < k => Err(Error::input(format!(
                "--expert-slots {n} is below k = {k}: each token needs its {k} experts resident at once"
            ))),
            ExpertBudget::SlotsPerLayer(n) => Ok(Placement::PerLayer(n.min(e))),
            ExpertBudget::Bytes(bytes) => match pool_of(bytes) {
                n if n >= all => Ok(Placement::PerLayer(e)),
                n if n < k => Err(Error::input(format!(
                    "expert budget of {bytes} bytes holds {n} experts of {per_expert} bytes; \
                     k = {k} slots need at least {} bytes{}",
                    k as u64 * per_expert,
                    if layers > 1 {
                        format!(" (the {layers} MoE layers share one pool of slots)")
                    } else {
                        String::new()
                    }
                ))),
                n => Ok(Placement::Pool(n)),
            },
            ExpertBudget::Auto => match pool_of(limits.auto_budget) {
                n if n >= all => Ok(Placement::PerLayer(e)),
                n => Ok(Placement::Pool(n.max(k))),
            },
        }
    }
}

/// Where a model's routed experts live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Each MoE layer has this many slots of its own: every expert resident when it is the
    /// expert count, else one expert cache per layer (`--expert-slots`).
    PerLayer(usize),
    /// One pool of this many slots shared by all MoE layers, each running as an expert cache
    /// ([`crate::moe::pool::ExpertPool`]): a hot layer keeps more of its experts.
    Pool(usize),
}

impl Placement {
    /// Slots one layer may use: its own, or the whole pool.
    pub fn slots(&self) -> usize {
        match *self {
            Self::PerLayer(n) | Self::Pool(n) => n,
        }
    }

    /// Slots allocated for `moe_layers` layers.
    pub fn total_slots(&self, moe_layers: usize) -> usize {
        match *self {
            Self::PerLayer(n) => n * moe_layers,
            Self::Pool(n) => n,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::layer_spec::Glu;
    use crate::spec::routing::RoutingSpec;
    use crate::spec::weight_format::{ExpertFormat, WeightFormat};

    /// OLMoE-1B-7B: 16 MoE layers of 64 experts [2048, 1024], top-8.
    fn olmoe(format: WeightFormat) -> MoeLayerSpec {
        olmoe_in(ExpertFormat::uniform(format))
    }

    fn olmoe_in(format: ExpertFormat) -> MoeLayerSpec {
        MoeLayerSpec {
            hidden: 2048,
            inter: 1024,
            routing: RoutingSpec::softmax(64, 8, false),
            glu: Glu::Silu,
            expert_bias: false,
            shared_inter: None,
            format,
        }
    }

    #[test]
    fn real_models_run_in_a_pool_of_k_experts_of_one_layer() {
        let limits = ArenaLimits {
            max_binding: 128 << 20,
            auto_budget: 1 << 30,
            device_memory: None,
        };
        let spec = olmoe(WeightFormat::F32);
        let per_expert = 3 * 2048 * 1024 * 4;
        let at = |bytes: u64| {
            let options = ResidencyOptions {
                budget: ExpertBudget::Bytes(bytes),
                ..Default::default()
            };
            options.placement_within(limits, &spec, 16)
        };
        // 1 GiB used to give 2 f32 experts per layer, below k = 8; 4 GiB, 10 slots per layer
        // over one binding. Both run now, as does k experts of one layer.
        assert_eq!(at(1 << 30).unwrap(), Placement::Pool(42));
        assert_eq!(at(4 << 30).unwrap(), Placement::Pool(170));
        assert_eq!(at(8 * per_expert).unwrap(), Placement::Pool(8));
        assert!(at(8 * per_expert - 1).is_err());
        assert_eq!(at(u64::MAX).unwrap(), Placement::PerLayer(64));
        let auto = ResidencyOptions::default().placement_within(limits, &spec, 16);
        assert_eq!(auto.unwrap(), Placement::Pool(42));
    }

    #[test]
    fn layers_of_two_formats_split_a_budget_k_experts_each_then_by_their_bytes() {
        let limits = ArenaLimits {
            max_binding: 128 << 20,
            auto_budget: 1 << 30,
            device_memory: None,
        };
        let (int4, int8) = (olmoe(WeightFormat::Int4), olmoe(WeightFormat::Int8));
        let mixed = olmoe_in(ExpertFormat {
            gate_up: WeightFormat::Int4,
            down: WeightFormat::Int8,
        });
        let per = |s: &MoeLayerSpec| ExpertArena::expert_bytes(2048, 1024, s.format, false);
        assert!(per(&int4) < per(&mixed) && per(&mixed) < per(&int8));
        let groups = [(&int4, 12), (&mixed, 4)];
        let at = |bytes: u64| {
            let options = ResidencyOptions {
                budget: ExpertBudget::Bytes(bytes),
                ..Default::default()
            };
            options.placements_within(limits, &groups)
        };
        let all = 64 * (12 * per(&int4) + 4 * per(&mixed));
        let each = vec![Placement::PerLayer(64); 2];
        assert_eq!(at(all).unwrap(), each);
        let floor = 8 * (per(&int4) + per(&mixed));
        assert_eq!(at(floor).unwrap(), [Placement::Pool(8), Placement::Pool(8)]);
        assert!(at(floor - 1).is_err());
        let half = at(all / 2).unwrap();
        let slots = half.iter().map(Placement::slots).collect::<Vec<_>>();
        let used = slots[0] as u64 * per(&int4) + slots[1] as u64 * per(&mixed);
        assert!(used <= all / 2 && used > all / 2 - per(&int4) - per(&mixed));
        // 12 of 16 layers are int4: about 3/4 of the budget goes to them.
        let int4_share = slots[0] as f64 * per(&int4) as f64 / used as f64;
        assert!((int4_share - 12.0 * per(&int4) as f64 / (all / 64) as f64).abs() < 0.01);
        // One group keeps the one-pool rule.
        let one = ResidencyOptions::default().placements_within(limits, &[(&int4, 16)]);
        assert_eq!(
            one.unwrap(),
            [Placement::Pool(((1 << 30) / per(&int4)) as usize)]
        );
    }
}
