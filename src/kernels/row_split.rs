//! Weights over the storage binding limit, split by output rows: each part holds a run of a
//! matrix's output columns for every slot, as its own buffer and binding, and the matmul runs
//! once per part (`col0` in `shaders/matmul_common.wgsl`). An output element's sum is the same
//! whichever part computes it, so a split matmul gives the bits of an unsplit one.
//!
//! A part's slot is one packed `[len · rows_per_output, k]` matrix (see `weight_packing`):
//! with a GLU, the gate rows of its columns, then their up rows, then the scale block.

use crate::error::{Error, Result};
use crate::gpu::Context;
use crate::spec::weight_format::WeightFormat;

/// A run of output columns `first..first + len` of a matrix with `total` output columns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Columns {
    /// First output column of the run.
    pub first: usize,
    /// Output columns in the run.
    pub len: usize,
    /// Output columns of the whole matrix.
    pub total: usize,
}

impl Columns {
    /// All `n` columns.
    pub fn all(n: usize) -> Self {
        Self {
            first: 0,
            len: n,
            total: n,
        }
    }

    /// The end of the run.
    pub fn end(&self) -> usize {
        self.first + self.len
    }
}

/// The shape of split weights: `slots` matrices of `n` outputs × `rows_per_output` weight rows
/// of `k` values in `format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitShape {
    /// Output columns.
    pub n: usize,
    /// Weight rows per output column (2 for gate and up).
    pub rows_per_output: usize,
    /// Values per weight row (the reduction length).
    pub k: usize,
    /// Storage format.
    pub format: WeightFormat,
    /// Matrices (expert slots) held side by side.
    pub slots: usize,
}

impl SplitShape {
    /// Bytes of one slot of a part of `len` output columns.
    pub fn slot_bytes(&self, len: usize) -> u64 {
        self.format.matrix_bytes(len * self.rows_per_output, self.k)
    }

    /// The parts: as few as `limit` bytes per buffer allow, of equal width (the last may be
    /// narrower). One part when everything fits.
    pub fn parts(&self, limit: u64) -> Result<Vec<Columns>> {
        let fits = |len: usize| self.buffer_bytes(len) <= limit;
        if self.n == 0 || fits(self.n) {
            return Ok(vec![Columns::all(self.n)]);
        }
        if !fits(1) {
            return Err(Error::DeviceLimit {
                what: format!(
                    "one output row of {} slots of [{}, {}] {} weights",
                    self.slots, self.rows_per_output, self.k, self.format
                ),
                needed: self.buffer_bytes(1),
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        // The widest run that fits (slot_bytes grows with len), then equal runs of it.
        let (mut lo, mut hi) = (1, self.n);
        while lo < hi {
            let mid = (lo + hi).div_ceil(2);
            if fits(mid) { lo = mid } else { hi = mid - 1 }
        }
        let count = self.n.div_ceil(lo);
        let len = self.n.div_ceil(count);
        Ok((0..self.n)
            .step_by(len)
            .map(|first| Columns {
                first,
                len: len.min(self.n - first),
                total: self.n,
            })
            .collect())
    }

    /// Bytes of the buffer of a part of `len` columns: every slot's.
    pub fn buffer_bytes(&self, len: usize) -> u64 {
        self.slot_bytes(len) * self.slots.max(1) as u64
    }

    /// Bytes of every part's buffer, in part order.
    pub fn part_bytes(&self, limit: u64) -> Result<Vec<u64>> {
        let parts = self.parts(limit)?;
        Ok(parts.iter().map(|c| self.buffer_bytes(c.len)).collect())
    }
}

/// One part of [`SplitWeights`]: its columns and the buffer holding them for every slot.
pub struct WeightPart {
    /// The output columns this part computes.
    pub cols: Columns,
    /// `[slots, slot words]`: per slot, the part's packed rows then their scales.
    pub buffer: wgpu::Buffer,
}

/// Packed weights in as many buffers as the binding limit requires.
pub struct SplitWeights {
    /// What the parts hold.
    pub shape: SplitShape,
    /// The parts, in column order.
    pub parts: Vec<WeightPart>,
}

impl SplitWeights {
    /// Zeroed buffers for `shape`, split under the context's binding limit.
    pub fn new(ctx: &Context, label: &str, shape: SplitShape) -> Result<Self> {
        Self::new_within(ctx, label, shape, ctx.max_binding())
    }

    /// As [`Self::new`] under a binding limit of `limit` bytes (at most the context's).
    pub fn new_within(ctx: &Context, label: &str, shape: SplitShape, limit: u64) -> Result<Self> {
        let parts = shape
            .parts(limit.min(ctx.max_binding()))?
            .into_iter()
            .map(|cols| {
                let label = format!("{label} columns {}..{}", cols.first, cols.end());
                Ok(WeightPart {
                    cols,
                    buffer: ctx.storage(&label, shape.buffer_bytes(cols.len))?,
                })
            })
            .collect::<Result<_>>()?;
        Ok(Self { shape, parts })
    }

    /// One slot of weights given as the f32 blocks of [`pack_columns`].
    pub fn from_f32(
        ctx: &Context,
        label: &str,
        shape: SplitShape,
        blocks: &[&[f32]],
    ) -> Result<Self> {
        let shape = SplitShape { slots: 1, ..shape };
        let weights = Self::new(ctx, label, shape)?;
        weights.write_slot(ctx, 0, |cols| {
            pack_columns(shape.format, blocks, shape.k, cols)
        })?;
        Ok(weights)
    }

    /// Writes slot `slot` of every part, packed by `pack` from the part's columns (queued;
    /// visible to the next submit).
    pub fn write_slot(
        &self,
        ctx: &Context,
        slot: usize,
        pack: impl Fn(Columns) -> Vec<u32>,
    ) -> Result<()> {
        for part in &self.parts {
            let words = pack(part.cols);
            debug_assert_eq!(words.len() as u64 * 4, self.shape.slot_bytes(part.cols.len));
            let offset = slot as u64 * self.shape.slot_bytes(part.cols.len);
            ctx.write(&part.buffer, offset, bytemuck::cast_slice(&words))?;
        }
        Ok(())
    }
}

/// Packs columns `cols` of a matrix given as row-major `[total, k]` f32 `blocks` (with a GLU
/// the gate rows, then the up rows; else the one matrix): the rows of those columns from each
/// block in turn, as one matrix in `format`.
pub fn pack_columns(format: WeightFormat, blocks: &[&[f32]], k: usize, cols: Columns) -> Vec<u32> {
    let rows: Vec<&[f32]> = blocks
        .iter()
        .map(|b| &b[cols.first * k..cols.end() * k])
        .collect();
    let mut out = Vec::with_capacity(format.matrix_bytes(cols.len * blocks.len(), k) as usize / 4);
    format.pack_stacked_into(&mut out, &rows, k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(n: usize, format: WeightFormat) -> SplitShape {
        SplitShape {
            n,
            rows_per_output: 2,
            k: 40,
            format,
            slots: 3,
        }
    }

    #[test]
    fn parts_cover_the_columns_in_order_within_the_limit() {
        for format in WeightFormat::ALL {
            for n in [1, 7, 64, 100] {
                let s = shape(n, format);
                for limit in [s.slot_bytes(1) * 3, 5000, 20_000, u64::MAX] {
                    let parts = s.parts(limit).unwrap();
                    let mut next = 0;
                    for c in &parts {
                        assert_eq!((c.first, c.total), (next, n));
                        assert!(c.len > 0 && s.slot_bytes(c.len) * 3 <= limit);
                        next = c.end();
                    }
                    assert_eq!(next, n, "{format} n {n} limit {limit}");
                    let widest = parts[0].len;
                    assert!(parts.iter().all(|c| c.len <= widest));
                    if parts.len() > 1 {
                        // As few parts as the limit allows.
                        assert!(s.slot_bytes(n.div_ceil(parts.len() - 1)) * 3 > limit);
                    }
                }
            }
        }
    }

    #[test]
    fn a_limit_below_one_row_is_a_device_limit_error() {
        let s = shape(8, WeightFormat::F32);
        let err = s.parts(s.slot_bytes(1) * 3 - 1).unwrap_err();
        assert!(matches!(err, Error::DeviceLimit { .. }), "{err}");
    }
}
