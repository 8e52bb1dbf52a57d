//! `x · Wᵀ` over a packed weight matrix on the CPU: rows in parallel, each decoded once and
//! dotted with every token ([`kernel`](super::kernel)).

use rayon::prelude::*;

use crate::cpu::dispatch::detect;
use crate::cpu::kernel::row_dots;
use crate::cpu::packed::{PackedMatrix, need};
use crate::error::Result;

/// Weight rows one task decodes and multiplies.
const ROWS_PER_TASK: usize = 16;

/// `out[t · rows + r] = Σ_i x[t · k + i] · W[r, i]` for the `n` tokens of `x` `[n, k]`, on
/// the current rayon pool: tasks of [`ROWS_PER_TASK`] rows, each row decoded once (a matvec
/// for one token, a GEMM that reads the weights once for more). Extra values of `x` and `out`
/// are left alone; short ones are an error.
pub fn matmul(w: &PackedMatrix<'_>, x: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
    let x = &x[..need("x", x.len(), n, w.k())?];
    let len = need("out", out.len(), n, w.rows())?;
    let out = &mut out[..len];
    match n {
        0 => {}
        // [1, rows] is [rows, 1].
        1 => by_rows(w, x, 1, out),
        _ => {
            let mut by_row = vec![0.0; w.rows() * n];
            by_rows(w, x, n, &mut by_row);
            for (r, values) in by_row.chunks_exact(n).enumerate() {
                for (t, v) in values.iter().enumerate() {
                    out[t * w.rows() + r] = *v;
                }
            }
        }
    }
    Ok(())
}

/// `by_row[r · n + t]` = W[r] · x[t].
fn by_rows(w: &PackedMatrix<'_>, x: &[f32], n: usize, by_row: &mut [f32]) {
    let kernels = detect();
    by_row
        .par_chunks_mut(ROWS_PER_TASK * n)
        .enumerate()
        .for_each_init(
            || vec![0.0f32; w.k()],
            |buffer, (task, chunk)| {
                for (i, outs) in chunk.chunks_exact_mut(n).enumerate() {
                    row_dots(kernels, w, task * ROWS_PER_TASK + i, x, buffer, outs);
                }
            },
        );
}
