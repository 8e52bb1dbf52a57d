//! `x · Wᵀ` over a packed weight matrix on the CPU: rows in parallel, each decoded once and
//! dotted with every token ([`kernel`](super::kernel)).

use rayon::prelude::*;

use crate::cpu::isa::detect;
use crate::cpu::kernel::row_dots;
use crate::error::{Error, Result};
use crate::spec::weight_format::WeightFormat;

/// Weight rows one task decodes and multiplies.
const ROWS_PER_TASK: usize = 16;

/// A packed `[rows, k]` weight matrix of one format ([`weight_packing`](crate::kernels::weight_packing)),
/// its length checked.
#[derive(Debug, Clone, Copy)]
pub struct PackedMatrix<'a> {
    format: WeightFormat,
    words: &'a [u32],
    rows: usize,
    k: usize,
}

impl<'a> PackedMatrix<'a> {
    /// `words` as a `[rows, k]` matrix in `format`: an error naming `name` where either size is
    /// 0 or `words` is not the matrix's [`matrix_bytes`](WeightFormat::matrix_bytes).
    pub fn new(
        name: &str,
        format: WeightFormat,
        words: &'a [u32],
        rows: usize,
        k: usize,
    ) -> Result<Self> {
        if rows == 0 || k == 0 {
            return Err(Error::tensor(name, format!("is empty: [{rows}, {k}]")));
        }
        let want = format.matrix_bytes(rows, k) / 4;
        if words.len() as u64 != want {
            return Err(Error::tensor(
                name,
                format!(
                    "has {} words, a [{rows}, {k}] {} matrix has {want}",
                    words.len(),
                    format.name()
                ),
            ));
        }
        Ok(Self {
            format,
            words,
            rows,
            k,
        })
    }

    /// Rows (output columns of [`matmul`]).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Values per row (the reduction length).
    pub fn k(&self) -> usize {
        self.k
    }

    /// The format of the weights.
    pub(crate) fn format(&self) -> WeightFormat {
        self.format
    }

    /// Row `r`'s value words and scale words.
    pub(crate) fn row(&self, r: usize) -> (&'a [u32], &'a [u32]) {
        let (format, k) = (self.format, self.k);
        let words = format.row_words(k);
        let meta = format.scale_words(1, k);
        (
            &self.words[r * words..(r + 1) * words],
            &self.words[self.rows * words + r * meta..][..meta],
        )
    }
}

/// Values `tokens` rows of `width` take, or an error naming `what` where `len` is short.
pub(crate) fn need(what: &str, len: usize, tokens: usize, width: usize) -> Result<usize> {
    match tokens.checked_mul(width) {
        Some(want) if len >= want => Ok(want),
        _ => Err(Error::input(format!(
            "{what} has {len} values, {tokens} rows of {width} need {}",
            tokens.saturating_mul(width)
        ))),
    }
}

/// `out[t · rows + r] = Σ_i x[t · k + i] · W[r, i]` for the `n` tokens of `x` `[n, k]`, on
/// the current rayon pool: tasks of [`ROWS_PER_TASK`] rows, each row decoded once (a matvec
/// for one token, a GEMM that reads the weights once for more). Extra values of `x` and `out`
/// are left alone; short ones are an error.
pub fn matmul(w: &PackedMatrix<'_>, x: &[f32], n: usize, out: &mut [f32]) -> Result<()> {
    let x = &x[..need("x", x.len(), n, w.k)?];
    let len = need("out", out.len(), n, w.rows)?;
    let out = &mut out[..len];
    match n {
        0 => {}
        // [1, rows] is [rows, 1].
        1 => by_rows(w, x, 1, out),
        _ => {
            let mut by_row = vec![0.0; w.rows * n];
            by_rows(w, x, n, &mut by_row);
            for (r, values) in by_row.chunks_exact(n).enumerate() {
                for (t, v) in values.iter().enumerate() {
                    out[t * w.rows + r] = *v;
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
            || vec![0.0f32; w.k],
            |buffer, (task, chunk)| {
                for (i, outs) in chunk.chunks_exact_mut(n).enumerate() {
                    row_dots(kernels, w, task * ROWS_PER_TASK + i, x, buffer, outs);
                }
            },
        );
}
