//! Routed experts on the host, in the GPU format, for the CPU to compute: read from the
//! layer's expert source (the memory-mapped checkpoint) and kept, converted once, up to a
//! budget of bytes; and the CPU thread pools, one per thread count, shared by every layer.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, Weak};

use crate::cpu::CpuExperts;
use crate::error::Result;
use crate::kernels::expert_arena::packed_expert;
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::weights::{ExpertSource, PackedExpert};

/// The CPU expert kernels' pool of `threads` threads (0: one per core), shared by every layer
/// that asks for the same count while any of them lives.
pub(crate) fn shared_pool(threads: usize) -> Result<Arc<CpuExperts>> {
    static POOLS: Mutex<Vec<(usize, Weak<CpuExperts>)>> = Mutex::new(Vec::new());
    let mut pools = POOLS.lock().unwrap_or_else(|p| p.into_inner());
    pools.retain(|(_, w)| w.strong_count() > 0);
    if let Some(pool) = pools
        .iter()
        .find(|(n, _)| *n == threads)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(pool);
    }
    let pool = Arc::new(CpuExperts::new(threads)?);
    pools.push((threads, Arc::downgrade(&pool)));
    Ok(pool)
}

/// One layer's experts on the host, oldest-first evicted past `budget` bytes.
pub(crate) struct HostExperts {
    source: Arc<dyn ExpertSource>,
    spec: MoeLayerSpec,
    budget: u64,
    held: HashMap<usize, Arc<PackedExpert>>,
    order: VecDeque<usize>,
    bytes: u64,
}

impl HostExperts {
    /// The experts of `source`, shaped and formatted as `spec` says, keeping up to `budget`
    /// bytes of them.
    pub fn new(source: Arc<dyn ExpertSource>, spec: &MoeLayerSpec, budget: u64) -> Self {
        Self {
            source,
            spec: spec.clone(),
            budget,
            held: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
        }
    }

    /// Expert `expert` in the layer's format: kept, or read (and kept if it fits).
    pub fn get(&mut self, expert: usize) -> Result<Arc<PackedExpert>> {
        if let Some(w) = self.held.get(&expert) {
            return Ok(w.clone());
        }
        let s = &self.spec;
        let w = Arc::new(packed_expert(
            self.source.as_ref(),
            expert,
            (s.hidden, s.inter, s.format),
            s.expert_bias,
        )?);
        let size = bytes_of(&w);
        if size <= self.budget {
            while self.bytes + size > self.budget {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                if let Some(gone) = self.held.remove(&old) {
                    self.bytes -= bytes_of(&gone);
                }
            }
            self.held.insert(expert, w.clone());
            self.order.push_back(expert);
            self.bytes += size;
        }
        Ok(w)
    }

    /// Bytes of experts kept now.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }
}

fn bytes_of(w: &PackedExpert) -> u64 {
    let bias = w.bias.as_ref().map_or(0, |(g, d)| g.len() + d.len());
    ((w.gate_up.len() + w.down.len() + bias) * 4) as u64
}
