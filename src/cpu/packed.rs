//! A packed weight matrix as the CPU kernels read it: its length checked once, then a row's
//! value and scale words at a time.

use crate::error::{Error, Result};
use crate::spec::weight_format::WeightFormat;

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
