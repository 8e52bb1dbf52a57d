//! What loading a model will allocate on the GPU, by kind, before loading it: expert slots,
//! the other weights, the KV cache, activations (the decoder's scratch buffers and the one set
//! of MoE step buffers its MoE layers share) and staging for readback. `moe inspect` prints it.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::gpu::{format_bytes, padded};
use crate::kernels::expert_arena::ExpertArena;
use crate::model::checkpoint::Checkpoint;
use crate::model::config::ModelConfig;
use crate::model::expert_loading::moe_layer_spec_for;
use crate::model::expert_placement::expert_groups;
use crate::model::options::ModelOptions;
use crate::model::scratch::scratch_bytes;
use crate::moe::budget::{ArenaLimits, ExpertBudget, Placement, ResidencyOptions};
use crate::moe::cpu_options::CpuPolicy;
use crate::moe::router::logit_cols;
use crate::moe::step_buffers::StepShape;
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::weight_format::{ExpertFormat, WeightFormat};

/// GPU bytes a model needs, by kind, for the options it is loaded with.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MemoryPlan {
    /// Tokens per forward step the activations are sized for.
    pub max_batch: usize,
    /// KV-cache rows per layer.
    pub max_context: usize,
    /// The adapter's largest storage binding, in bytes, which the plan assumes.
    pub max_binding: u64,
    /// The expert budget of `ExpertBudget::Auto` on that adapter, in bytes.
    pub auto_expert_budget: u64,
    /// Storage format of the routed experts (`f32`, `f16`, `int8`, `int4`; gate/up then down
    /// as `int4+int8` where they differ), with the layers of each where the MoE layers differ
    /// ([`ExpertFormat::describe_layers`]).
    pub expert_format: String,
    /// MoE layers of the model.
    pub moe_layers: usize,
    /// Expert slots a MoE layer may use: its own (the expert count when every expert is
    /// resident), or with `shared_pool` the pool's. With formats that differ by layer, each
    /// format has its own slots, and this and the next two fields are those of the last MoE
    /// layer's format.
    pub slots_per_layer: usize,
    /// The MoE layers (of one format) share one pool of `slots_per_layer` slots.
    pub shared_pool: bool,
    /// GPU bytes of one routed expert in `expert_format`, biases included.
    pub bytes_per_expert: u64,
    /// The smallest expert budget the model runs in: k experts of each format.
    #[serde(skip)]
    least_budget: u64,
    /// Routed expert slots of every MoE layer (or their pool), with the layers' slot tables.
    pub expert_slots: u64,
    /// Of `expert_slots`, the layers' slot tables.
    pub slot_tables: u64,
    /// Attention, norms, routers, shared experts, dense MLPs and the LM head (the embedding
    /// table stays in host memory).
    pub other_weights: u64,
    /// K and V caches of every layer, `max_context` rows each.
    pub kv_cache: u64,
    /// Every layer's activations: one set, since layers run one after another.
    pub activations: u64,
    /// Host-visible buffers the runtime reads back (logits, and a cached layer's routing).
    pub staging: u64,
    /// The sum of the five kinds above.
    pub total: u64,
    /// The activation buffers by name.
    pub activation_parts: BTreeMap<String, u64>,
    /// The adapter's memory for buffers, where known ([`crate::Context::device_memory`]).
    pub device_memory: Option<u64>,
    /// The least the model can run in: its plan under the smallest expert budget (a pool of
    /// k experts shared by the MoE layers).
    pub least: u64,
    /// Whether `total` fits `device_memory`; `None` when the memory is unknown.
    pub fits: Option<bool>,
    /// The largest expert budget with which the model fits `device_memory`, when known.
    pub fitting_budget: Option<u64>,
}

/// Bytes of an f32 vector on the GPU, padded as its buffer is.
fn f32s(n: usize) -> u64 {
    padded((n * 4) as u64)
}

impl MemoryPlan {
    /// The plan of `cfg` (tensors from `ckpt`) loaded with `options` on an adapter with
    /// `limits`.
    pub fn new(
        cfg: &ModelConfig,
        ckpt: &Checkpoint,
        options: &ModelOptions,
        limits: ArenaLimits,
    ) -> Result<Self> {
        let mut plan = Self::sized(cfg, ckpt, options, limits)?;
        let smallest = ModelOptions {
            residency: ResidencyOptions {
                budget: ExpertBudget::Bytes(plan.least_budget),
                ..options.residency.clone()
            },
            ..options.clone()
        };
        let least = match plan.moe_layers {
            0 => plan.clone(),
            _ => Self::sized(cfg, ckpt, &smallest, limits)?,
        };
        plan.least = least.total.min(plan.total);
        if let Some(memory) = limits.device_memory {
            plan.fits = Some(plan.total <= memory);
            // What the smallest plan holds besides the experts' slots is the floor.
            let floor = least.total - least.expert_slots + least.slot_tables;
            plan.fitting_budget = Some(memory.saturating_sub(floor));
        }
        Ok(plan)
    }

    /// The plan with `least`, `fits` and `fitting_budget` left to [`Self::new`].
    fn sized(
        cfg: &ModelConfig,
        ckpt: &Checkpoint,
        options: &ModelOptions,
        limits: ArenaLimits,
    ) -> Result<Self> {
        let r = options.resolve(cfg)?;
        let moe = cfg.moe_layers();
        let h = cfg.hidden;
        let mut activation_parts = BTreeMap::new();
        let split_kv = options.split_kv_for(r.context);
        for (name, bytes) in scratch_bytes(cfg, r.batch, r.context, split_kv, limits.max_binding) {
            activation_parts.insert(name.to_string(), padded(bytes));
        }
        activation_parts.insert("final norm".into(), f32s(r.logit_rows * h));
        let (mut expert_slots, mut slots, mut per_expert, mut staging) = (0, 0, 0, 0);
        let mut slot_tables = 0;
        let expert_formats = options.expert_formats(ckpt, cfg)?;
        let mut other_weights = other_weights(cfg, ckpt, options, &expert_formats)?;
        let mut shape: Option<StepShape> = None;
        let cpu = options.residency.cpu;
        let groups = expert_groups(cfg, &expert_formats, &cpu)?;
        let mut cpu_rows = false;
        let mut least_budget = 0;
        for g in &groups {
            let spec = &g.spec;
            let bytes = ExpertArena::expert_bytes(h, spec.inter, spec.format, spec.expert_bias);
            least_budget += spec.routing.top_k as u64 * bytes;
        }
        let (mut pooled, mut shared_pool) = (vec![false; groups.len()], false);
        for (i, &l) in moe.iter().enumerate() {
            let spec = moe_layer_spec_for(cfg, l, expert_formats[l]);
            let (e, k) = (spec.routing.experts, spec.routing.top_k);
            // The layer's placement among its format's group (the group's first layer may have
            // other expert counts in a pruned checkpoint); a layer whose experts stay on the
            // CPU has an arena of one unused slot.
            let group = groups.iter().position(|g| g.layers.contains(&l));
            let cpu_only = cpu.cpu_only(i);
            let placement = match group {
                _ if cpu_only => Placement::PerLayer(1),
                Some(g) => {
                    let sizes: Vec<(&MoeLayerSpec, usize)> = (groups.iter().enumerate())
                        .map(|(j, o)| (if j == g { &spec } else { &o.spec }, o.layers.len()))
                        .collect();
                    options.residency.placements_within(limits, &sizes)?[g]
                }
                None => return Err(Error::input(format!("layer {l} has no expert group"))),
            };
            let g = group.unwrap_or(0);
            slots = placement.slots();
            per_expert = ExpertArena::expert_bytes(h, spec.inter, spec.format, spec.expert_bias);
            // The layer's slot table, and its own slots or (once per format) the pool's.
            expert_slots += f32s(e);
            slot_tables += f32s(e);
            match placement {
                Placement::PerLayer(n) => {
                    expert_slots += arena_bytes(&spec, n, limits.max_binding)?;
                }
                Placement::Pool(n) if !pooled.get(g).copied().unwrap_or(true) => {
                    expert_slots += arena_bytes(&spec, n, limits.max_binding)?;
                    pooled[g] = true;
                }
                Placement::Pool(_) => {}
            }
            let pool = !cpu_only && pooled.get(g).copied().unwrap_or(false);
            shared_pool = pool;
            // The router's bias and selection-only correction vectors (with the shared-expert
            // gate row) and the zero biases of a bias-free shared expert.
            other_weights +=
                f32s(logit_cols(&spec)) + f32s(if spec.routing.correction_bias { e } else { 1 });
            if let Some(si) = spec.shared_inter.filter(|_| !spec.expert_bias) {
                other_weights += f32s(2 * si) + f32s(h);
            }
            let s = StepShape::of(&spec, r.batch);
            shape = Some(shape.map_or(s, |o| o.union(s)));
            if pool || slots < e || cpu_only {
                // Cache mode: the per-expert counts read back each step, and (prefetching) the
                // predictor's router outputs and ids read back from the second layer on.
                staging += f32s(e);
                if cpu.policy != CpuPolicy::Never || cpu_only {
                    // The CPU side reads back the step's ids and input.
                    staging += f32s(r.batch * k) + f32s(r.batch * h);
                    cpu_rows = true;
                }
                if options.residency.prefetch && i > 0 && !cpu_only {
                    let [_, logits, ids, weights, gate, ..] = s.buffer_bytes();
                    *activation_parts
                        .entry("prefetch router outputs".into())
                        .or_default() += logits.1 + ids.1 + weights.1 + gate.1;
                    staging += f32s(r.batch * k);
                }
            }
        }
        if let Some(shape) = shape {
            activation_parts.insert("moe step buffers".into(), shape.bytes());
            if cpu_rows {
                let pairs = shape.max_tokens * shape.top_k;
                let bytes = padded(f32s(pairs)) + padded(f32s(pairs * shape.hidden));
                activation_parts.insert("CPU expert rows".into(), bytes);
            }
        }
        staging += f32s(r.logit_rows * cfg.vocab);
        if options.routing_stats {
            staging += moe.len() as u64 * f32s(r.batch * cfg.moe.routing.top_k);
        }
        let kv_cache = (0..cfg.layers)
            .map(|_| kv_bytes(cfg, r.sequences * r.context))
            .sum();
        // A dense layer's MLP has zero biases.
        other_weights += cfg.dense_layers().len() as u64 * (f32s(2 * cfg.dense_inter) + f32s(h));
        let activations = activation_parts.values().sum();
        let total = expert_slots + other_weights + kv_cache + activations + staging;
        Ok(Self {
            max_batch: r.batch,
            max_context: r.context,
            max_binding: limits.max_binding,
            auto_expert_budget: limits.auto_budget,
            expert_format: ExpertFormat::describe_layers(&expert_formats, &moe),
            moe_layers: moe.len(),
            slots_per_layer: slots,
            shared_pool,
            bytes_per_expert: per_expert,
            least_budget,
            expert_slots,
            other_weights,
            kv_cache,
            activations,
            staging,
            total,
            activation_parts,
            device_memory: limits.device_memory,
            slot_tables,
            least: total,
            fits: None,
            fitting_budget: None,
        })
    }

    /// `residency` with an automatic budget lowered to [`Self::fitting_budget`] where the
    /// plan exceeds the adapter's memory; an explicit budget is the caller's to keep.
    pub fn fit(&self, residency: &ResidencyOptions) -> ResidencyOptions {
        match (residency.budget, self.fits, self.fitting_budget) {
            (ExpertBudget::Auto, Some(false), Some(bytes)) => ResidencyOptions {
                budget: ExpertBudget::Bytes(bytes),
                ..residency.clone()
            },
            _ => residency.clone(),
        }
    }

    /// An error when even [`Self::least`] exceeds the adapter's memory: the model cannot run
    /// there under any expert budget. The error gives the sizes by kind.
    pub fn check_least_fits(&self) -> Result<()> {
        match self.device_memory {
            Some(memory) if self.least > memory => Err(Error::input(format!(
                "the model does not fit the adapter's {} of memory: it needs at least {} \
                     with the smallest expert budget, of which weights besides the routed \
                     experts take {}, the KV cache {} for {} positions (a shorter \
                     --max-context needs less) and activations {}",
                format_bytes(memory),
                format_bytes(self.least),
                format_bytes(self.other_weights),
                format_bytes(self.kv_cache),
                self.max_context,
                format_bytes(self.activations),
            ))),
            _ => Ok(()),
        }
    }
}

/// An expert arena of `slots` slots for layers like `spec`, as `ExpertArena::new` allocates
/// it under a binding limit of `limit` bytes.
fn arena_bytes(spec: &MoeLayerSpec, slots: usize, limit: u64) -> Result<u64> {
    let (h, i) = (spec.hidden, spec.inter);
    let buffers = ExpertArena::buffer_bytes(h, i, slots, spec.format, spec.expert_bias, limit)?;
    Ok(buffers.iter().map(|&(_, b)| padded(b)).sum())
}

/// One layer's K and V caches of `positions` rows (MLA caches keys and values per head).
fn kv_bytes(cfg: &ModelConfig, positions: usize) -> u64 {
    let a = &cfg.attention;
    let (k, v) = match a.mla {
        Some(m) => (
            a.heads * (m.qk_nope_head_dim + m.qk_rope_head_dim),
            a.heads * m.v_head_dim,
        ),
        None => (a.kv_heads * a.head_dim, a.kv_heads * a.head_dim),
    };
    f32s(positions * k) + f32s(positions * v)
}

/// The format of shared-expert matrix `name` (`model.layers.L.…`): its layer's expert format,
/// the gate/up half for gate_proj and up_proj, the down half for down_proj.
fn shared_format(name: &str, expert_formats: &[ExpertFormat]) -> WeightFormat {
    let layer = name
        .strip_prefix("model.layers.")
        .and_then(|rest| rest.split('.').next())
        .and_then(|l| l.parse::<usize>().ok());
    let format = layer
        .and_then(|l| expert_formats.get(l))
        .or(expert_formats.first())
        .copied()
        .unwrap_or(ExpertFormat::uniform(WeightFormat::F32));
    if name.contains("down_proj") {
        format.down
    } else {
        format.gate_up
    }
}

/// Every checkpoint tensor the GPU holds besides routed experts: matrices in the dense format
/// (routers in f32, shared experts in the expert format), vectors in f32; the LM head, which
/// is the embedding table when tied.
fn other_weights(
    cfg: &ModelConfig,
    ckpt: &Checkpoint,
    options: &ModelOptions,
    expert_formats: &[ExpertFormat],
) -> Result<u64> {
    let mut bytes = 0;
    for name in ckpt.names() {
        if name.contains(".experts.") || name == "model.embed_tokens.weight" {
            continue;
        }
        let shape = &ckpt.entry(name)?.shape;
        bytes += match shape.as_slice() {
            [rows, cols] => {
                let format = if name.contains("shared_expert") && !name.contains("gate.weight") {
                    shared_format(name, expert_formats)
                } else if name.ends_with("mlp.gate.weight") || name.contains("router") {
                    WeightFormat::F32
                } else {
                    options.dense_format
                };
                padded(format.matrix_bytes(*rows, *cols))
            }
            dims => f32s(dims.iter().product()),
        };
    }
    if cfg.tie_embeddings {
        bytes += padded(options.dense_format.matrix_bytes(cfg.vocab, cfg.hidden));
    }
    Ok(bytes)
}
