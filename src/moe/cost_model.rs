//! The cost model behind `--cpu-experts auto` (after Fiddler): for each expert a step needs
//! and VRAM lacks, upload it and compute it on the GPU, or compute it on the CPU from host
//! memory while the GPU computes the resident ones. Both sides run at once, so the step takes
//! about the longer of the two; the model places the misses to make that as short as it can.
//!
//! Times are linear in bytes:
//! - upload: `bytes / upload_bps` (the bus, and the host's read of the mapped file);
//! - GPU: `bytes / gpu_bps` for each expert it computes (its grouped decode GEMMs);
//! - CPU: `bytes / cpu_bps · (1 + per_token · (tokens - 1))` (the weights are read once for
//!   all of the expert's tokens, and each token adds arithmetic), plus `cpu_overhead` per
//!   step that uses it (reading back the step's input, uploading the rows).
//!
//! The rates start from measurements on this machine (`cpu_side`) and follow what the runtime
//! observes: each step's CPU time and upload time move them by an exponential average.

use serde::Serialize;

/// Weight of a new observation in the running averages.
const LEARN: f64 = 0.25;

/// Rates of one machine for one layer's expert shape and format.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rates {
    /// Host → VRAM bytes per second of an expert upload.
    pub upload_bps: f64,
    /// Bytes per second of resident experts through the GPU's grouped decode GEMMs.
    pub gpu_bps: f64,
    /// Bytes per second of one token through a CPU expert.
    pub cpu_bps: f64,
    /// Extra CPU time of each further token, relative to the first.
    pub per_token: f64,
    /// Seconds a step pays once for using the CPU at all.
    pub cpu_overhead: f64,
}

/// An expert a step needs that is not resident.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Miss {
    /// The expert.
    pub expert: usize,
    /// Its tokens in the step.
    pub tokens: usize,
    /// Bytes of its weights.
    pub bytes: u64,
}

impl Rates {
    /// Seconds to upload `bytes` of an expert.
    pub fn upload_secs(&self, bytes: u64) -> f64 {
        bytes as f64 / self.upload_bps
    }

    /// Seconds the GPU spends on an expert of `bytes`.
    pub fn gpu_secs(&self, bytes: u64) -> f64 {
        bytes as f64 / self.gpu_bps
    }

    /// Seconds the CPU spends on an expert of `bytes` for `tokens` tokens.
    pub fn cpu_secs(&self, bytes: u64, tokens: usize) -> f64 {
        let extra = self.per_token * tokens.saturating_sub(1) as f64;
        bytes as f64 / self.cpu_bps * (1.0 + extra)
    }

    /// Which of `misses` the CPU computes (`true`), given `resident_bytes` of resident experts
    /// the GPU computes anyway: starting from every miss uploaded, the misses whose CPU time is
    /// smallest against their upload move to the CPU while that shortens the step, the longer
    /// of the CPU's time and the GPU's (uploads included). Ties go by expert id, so equal
    /// rates give equal placements.
    pub fn choose(&self, misses: &[Miss], resident_bytes: u64) -> Vec<bool> {
        let gpu_cost = |m: &Miss| self.upload_secs(m.bytes) + self.gpu_secs(m.bytes);
        let mut order: Vec<usize> = (0..misses.len()).collect();
        order.sort_by(|&a, &b| {
            let ratio = |m: &Miss| self.cpu_secs(m.bytes, m.tokens) / gpu_cost(m);
            ratio(&misses[a])
                .total_cmp(&ratio(&misses[b]))
                .then(misses[a].expert.cmp(&misses[b].expert))
        });
        let mut gpu = self.gpu_secs(resident_bytes) + misses.iter().map(gpu_cost).sum::<f64>();
        let mut cpu = 0.0;
        let mut on_cpu = vec![false; misses.len()];
        for i in order {
            let m = &misses[i];
            let moved_cpu = cpu + self.cpu_secs(m.bytes, m.tokens) + self.overhead_if(cpu == 0.0);
            let moved_gpu = gpu - gpu_cost(m);
            if moved_cpu.max(moved_gpu) >= cpu.max(gpu) {
                break;
            }
            (cpu, gpu) = (moved_cpu, moved_gpu);
            on_cpu[i] = true;
        }
        on_cpu
    }

    fn overhead_if(&self, first: bool) -> f64 {
        if first { self.cpu_overhead } else { 0.0 }
    }

    /// Folds in a step whose CPU experts (`bytes` and `tokens` each) took `secs`.
    pub fn observe_cpu(&mut self, experts: &[(u64, usize)], secs: f64) {
        let predicted: f64 = experts.iter().map(|&(b, t)| self.cpu_secs(b, t)).sum();
        if predicted > 0.0 && secs > 0.0 {
            self.cpu_bps = blend(self.cpu_bps, self.cpu_bps * predicted / secs);
        }
    }

    /// Folds in uploads of `bytes` in all that took `secs` of host time.
    pub fn observe_upload(&mut self, bytes: u64, secs: f64) {
        if bytes > 0 && secs > 0.0 {
            self.upload_bps = blend(self.upload_bps, bytes as f64 / secs);
        }
    }
}

fn blend(old: f64, new: f64) -> f64 {
    old * (1.0 - LEARN) + new * LEARN
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A PCIe 4 desktop: 25 GB/s bus, 900 GB/s VRAM, 60 GB/s DDR5 for one CPU token.
    fn desktop() -> Rates {
        Rates {
            upload_bps: 25e9,
            gpu_bps: 900e9,
            cpu_bps: 60e9,
            per_token: 0.05,
            cpu_overhead: 20e-6,
        }
    }

    fn misses(n: usize, tokens: usize, bytes: u64) -> Vec<Miss> {
        (0..n)
            .map(|expert| Miss {
                expert,
                tokens,
                bytes,
            })
            .collect()
    }

    #[test]
    fn a_decode_step_splits_its_misses_to_balance_bus_and_cpu() {
        // 8 misses of 9.4 MB: all uploaded 3.3 ms; the CPU is 2.4× faster per expert than
        // the bus, so about 70% of them go to it.
        let choice = desktop().choose(&misses(8, 1, 9_400_000), 0);
        let cpu = choice.iter().filter(|&&c| c).count();
        assert!((5..=6).contains(&cpu), "{choice:?}");
    }

    #[test]
    fn a_prefill_keeps_experts_with_many_tokens_on_the_gpu() {
        // 512 tokens per expert cost the CPU 26× one token: uploading is cheaper.
        let choice = desktop().choose(&misses(8, 512, 9_400_000), 0);
        assert!(choice.iter().all(|&c| !c), "{choice:?}");
    }

    #[test]
    fn a_slow_cpu_gets_nothing_and_a_slow_bus_sends_everything_to_it() {
        let slow_cpu = Rates {
            cpu_bps: 1e9,
            ..desktop()
        };
        assert!(
            slow_cpu
                .choose(&misses(4, 1, 1 << 20), 0)
                .iter()
                .all(|&c| !c)
        );
        let slow_bus = Rates {
            upload_bps: 1e8,
            ..desktop()
        };
        assert!(
            slow_bus
                .choose(&misses(4, 1, 1 << 20), 0)
                .iter()
                .all(|&c| c)
        );
    }

    #[test]
    fn observations_move_the_rates_towards_what_was_seen() {
        let mut r = desktop();
        let before = r.cpu_secs(1 << 20, 1);
        r.observe_cpu(&[(1 << 20, 1)], 4.0 * before);
        let after = r.cpu_secs(1 << 20, 1);
        assert!(after > before && after < 4.0 * before);
        r.observe_upload(1 << 20, 1.0);
        assert!(r.upload_bps < desktop().upload_bps);
    }
}
