//! The CPU half of a cached layer's step: which of the step's experts the CPU computes
//! ([`CpuPolicy`], the cost model for `auto`), the readback of the step's input and routing it
//! needs, and the computation itself, whose rows the GPU then puts among its own
//! (`kernels::cpu_rows`) before the combine.

use std::sync::Arc;
use std::time::Instant;

use crate::cpu::CpuExperts;
use crate::error::{Error, Result};
use crate::gpu::{Context, Staging};
use crate::kernels::expert_arena::ExpertArena;
use crate::moe::cost_model::{Miss, Rates};
use crate::moe::cpu_options::{CpuOptions, CpuPolicy};
use crate::moe::host_experts::{HostExperts, shared_pool};
use crate::moe::rates;
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::weights::ExpertSource;

/// What the CPU computed in one step.
pub(crate) struct CpuRowsOut {
    /// `[rows]` pair (token · k + slot) of each row, expert by expert.
    pub pairs: Vec<u32>,
    /// `[rows, hidden]` the expert outputs (biases included, routing weight not applied).
    pub rows: Vec<f32>,
    /// Host time of the computation, reading the experts included (seconds).
    pub secs: f64,
}

/// A cached layer's CPU side.
pub(crate) struct CpuSide {
    policy: CpuPolicy,
    pool: Arc<CpuExperts>,
    host: HostExperts,
    /// The cost model's rates (for `auto`), followed from what steps observe.
    pub rates: Option<Rates>,
    spec: MoeLayerSpec,
    expert_bytes: u64,
    /// Receives the step's `[tokens, k]` expert ids.
    ids: Staging,
    /// Receives the step's `[tokens, hidden]` input.
    x: Staging,
    /// The step's ids and input, read by [`Self::read_inputs`].
    inputs: Option<(Vec<u32>, Vec<f32>)>,
}

impl CpuSide {
    /// The CPU side of a layer like `spec` reading its experts from `source`, for steps of up
    /// to `max_tokens` tokens; `None` where `options` never uses the CPU.
    pub fn new(
        ctx: &Context,
        spec: &MoeLayerSpec,
        source: Arc<dyn ExpertSource>,
        options: &CpuOptions,
        max_tokens: usize,
    ) -> Result<Option<Self>> {
        if options.policy == CpuPolicy::Never {
            return Ok(None);
        }
        let pool = shared_pool(options.threads)?;
        let rates = match options.policy {
            CpuPolicy::Auto => Some(rates::measured(ctx, &pool, spec)?),
            _ => None,
        };
        let k = spec.routing.top_k;
        Ok(Some(Self {
            policy: options.policy,
            host: HostExperts::new(source, spec, options.host_cache),
            rates,
            expert_bytes: ExpertArena::expert_bytes(
                spec.hidden,
                spec.inter,
                spec.format,
                spec.expert_bias,
            ),
            ids: Staging::new(ctx, "CPU expert ids", (max_tokens * k * 4) as u64)?,
            x: Staging::new(
                ctx,
                "CPU expert input",
                (max_tokens * spec.hidden * 4) as u64,
            )?,
            spec: spec.clone(),
            pool,
            inputs: None,
        }))
    }

    /// Which experts this side computes.
    pub fn policy(&self) -> CpuPolicy {
        self.policy
    }

    /// Records the copies of the step's ids and input that [`Self::compute`] reads.
    pub fn copy_inputs(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        ids: &wgpu::Buffer,
        x: &wgpu::Buffer,
        tokens: usize,
    ) {
        let k = self.spec.routing.top_k;
        self.ids
            .copy_from(encoder, ids, 0, 0, (tokens * k * 4) as u64);
        let bytes = (tokens * self.spec.hidden * 4) as u64;
        self.x.copy_from(encoder, x, 0, 0, bytes);
    }

    /// The experts (ascending) the CPU computes in a step that routed `counts[e]` tokens to
    /// each expert e, of which `resident(e)` are in VRAM: none (`never`), every needed one that
    /// is not resident as the cost model places them (`auto`), or every needed one (`always`).
    pub fn place(&self, counts: &[u32], resident: impl Fn(usize) -> bool) -> Vec<usize> {
        let needed = (0..counts.len()).filter(|&e| counts[e] > 0);
        match (self.policy, &self.rates) {
            (CpuPolicy::Always, _) => needed.collect(),
            (CpuPolicy::Auto, Some(rates)) => {
                let (hits, misses): (Vec<usize>, Vec<usize>) = needed.partition(|&e| resident(e));
                let misses: Vec<Miss> = misses
                    .into_iter()
                    .map(|expert| Miss {
                        expert,
                        tokens: counts[expert] as usize,
                        bytes: self.expert_bytes,
                    })
                    .collect();
                let resident_bytes = hits.len() as u64 * self.expert_bytes;
                let chosen = rates.choose(&misses, resident_bytes);
                misses
                    .iter()
                    .zip(chosen)
                    .filter_map(|(m, cpu)| cpu.then_some(m.expert))
                    .collect()
            }
            _ => Vec::new(),
        }
    }

    /// Reads the step's ids and input that [`Self::copy_inputs`] copied, for
    /// [`Self::compute`]: call it once the copies' submission is done and before the GPU's
    /// GEMMs are submitted, since a readback waits for everything submitted.
    pub fn read_inputs(&mut self, ctx: &Context, tokens: usize) -> Result<()> {
        let (h, k) = (self.spec.hidden, self.spec.routing.top_k);
        let ids: Vec<u32> = self.ids.read(ctx, tokens * k)?;
        let x: Vec<f32> = self.x.read(ctx, tokens * h)?;
        self.inputs = Some((ids, x));
        Ok(())
    }

    /// Computes `experts` (ascending) for their pairs of the step whose ids and input
    /// [`Self::read_inputs`] read.
    pub fn compute(&mut self, experts: &[usize]) -> Result<CpuRowsOut> {
        let start = Instant::now();
        let (h, k) = (self.spec.hidden, self.spec.routing.top_k);
        let (ids, x) = self
            .inputs
            .take()
            .ok_or_else(|| Error::input("the CPU experts' step inputs were not read"))?;
        let mut out = CpuRowsOut {
            pairs: Vec::new(),
            rows: Vec::new(),
            secs: 0.0,
        };
        let mut seen = Vec::with_capacity(experts.len());
        for &e in experts {
            let pairs: Vec<u32> = (0..ids.len() as u32)
                .filter(|&p| ids[p as usize] as usize == e)
                .collect();
            if pairs.is_empty() {
                continue;
            }
            let mut xs = Vec::with_capacity(pairs.len() * h);
            for &p in &pairs {
                let t = p as usize / k;
                xs.extend_from_slice(&x[t * h..(t + 1) * h]);
            }
            let w = self.host.get(e)?;
            let at = out.rows.len();
            out.rows.resize(at + pairs.len() * h, 0.0);
            let (s, n) = (&self.spec, pairs.len());
            self.pool
                .forward(&w, h, s.inter, s.glu, &xs, n, &mut out.rows[at..])?;
            seen.push((self.expert_bytes, n));
            out.pairs.extend(pairs);
        }
        out.secs = start.elapsed().as_secs_f64();
        if let Some(r) = &mut self.rates {
            r.observe_cpu(&seen, out.secs);
        }
        Ok(out)
    }

    /// Bytes of experts the host keeps converted for the CPU.
    pub fn host_bytes(&self) -> u64 {
        self.host.bytes()
    }
}
