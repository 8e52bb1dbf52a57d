//! Measurements taken in turn, round after round, so that a ratio compares timings taken under
//! the same load.

use crate::error::Result;
use crate::gpu::median;

/// Timings of several measurements taken in turn, round after round: a ratio of two of them is
/// taken within each round, so that load from other processes, which on a shared machine
/// changes over seconds, hits both sides of a ratio alike.
pub struct Rounds {
    /// [measurement][round] seconds.
    secs: Vec<Vec<f64>>,
}

impl Rounds {
    /// One warm-up round, then `repeats` timed rounds of every measurement in order.
    pub fn run(
        repeats: usize,
        measurements: &mut [&mut dyn FnMut() -> Result<f64>],
    ) -> Result<Self> {
        for m in measurements.iter_mut() {
            m()?;
        }
        let mut secs = vec![Vec::new(); measurements.len()];
        for _ in 0..repeats.max(1) {
            for (m, t) in measurements.iter_mut().zip(&mut secs) {
                t.push(m()?);
            }
        }
        Ok(Self { secs })
    }

    /// The median time of measurement `i` in ms.
    pub fn ms(&self, i: usize) -> f64 {
        median(&mut self.secs[i].clone()) * 1e3
    }

    /// Per round, time of `num` / time of `den`.
    pub fn ratios(&self, num: usize, den: usize) -> Vec<f64> {
        self.secs[num]
            .iter()
            .zip(&self.secs[den])
            .map(|(n, d)| n / d)
            .collect()
    }
}
