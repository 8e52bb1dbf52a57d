//! The forward step of [`Model`]: embedding rows from the host, every layer recorded into one
//! compute pass (handing the encoder to an expert cache's sync where a layer needs it), the
//! final norm and LM head for the rows whose logits are wanted, one submit, one readback.

use crate::error::{Error, Result};
use crate::gpu::{Context, decode};
use crate::model::decoder::{Logits, Mlp, Model};
use crate::model::record::Recorder;
use crate::model::trace::Trace;
use crate::moe::layer::MoeLayer;

impl Model {
    /// Checks that `ids` can be appended to the cache.
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
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
        let end = self.position + ids.len();
        if end > self.limits.context {
            return Err(Error::input(format!(
                "{} tokens after the {} already in the cache exceed the context of {} tokens \
                 (max_position_embeddings = {}; ModelOptions::max_context)",
                ids.len(),
                self.position,
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

    /// Appends `ids` to the KV cache and returns their logits: `[vocab]` for [`Logits::Last`],
    /// [tokens, vocab] for [`Logits::All`]. Prompts longer than `max_batch` are processed in
    /// several steps (one submit each).
    pub fn forward(&mut self, ctx: &Context, ids: &[u32], which: Logits) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
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
        let chunks: Vec<&[u32]> = ids.chunks(self.limits.batch).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let logit_rows = if i == last { rows } else { 0 };
            self.step(ctx, chunk, logit_rows, None)?;
        }
        let vocab = self.config.vocab;
        self.logits.read(ctx, rows * vocab)
    }

    /// Runs `ids` from an empty cache and returns HF-named intermediate tensors
    /// (`embed.output`, `layers.L.attn.output`, `layers.L.mlp.output`, `layers.L.output`,
    /// `final_norm.output`, `logits`), for debugging against a reference implementation.
    pub fn trace(&mut self, ctx: &Context, ids: &[u32]) -> Result<Trace> {
        self.reset();
        self.check_ids(ids)?;
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
        );
        self.step(ctx, ids, t, Some(&mut trace))?;
        trace.finish(ctx, &self.logits)?;
        Ok(trace)
    }

    /// One forward step of `ids` at the current position, with logits of the last
    /// `logit_rows` tokens copied to the staging buffer.
    fn step(
        &mut self,
        ctx: &Context,
        ids: &[u32],
        logit_rows: usize,
        mut trace: Option<&mut Trace>,
    ) -> Result<()> {
        let t = ids.len();
        let pos0 = self.position;
        let s = &self.scratch;
        ctx.queue
            .write_buffer(&s.h, 0, bytemuck::cast_slice(&self.embed(ids)?));
        let mut rec = Recorder::new(ctx);
        if let Some(tr) = trace.as_deref_mut() {
            tr.capture(&mut rec, "embed.output", &s.h);
        }
        let moe: Vec<(usize, &MoeLayer)> = self.moe_layers().collect();
        let mut moe_index = 0;
        for (l, layer) in self.layers.iter().enumerate() {
            layer.input_norm.encode(ctx, rec.pass(), t);
            if l > 0
                && let Some(tr) = trace.as_deref_mut()
            {
                tr.capture(&mut rec, &format!("layers.{}.output", l - 1), &s.h);
            }
            layer.attention.encode(ctx, rec.pass(), t, pos0);
            layer.post_norm.encode(ctx, rec.pass(), t);
            if let Some(tr) = trace.as_deref_mut() {
                tr.capture(&mut rec, &format!("layers.{l}.attn.output"), &s.attn_out);
            }
            match &layer.mlp {
                Mlp::Dense(mlp) => mlp.encode(ctx, rec.pass(), t),
                Mlp::Moe(layer) => {
                    moe_index += 1;
                    let next = moe.get(moe_index).copied();
                    layer.encode_route(ctx, rec.pass(), t, &self.activation[l])?;
                    if let Some((next_l, next)) = next {
                        next.encode_prediction(ctx, rec.pass(), t, &self.activation[next_l])?;
                    }
                    let next = next.map(|(_, m)| m);
                    if layer.needs_sync() {
                        let encoder = layer.sync(ctx, rec.take_encoder(), t, next)?;
                        rec.resume(encoder);
                    }
                    layer.encode_experts(ctx, rec.pass(), t);
                }
            }
            if let Some(tr) = trace.as_deref_mut() {
                tr.capture(&mut rec, &format!("layers.{l}.mlp.output"), &s.mlp_out);
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
        }
        let ids_bytes = |layer: &MoeLayer| (t * layer.top_k() * 4) as u64;
        if let Some(capture) = &self.capture {
            capture.record(&mut rec, moe.iter().map(|(_, m)| *m));
        }
        if let Some(staging) = &self.routing {
            let mut offset = 0;
            for (_, layer) in &moe {
                rec.copy(layer.ids_buffer(), 0, staging, offset, ids_bytes(layer));
                offset += ids_bytes(layer);
            }
        }
        rec.submit();
        if let Some(staging) = &self.routing {
            let total: u64 = moe.iter().map(|(_, l)| ids_bytes(l)).sum();
            let raw = staging.read_bytes(ctx, total)?;
            let mut offset = 0;
            for (_, layer) in &moe {
                let ids: Vec<u32> = decode(&raw, offset, t * layer.top_k());
                layer.observe_routing(t, &ids);
                offset += ids_bytes(layer);
            }
        }
        if let Some(capture) = self.capture.as_mut() {
            capture.finish(ctx)?;
        }
        self.position += t;
        Ok(())
    }
}
