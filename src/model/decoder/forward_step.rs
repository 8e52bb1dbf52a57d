//! The forward step of [`Model`]: embedding rows from the host, each layer recorded by one
//! function (attention, then the MLP or the MoE step, which submits in the middle only for an
//! expert cache), the final norm and LM head for the rows whose logits are wanted, one submit,
//! one readback.

use crate::error::{Error, Result};
use crate::gpu::Recorder;
use crate::gpu::{Context, decode};
use crate::kernels::rows::RowPlace;
use crate::model::capture::{LayerRouting, RoutingCapture};
use crate::model::decoder::{Logits, Mlp, Model};
use crate::model::tensor_trace::Trace;
use crate::moe::layer::{MoeLayer, MoeStep};
use crate::moe::step_buffers::read_checked;
use crate::spec::routing::DynamicActivation;

impl Model {
    /// Checks that `ids` can be appended to sequence `seq`'s cache.
    pub(super) fn check_ids(&self, seq: usize, ids: &[u32]) -> Result<()> {
        let position = self.sequence_position(seq)?;
        if ids.is_empty() {
            return Err(Error::input("no tokens to process (empty prompt)"));
        }
        if let Some((i, id)) = ids
            .iter()
            .enumerate()
            .find(|(_, id)| **id as usize >= self.config.vocab)
        {
            return Err(Error::input(format!(
                "token id {id} at index {i} is out of range: the vocabulary has {} tokens",
                self.config.vocab
            )));
        }
        let end = position + ids.len();
        if end > self.limits.context {
            return Err(Error::input(format!(
                "{} tokens after the {} already in the cache exceed the context of {} tokens \
                 (max_position_embeddings = {}; ModelOptions::max_context)",
                ids.len(),
                position,
                self.limits.context,
                self.config.max_positions
            )));
        }
        Ok(())
    }

    /// Embedding rows of `ids`, converted on the host from the memory-mapped checkpoint.
    fn embed(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut x = Vec::with_capacity(ids.len() * self.config.hidden);
        for id in ids {
            x.extend(self.ckpt.f32_slice(&self.embed_name, *id as usize)?);
        }
        Ok(x)
    }

    /// Appends `ids` to the KV cache (of sequence 0) and returns their logits: `[vocab]` for
    /// [`Logits::Last`], [tokens, vocab] for [`Logits::All`]. Prompts longer than `max_batch`
    /// are processed in several steps (one submit each).
    pub fn forward(&mut self, ctx: &Context, ids: &[u32], which: Logits) -> Result<Vec<f32>> {
        self.forward_sequence(ctx, 0, ids, which)
    }

    /// As [`Self::forward`], appending to sequence `seq`'s cache (of
    /// [`ModelOptions::sequences`](crate::ModelOptions::sequences)).
    pub fn forward_sequence(
        &mut self,
        ctx: &Context,
        seq: usize,
        ids: &[u32],
        which: Logits,
    ) -> Result<Vec<f32>> {
        self.check_ids(seq, ids)?;
        let rows = match which {
            Logits::Last => 1,
            Logits::All => ids.len(),
        };
        if rows > self.limits.logit_rows {
            return Err(Error::input(format!(
                "asked for logits of {rows} tokens; the model was built for at most {} \
                 (ModelOptions::max_logit_rows)",
                self.limits.logit_rows
            )));
        }
        if let Some((_, layer)) = self.moe_layers().next() {
            layer.clear_status(ctx)?;
        }
        let chunks: Vec<&[u32]> = ids.chunks(self.limits.batch).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let logit_rows = if i == last { rows } else { 0 };
            let places = self.places(seq, chunk.len());
            self.step(ctx, chunk, &places, logit_rows, None)?;
            self.positions[seq] += chunk.len();
        }
        // The router status word of the MoE layers follows the logits (zero without any).
        let status_at = (rows * self.config.vocab * 4) as u64;
        let bytes = read_checked(ctx, &self.logits, status_at)?;
        Ok(decode(&bytes, 0, rows * self.config.vocab))
    }

    /// Runs `ids` from an empty cache and returns HF-named intermediate tensors
    /// (`embed.output`, `layers.L.attn.output`, `layers.L.mlp.input`, `layers.L.mlp.output`,
    /// `layers.L.output`, `final_norm.output`, `logits`), for debugging against a reference
    /// implementation and for recovery's layer inputs.
    pub fn trace(&mut self, ctx: &Context, ids: &[u32]) -> Result<Trace> {
        self.reset();
        self.check_ids(0, ids)?;
        let t = ids.len();
        if t > self.limits.batch.min(self.limits.logit_rows) {
            return Err(Error::input(format!(
                "a trace runs in one step: {t} tokens exceed max_batch = {} or \
                 max_logit_rows = {}",
                self.limits.batch, self.limits.logit_rows
            )));
        }
        let mut trace = Trace::new(
            ctx,
            t,
            self.config.hidden,
            self.config.layers,
            self.config.vocab,
        )?;
        let places = self.places(0, t);
        self.step(ctx, ids, &places, t, Some(&mut trace))?;
        self.positions[0] += t;
        trace.finish(ctx, &self.logits)?;
        Ok(trace)
    }

    /// One forward step of `ids` placed by `places` (their sequences' caches and positions),
    /// with logits of the last `logit_rows` tokens copied to the staging buffer. The caller
    /// advances the sequences' positions.
    pub(super) fn step(
        &mut self,
        ctx: &Context,
        ids: &[u32],
        places: &[RowPlace],
        logit_rows: usize,
        mut trace: Option<&mut Trace>,
    ) -> Result<()> {
        let t = ids.len();
        let s = &self.scratch;
        s.rows.set(ctx, places)?;
        ctx.queue
            .write_buffer(&s.h, 0, bytemuck::cast_slice(&self.embed(ids)?));
        let mut rec = Recorder::new(ctx);
        if let Some(tr) = trace.as_deref_mut() {
            tr.capture(&mut rec, "embed.output", &s.h);
        }
        let moe: Vec<(usize, &MoeLayer)> = self.moe_layers().collect();
        let mut routed = RoutedCopies::default();
        for l in 0..self.layers.len() {
            let next = moe
                .iter()
                .find(|(i, _)| *i > l)
                .map(|&(i, m)| (m, &self.activation[i]));
            let moe_layer =
                self.record_layer(ctx, &mut rec, l, places, next, trace.as_deref_mut())?;
            if let Some(layer) = moe_layer {
                self.copy_routing(&mut rec, layer, t, &mut routed);
            }
        }
        if logit_rows > 0 {
            self.final_norm
                .encode_range(ctx, rec.pass(), t - logit_rows, logit_rows);
            if let Some(tr) = trace {
                let last = self.config.layers - 1;
                tr.capture(&mut rec, &format!("layers.{last}.output"), &s.h);
                tr.capture(&mut rec, "final_norm.output", &self.final_out);
            }
            self.lm_head.encode(ctx, rec.pass(), logit_rows);
            self.lm_head
                .copy_out(rec.encoder(), &self.logits, logit_rows);
            if let Some((_, layer)) = moe.first() {
                let at = (logit_rows * self.config.vocab * 4) as u64;
                rec.copy(layer.status_buffer(), 0, &self.logits, at, 4);
            }
        }
        rec.submit()?;
        if let Some(staging) = &self.routing {
            let raw = staging.read_bytes(ctx, routed.bytes)?;
            let mut offset = 0;
            for (_, layer) in &moe {
                let n = t * layer.top_k();
                layer.observe_routing(t, &decode::<u32>(&raw, offset, n));
                offset += (n * 4) as u64;
            }
        }
        if let Some(capture) = self.capture.as_mut() {
            capture.finish(ctx)?;
        }
        Ok(())
    }

    /// Records decoder layer `l` for the tokens at `places`: input norm (adding the previous
    /// MLP output to the residual), attention, post-attention norm, then the dense MLP or the
    /// MoE step. Returns the MoE layer it ran, if any.
    fn record_layer(
        &self,
        ctx: &Context,
        rec: &mut Recorder<'_>,
        l: usize,
        places: &[RowPlace],
        next: Option<(&MoeLayer, &DynamicActivation)>,
        mut trace: Option<&mut Trace>,
    ) -> Result<Option<&MoeLayer>> {
        let (s, t) = (&self.scratch, places.len());
        let layer = &self.layers[l];
        layer.input_norm.encode(ctx, rec.pass(), t);
        if l > 0
            && let Some(tr) = trace.as_deref_mut()
        {
            tr.capture(rec, &format!("layers.{}.output", l - 1), &s.h);
        }
        layer.attention.encode(ctx, rec.pass(), places)?;
        layer.post_norm.encode(ctx, rec.pass(), t);
        if let Some(tr) = trace.as_deref_mut() {
            tr.capture(rec, &format!("layers.{l}.attn.output"), &s.attn_out);
            tr.capture(rec, &format!("layers.{l}.mlp.input"), &s.x);
        }
        let moe = match &layer.mlp {
            Mlp::Dense(mlp) => {
                mlp.encode(ctx, rec.pass(), t);
                None
            }
            Mlp::Moe(moe) => {
                let step = MoeStep {
                    next,
                    ..MoeStep::new(t, &self.activation[l])
                };
                moe.record(ctx, rec, &step)?;
                Some(moe.as_ref())
            }
        };
        if let Some(tr) = trace {
            tr.capture(rec, &format!("layers.{l}.mlp.output"), &s.mlp_out);
        }
        Ok(moe)
    }

    /// Copies what the routing statistics and a routing capture read of an MoE layer's step,
    /// right after it: the layers share their step buffers, so the next one overwrites them.
    fn copy_routing(
        &self,
        rec: &mut Recorder<'_>,
        layer: &MoeLayer,
        t: usize,
        routed: &mut RoutedCopies,
    ) {
        if let Some(staging) = &self.routing {
            let bytes = (t * layer.top_k() * 4) as u64;
            rec.copy(layer.ids_buffer(), 0, staging, routed.bytes, bytes);
            routed.bytes += bytes;
        }
        if let Some(capture) = &self.capture {
            capture.record_layer(rec, routed.layers, layer);
        }
        routed.layers += 1;
    }
}

/// How much of a step's routing has been copied out so far.
#[derive(Default)]
struct RoutedCopies {
    /// MoE layers done.
    layers: usize,
    /// Bytes of expert ids in the routing statistics' staging buffer.
    bytes: u64,
}

impl Model {
    /// Appends `ids` to the KV cache like [`Model::forward`] (one step: at most `max_batch`
    /// tokens) and returns every MoE layer's routing of them, with expert output norms.
    pub fn capture_routing(&mut self, ctx: &Context, ids: &[u32]) -> Result<Vec<LayerRouting>> {
        if ids.len() > self.limits.batch {
            return Err(Error::input(format!(
                "a routing capture runs in one step: {} tokens exceed max_batch = {}",
                ids.len(),
                self.limits.batch
            )));
        }
        self.capture = Some(RoutingCapture::new(ctx, ids.len(), self.moe_layers())?);
        let result = self.forward(ctx, ids, Logits::Last);
        let capture = self.capture.take();
        result?;
        Ok(capture.map(|c| c.result).unwrap_or_default())
    }
}
