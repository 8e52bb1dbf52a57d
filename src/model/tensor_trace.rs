//! Intermediate activations of one forward step, named as in the HF fixtures, for debugging a
//! model against a reference implementation. Only [`Model::trace`](crate::model::Model::trace)
//! pays for them: each capture ends the compute pass for a buffer copy.

use std::collections::BTreeMap;

use crate::error::Result;
use crate::gpu::Recorder;
use crate::gpu::{Context, Staging, decode};

/// Named activations read back from one forward step ([`crate::Model::trace`]).
pub struct Trace {
    rows: usize,
    hidden: usize,
    vocab: usize,
    staging: Staging,
    capacity: u64,
    pending: Vec<(String, u64)>,
    tensors: BTreeMap<String, Vec<f32>>,
}

impl Trace {
    pub(crate) fn new(
        ctx: &Context,
        rows: usize,
        hidden: usize,
        layers: usize,
        vocab: usize,
    ) -> Result<Self> {
        // embed, final norm, and per layer: attention output, MLP input and output, layer output.
        let captures = 2 + 4 * layers;
        let capacity = (captures * rows * hidden * 4) as u64;
        Ok(Self {
            rows,
            hidden,
            vocab,
            staging: Staging::new(ctx, "trace", capacity)?,
            capacity,
            pending: Vec::new(),
            tensors: BTreeMap::new(),
        })
    }

    /// Records a copy of the first `rows` × `hidden` floats of `buffer` under `name`.
    pub(crate) fn capture(&mut self, rec: &mut Recorder<'_>, name: &str, buffer: &wgpu::Buffer) {
        let bytes = (self.rows * self.hidden * 4) as u64;
        let offset = self.pending.len() as u64 * bytes;
        debug_assert!(
            offset + bytes <= self.capacity,
            "more captures than planned"
        );
        rec.copy(buffer, 0, &self.staging, offset, bytes);
        self.pending.push((name.to_string(), offset));
    }

    /// Reads the captures (after the step was submitted) and the logits.
    pub(crate) fn finish(&mut self, ctx: &Context, logits: &Staging) -> Result<()> {
        let n = self.rows * self.hidden;
        let raw = self
            .staging
            .read_bytes(ctx, self.pending.len() as u64 * n as u64 * 4)?;
        for (name, offset) in self.pending.drain(..) {
            self.tensors.insert(name, decode(&raw, offset, n));
        }
        self.tensors
            .insert("logits".into(), logits.read(ctx, self.rows * self.vocab)?);
        Ok(())
    }

    /// A captured tensor, row-major [tokens, width].
    pub fn get(&self, name: &str) -> Option<&[f32]> {
        self.tensors.get(name).map(|v| v.as_slice())
    }

    /// The names of the captured tensors, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|k| k.as_str())
    }
}
