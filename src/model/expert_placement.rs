//! Where a model's routed experts live, decided once at load: its MoE layers grouped by
//! expert format (only layers of one format can share an arena), and each group's placement
//! under the residency budget, with the pool it asks for.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::kernels::matmul::ExpertFormat;
use crate::model::config::ModelConfig;
use crate::model::expert_loading::moe_layer_spec_for;
use crate::moe::budget::{ArenaLimits, Placement, ResidencyOptions};
use crate::moe::cpu_options::CpuOptions;
use crate::moe::pool::ExpertPool;
use crate::spec::layer_spec::MoeLayerSpec;

/// MoE layers whose experts have one format (and the model's one expert shape), so that they
/// can share slots.
pub(crate) struct ExpertGroup {
    /// The spec of the group's first layer.
    pub spec: MoeLayerSpec,
    /// The group's decoder layers, ascending.
    pub layers: Vec<usize>,
}

/// The MoE layers of `cfg` whose experts may live in VRAM (all but those `cpu` keeps on the
/// CPU) grouped by their format in `formats` (indexed by decoder layer), in the order of their
/// first layers.
pub(crate) fn expert_groups(
    cfg: &ModelConfig,
    formats: &[ExpertFormat],
    cpu: &CpuOptions,
) -> Result<Vec<ExpertGroup>> {
    let mut groups: Vec<ExpertGroup> = Vec::new();
    let moe = cfg.moe_layers();
    for l in moe
        .iter()
        .enumerate()
        .filter(|(i, _)| !cpu.cpu_only(*i))
        .map(|(_, &l)| l)
    {
        let format = *formats.get(l).ok_or_else(|| {
            Error::input(format!(
                "no expert format for layer {l} of {}",
                formats.len()
            ))
        })?;
        match groups.iter_mut().find(|g| g.spec.format == format) {
            Some(g) => g.layers.push(l),
            None => groups.push(ExpertGroup {
                spec: moe_layer_spec_for(cfg, l, format),
                layers: vec![l],
            }),
        }
    }
    Ok(groups)
}

/// The placement of each of `groups` under `r` on an adapter with `limits`.
pub(crate) fn group_placements(
    r: &ResidencyOptions,
    limits: ArenaLimits,
    groups: &[ExpertGroup],
) -> Result<Vec<Placement>> {
    let sizes: Vec<(&MoeLayerSpec, usize)> =
        groups.iter().map(|g| (&g.spec, g.layers.len())).collect();
    r.placements_within(limits, &sizes)
}

/// Where the routed experts of every MoE layer live (the expert shapes of a model are those of
/// its first MoE layer: every family we load has one expert shape per model).
pub(crate) struct ExpertPlacement {
    /// Per group: its layers, the slots one of them may use (its own, or the pool's), and the
    /// slots they share when the residency options ask for a pool.
    groups: Vec<(Vec<usize>, usize, Option<ExpertPool>)>,
    /// MoE layers whose experts all stay on the CPU (no slots).
    cpu_only: Vec<usize>,
    /// Every expert is uploaded at load.
    pub at_load: bool,
}

impl ExpertPlacement {
    /// The placement of `cfg`'s MoE layers with expert formats `formats` (by decoder layer).
    pub fn new(
        ctx: &Context,
        cfg: &ModelConfig,
        formats: &[ExpertFormat],
        r: &ResidencyOptions,
    ) -> Result<Self> {
        let groups = expert_groups(cfg, formats, &r.cpu)?;
        let cpu_only = (cfg.moe_layers().into_iter().enumerate())
            .filter_map(|(i, l)| r.cpu.cpu_only(i).then_some(l))
            .collect();
        let placements = group_placements(r, ArenaLimits::of(ctx), &groups)?;
        let mut at_load = true;
        let mut placed = Vec::with_capacity(groups.len());
        for (g, placement) in groups.into_iter().zip(placements) {
            at_load &= placement == Placement::PerLayer(g.spec.routing.experts);
            let n = g.layers.len();
            let pool = ExpertPool::for_placement(ctx, &g.spec, n, placement, r.policy)?;
            placed.push((g.layers, placement.slots(), pool));
        }
        Ok(Self {
            groups: placed,
            cpu_only,
            at_load,
        })
    }

    /// The residency options of MoE layer `l`: `r`, with every expert on the CPU where the
    /// options keep the layer's experts there.
    pub fn residency_for(&self, l: usize, r: &ResidencyOptions) -> ResidencyOptions {
        match self.cpu_only.contains(&l) {
            true => ResidencyOptions {
                cpu: r.cpu.always(),
                ..r.clone()
            },
            false => r.clone(),
        }
    }

    /// The slots MoE layer `l` may use, and its group's pool with `l`'s index among the
    /// pool's layers.
    pub fn for_layer(&self, l: usize) -> Result<(usize, Option<(&ExpertPool, usize)>)> {
        if self.cpu_only.contains(&l) {
            return Ok((0, None));
        }
        self.groups
            .iter()
            .find_map(|(layers, slots, pool)| {
                let index = layers.iter().position(|&m| m == l)?;
                Some((*slots, pool.as_ref().map(|p| (p, index))))
            })
            .ok_or_else(|| Error::input(format!("layer {l} is not a MoE layer")))
    }
}
