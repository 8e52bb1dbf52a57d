//! Routing of every MoE layer read back after a step, with the norm of each routed expert's
//! output: what calibration needs (frequency, gate weights, REAP saliency, co-activation).

use crate::error::Result;
use crate::gpu::Recorder;
use crate::gpu::{Context, Staging, decode};
use crate::moe::layer::MoeLayer;
use crate::spec::INVALID;

/// One MoE layer's routing for the tokens of a step.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerRouting {
    /// Decoder layer index.
    pub layer: usize,
    /// Experts per token.
    pub top_k: usize,
    /// [tokens, k], `INVALID` for dropped slots.
    pub ids: Vec<u32>,
    /// [tokens, k]
    pub weights: Vec<f32>,
    /// [tokens, k] ‖expert(x)‖ of each routed pair (0 for dropped slots).
    pub output_norms: Vec<f32>,
}

/// The staging buffer and plan of one step's capture.
pub(crate) struct RoutingCapture {
    staging: Staging,
    tokens: usize,
    /// (decoder layer, k, hidden, byte offset) per MoE layer.
    layout: Vec<(usize, usize, usize, u64)>,
    pub(crate) result: Vec<LayerRouting>,
}

fn layer_bytes(tokens: usize, k: usize, hidden: usize) -> u64 {
    // ids, weights, positions, then expert outputs.
    (tokens * k * (3 + hidden) * 4) as u64
}

impl RoutingCapture {
    pub(crate) fn new<'a>(
        ctx: &Context,
        tokens: usize,
        layers: impl Iterator<Item = (usize, &'a MoeLayer)>,
    ) -> Result<Self> {
        let mut layout = Vec::new();
        let mut offset = 0;
        for (l, m) in layers {
            let (k, h) = (m.top_k(), m.spec.hidden);
            layout.push((l, k, h, offset));
            offset += layer_bytes(tokens, k, h);
        }
        Ok(Self {
            staging: Staging::new(ctx, "routing capture", offset)?,
            tokens,
            layout,
            result: Vec::new(),
        })
    }

    /// Records copies of the `index`-th MoE layer's routing and expert outputs, right after
    /// its step (the next MoE layer overwrites the step buffers they share).
    pub(crate) fn record_layer(&self, rec: &mut Recorder<'_>, index: usize, m: &MoeLayer) {
        let t = self.tokens;
        if let Some(&(_, k, h, offset)) = self.layout.get(index) {
            let pairs = (t * k * 4) as u64;
            let (out, pos) = m.expert_output_buffers();
            rec.copy(m.ids_buffer(), 0, &self.staging, offset, pairs);
            rec.copy(m.weights_buffer(), 0, &self.staging, offset + pairs, pairs);
            rec.copy(pos, 0, &self.staging, offset + 2 * pairs, pairs);
            rec.copy(out, 0, &self.staging, offset + 3 * pairs, pairs * h as u64);
        }
    }

    /// Reads the copies (after the submit) into [`Self::result`].
    pub(crate) fn finish(&mut self, ctx: &Context) -> Result<()> {
        let t = self.tokens;
        let total = self
            .layout
            .iter()
            .map(|&(_, k, h, _)| layer_bytes(t, k, h))
            .sum();
        let raw = self.staging.read_bytes(ctx, total)?;
        self.result.clear();
        for &(layer, k, h, offset) in &self.layout {
            let n = t * k;
            let pairs = (n * 4) as u64;
            let ids: Vec<u32> = decode(&raw, offset, n);
            let weights: Vec<f32> = decode(&raw, offset + pairs, n);
            let pos: Vec<u32> = decode(&raw, offset + 2 * pairs, n);
            let rows = pos.iter().filter(|&&p| p != INVALID).count();
            let out: Vec<f32> = decode(&raw, offset + 3 * pairs, rows.max(1) * h);
            let output_norms = pos
                .iter()
                .map(|&p| match out.get(p as usize * h..(p as usize + 1) * h) {
                    Some(row) if p != INVALID => row.iter().map(|v| v * v).sum::<f32>().sqrt(),
                    _ => 0.0,
                })
                .collect();
            self.result.push(LayerRouting {
                layer,
                top_k: k,
                ids,
                weights,
                output_norms,
            });
        }
        Ok(())
    }
}
