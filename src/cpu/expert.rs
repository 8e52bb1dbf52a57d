//! One routed expert's MLP on the CPU, from its packed weights, on a pool of its own threads.

use rayon::{ThreadPool, ThreadPoolBuilder};

use crate::cpu::matmul::matmul;
use crate::cpu::packed::{PackedMatrix, need};
use crate::error::{Error, Result};
use crate::spec::layer_spec::Glu;
use crate::spec::weights::PackedExpert;

/// Computes routed experts on the CPU, on a thread pool it owns (so that it neither waits for
/// nor slows down rayon's global pool).
pub struct CpuExperts {
    pool: ThreadPool,
}

impl CpuExperts {
    /// A pool of `threads` threads, 0 meaning one per available core; an error where the
    /// threads cannot be started.
    pub fn new(threads: usize) -> Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
            t => t,
        };
        let pool = ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("cpu-experts-{i}"))
            .build()
            .map_err(|e| Error::input(format!("cannot start {threads} CPU expert threads: {e}")))?;
        Ok(Self { pool })
    }

    /// Threads of the pool.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// `out[..n·hidden]` = down(act(gate_up · x + b)) + b_down for the `n` rows of `x`
    /// `[n, hidden]`, from `w` as packed for the GPU: the same weights, in f32 sums. `glu` must
    /// gate (the gate/up matrix of a routed expert holds gate rows then up rows); every length
    /// is checked, and a wrong one is an error naming it.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        w: &PackedExpert,
        hidden: usize,
        inter: usize,
        glu: Glu,
        x: &[f32],
        n: usize,
        out: &mut [f32],
    ) -> Result<()> {
        if glu == Glu::None {
            return Err(Error::input(
                "CPU experts compute gated experts: a routed expert's gate/up matrix holds gate \
                 rows then up rows, which Glu::None has no activation for",
            ));
        }
        let gate_up =
            PackedMatrix::new("gate_up", w.format.gate_up, &w.gate_up, 2 * inter, hidden)?;
        let down = PackedMatrix::new("down", w.format.down, &w.down, hidden, inter)?;
        if let Some((gate_up_bias, down_bias)) = &w.bias {
            bias_len("gate_up_bias", gate_up_bias, 2 * inter)?;
            bias_len("down_bias", down_bias, hidden)?;
        }
        let x = &x[..need("x", x.len(), n, hidden)?];
        let len = need("out", out.len(), n, hidden)?;
        let out = &mut out[..len];
        self.pool.install(|| {
            let mut projected = vec![0.0; n * 2 * inter];
            matmul(&gate_up, x, n, &mut projected)?;
            let mut act = vec![0.0; n * inter];
            for (a, p) in act
                .chunks_exact_mut(inter)
                .zip(projected.chunks_exact(2 * inter))
            {
                let (gate, up) = p.split_at(inter);
                for (i, a) in a.iter_mut().enumerate() {
                    let (g, u) = match &w.bias {
                        Some((b, _)) => (gate[i] + b[i], up[i] + b[inter + i]),
                        None => (gate[i], up[i]),
                    };
                    *a = activate(glu, g, u);
                }
            }
            matmul(&down, &act, n, out)?;
            if let Some((_, b)) = &w.bias {
                for row in out.chunks_exact_mut(hidden) {
                    row.iter_mut().zip(b).for_each(|(o, b)| *o += b);
                }
            }
            Ok(())
        })
    }
}

fn bias_len(name: &str, bias: &[f32], want: usize) -> Result<()> {
    if bias.len() == want {
        Ok(())
    } else {
        Err(Error::tensor(
            name,
            format!("has {} values, expected {want}", bias.len()),
        ))
    }
}

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// The gated activation of gate value `g` and up value `u`, in f32
/// ([`reference::linear::activate`](crate::reference::linear::activate)'s math).
fn activate(glu: Glu, g: f32, u: f32) -> f32 {
    match glu {
        Glu::None => g,
        Glu::Silu => g * sigmoid(g) * u,
        Glu::ClampedSwiglu { limit, alpha } => {
            let g = g.min(limit);
            let u = u.clamp(-limit, limit);
            (u + 1.0) * g * sigmoid(alpha * g)
        }
    }
}
