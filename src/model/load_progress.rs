//! How far loading a model has come, in bytes of the checkpoint read, converted and uploaded:
//! each decoder layer's tensors once it is built (its routed experts only when they are
//! uploaded at load, not in cache mode), then the final norm and the LM head. The embedding
//! table stays memory-mapped on the host and is not counted.

use std::collections::HashMap;

use crate::model::checkpoint::Checkpoint;

/// Bytes of the checkpoint loaded so far, of `total` that loading reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoadProgress {
    /// Bytes loaded so far.
    pub done: u64,
    /// Bytes loading reads in all.
    pub total: u64,
}

/// Counts what [`crate::Model::load_observed`] has loaded and reports it after each layer.
pub(crate) struct LoadTracker<'a> {
    /// Per decoder layer: bytes of its tensors other than routed experts, and of those.
    layers: HashMap<usize, (u64, u64)>,
    rest: u64,
    experts_at_load: bool,
    progress: LoadProgress,
    observe: &'a mut dyn FnMut(LoadProgress),
}

impl<'a> LoadTracker<'a> {
    /// `experts_at_load`: routed experts are uploaded while loading (every expert resident);
    /// `rest` names the tensors read after the layers (the final norm and the LM head).
    pub fn new(
        ckpt: &Checkpoint,
        experts_at_load: bool,
        rest: &[&str],
        observe: &'a mut dyn FnMut(LoadProgress),
    ) -> Self {
        let bytes = |name: &str| ckpt.entry(name).map_or(0, |e| (e.end - e.start) as u64);
        let mut layers: HashMap<usize, (u64, u64)> = HashMap::new();
        for name in ckpt.names() {
            let Some(l) = layer_of(name) else { continue };
            let entry = layers.entry(l).or_default();
            if name.contains(".experts.") {
                entry.1 += bytes(name);
            } else {
                entry.0 += bytes(name);
            }
        }
        let rest: u64 = rest.iter().map(|n| bytes(n)).sum();
        let per_layer: u64 = layers
            .values()
            .map(|&(other, experts)| other + if experts_at_load { experts } else { 0 })
            .sum();
        let progress = LoadProgress {
            done: 0,
            total: per_layer + rest,
        };
        observe(progress);
        Self {
            layers,
            rest,
            experts_at_load,
            progress,
            observe,
        }
    }

    /// Decoder layer `l` is built.
    pub fn layer_done(&mut self, l: usize) {
        let (other, experts) = self.layers.get(&l).copied().unwrap_or_default();
        self.progress.done += other + if self.experts_at_load { experts } else { 0 };
        (self.observe)(self.progress);
    }

    /// Everything is loaded.
    pub fn finish(&mut self) {
        self.progress.done += self.rest;
        (self.observe)(self.progress);
    }
}

/// The decoder layer a tensor belongs to (`model.layers.{l}.…`).
fn layer_of(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("model.layers.")?;
    rest.split('.').next()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tensors_belong_to_their_layer() {
        assert_eq!(
            layer_of("model.layers.12.mlp.experts.3.w1.weight"),
            Some(12)
        );
        assert_eq!(layer_of("model.layers.x.mlp"), None);
        assert_eq!(layer_of("model.norm.weight"), None);
    }
}
