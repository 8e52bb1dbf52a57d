//! A stack of MoE layers, each reading the previous one's output: the synthetic model of
//! `moe demo` and the harness of the prefetch tests. Its layers share one set of step buffers,
//! layer L+1 predicts its experts from layer L's input (`attach_predictor`), and a step records
//! each layer with [`MoeLayer::record`], naming the following layer as `next`, as the decoder
//! does. With every expert resident the whole step is one submit.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder, Staging, decode};
use crate::moe::budget::ResidencyOptions;
use crate::moe::layer::{LayerBuild, MoeLayer, MoeStep, check_input};
use crate::moe::pool::ExpertPool;
use crate::moe::stats::ResidencyStats;
use crate::moe::step_buffers::{StepBuffers, StepShape, read_checked};
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::routing::DynamicActivation;
use crate::spec::weights::MoeWeights;

/// MoE layers run back to back on the GPU, each reading the previous one's output, sharing one set
/// of step buffers.
pub struct MoeStack {
    /// The layers, in order.
    pub layers: Vec<MoeLayer>,
    /// [layers + 1] activations: layer l reads `acts[l]` and writes `acts[l + 1]`.
    acts: Vec<wgpu::Buffer>,
    readback: Staging,
    hidden: usize,
    max_tokens: usize,
}

impl MoeStack {
    /// One layer per entry of `weights`, all shaped like `spec`, with the experts placed by
    /// `residency` over the whole stack (one pool of slots shared by the layers when they do
    /// not all fit).
    pub fn new(
        ctx: &Context,
        spec: &MoeLayerSpec,
        weights: &[MoeWeights],
        max_tokens: usize,
        residency: &ResidencyOptions,
    ) -> Result<Self> {
        if weights.is_empty() || max_tokens == 0 {
            return Err(Error::input(
                "an MoE stack needs at least one layer and max_tokens ≥ 1",
            ));
        }
        let placement = residency.placement(ctx, spec, weights.len())?;
        let pool =
            ExpertPool::for_placement(ctx, spec, weights.len(), placement, residency.policy)?;
        let bytes = (max_tokens * spec.hidden * 4) as u64;
        let acts: Vec<wgpu::Buffer> = (0..=weights.len())
            .map(|i| ctx.storage(&format!("activations {i}"), bytes))
            .collect::<Result<_>>()?;
        let buffers = Arc::new(StepBuffers::new(ctx, StepShape::of(spec, max_tokens))?);
        let mut layers: Vec<MoeLayer> = Vec::with_capacity(weights.len());
        for (l, w) in weights.iter().enumerate() {
            let build = LayerBuild {
                max_tokens,
                io: Some((acts[l].clone(), acts[l + 1].clone())),
                buffers: Some(buffers.clone()),
                slots: placement.slots(),
                residency,
                layer: l,
                pool: pool.as_ref().map(|p| (p, l)),
            };
            let mut layer = MoeLayer::build(ctx, spec.clone(), w, build)?;
            if residency.prefetch && l > 0 {
                layer.attach_predictor(ctx, &acts[l - 1])?;
            }
            layers.push(layer);
        }
        Ok(Self {
            layers,
            acts,
            // The output, then the router status word.
            readback: Staging::new(ctx, "stack output", bytes + 4)?,
            hidden: spec.hidden,
            max_tokens,
        })
    }

    /// [max_tokens, hidden] input of the first layer.
    pub fn input(&self) -> &wgpu::Buffer {
        &self.acts[0]
    }

    /// [max_tokens, hidden] output of the last layer.
    pub fn output(&self) -> &wgpu::Buffer {
        &self.acts[self.layers.len()]
    }

    /// Records one step of every layer on the first `tokens` rows of [`Self::input`].
    pub fn record(
        &self,
        ctx: &Context,
        rec: &mut Recorder<'_>,
        tokens: usize,
        activation: &DynamicActivation,
    ) -> Result<()> {
        for (l, layer) in self.layers.iter().enumerate() {
            let step = MoeStep {
                next: self.layers.get(l + 1).map(|n| (n, activation)),
                ..MoeStep::new(tokens, activation)
            };
            layer.record(ctx, rec, &step)?;
        }
        Ok(())
    }

    /// Runs the stack on `x` ([tokens, hidden]), one step per `max_tokens` tokens.
    pub fn forward(
        &self,
        ctx: &Context,
        x: &[f32],
        activation: &DynamicActivation,
    ) -> Result<Vec<f32>> {
        check_input(x, self.hidden)?;
        activation.validate()?;
        let mut out = Vec::with_capacity(x.len());
        for chunk in x.chunks(self.max_tokens * self.hidden) {
            let tokens = chunk.len() / self.hidden;
            ctx.queue
                .write_buffer(self.input(), 0, bytemuck::cast_slice(chunk));
            self.layers[0].clear_status(ctx)?;
            let mut rec = Recorder::new(ctx);
            self.record(ctx, &mut rec, tokens, activation)?;
            let bytes = (chunk.len() * 4) as u64;
            rec.copy(self.output(), 0, &self.readback, 0, bytes);
            rec.copy(self.layers[0].status_buffer(), 0, &self.readback, bytes, 4);
            rec.submit()?;
            let read = read_checked(ctx, &self.readback, bytes)?;
            out.extend(decode::<f32>(&read, 0, chunk.len()));
        }
        Ok(out)
    }

    /// Residency statistics of every layer.
    pub fn stats(&self) -> ResidencyStats {
        ResidencyStats::from_layers(self.layers.iter().map(MoeLayer::stats).collect())
    }
}
