//! One weight row dotted with every token: the row decoded block by block straight into
//! registers for up to [`TILE`] tokens, decoded once into a buffer for more, then dotted with
//! [`TILE`] tokens a pass, on the best instruction set of the CPU ([`isa`](super::isa)).
//!
//! Every dot product sums in one fixed order that depends on nothing but `k`: value `i` of the
//! row goes to running sum `i % LANES` while whole chunks of [`LANES`] remain, the last values
//! to a tail sum, then the running sums add pairwise in a fixed tree and the tail last. A
//! token's outputs therefore have the same bits alone and in a batch of any size, on any thread.

#[cfg(target_arch = "x86_64")]
use crate::cpu::avx2::Avx2;
use crate::cpu::block::{BLOCK, decode_block, has_blocks};
use crate::cpu::dispatch::Kernels;
use crate::cpu::isa::{Isa, Portable};
use crate::cpu::packed::PackedMatrix;
use crate::spec::weight_format::WeightFormat;

/// Running sums of a dot product: two AVX or four SSE registers of products in flight.
const LANES: usize = 16;

/// Tokens one pass over a row multiplies: 4 tokens' running sums fill 8 AVX registers.
const TILE: usize = 4;

/// `outs[t]` = row `r` of `w` · token `t` of `x` `[outs.len(), w.k()]`, `buffer` holding at
/// least `w.k()` values.
pub(crate) fn row_dots(
    kernels: Kernels,
    w: &PackedMatrix<'_>,
    r: usize,
    x: &[f32],
    buffer: &mut [f32],
    outs: &mut [f32],
) {
    match kernels {
        Kernels::Portable => dots(Portable, w, r, x, buffer, outs),
        // SAFETY: an Avx2 exists only where the CPU has AVX2, FMA and F16C.
        #[cfg(target_arch = "x86_64")]
        Kernels::Avx2(isa) => unsafe { dots_avx2(isa, w, r, x, buffer, outs) },
    }
}

/// [`dots`] compiled for AVX2, FMA and F16C.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma,f16c")]
fn dots_avx2(
    isa: Avx2,
    w: &PackedMatrix<'_>,
    r: usize,
    x: &[f32],
    buffer: &mut [f32],
    outs: &mut [f32],
) {
    dots(isa, w, r, x, buffer, outs);
}

/// [`row_dots`] on `isa`.
#[inline(always)]
fn dots<I: Isa>(
    isa: I,
    w: &PackedMatrix<'_>,
    r: usize,
    x: &[f32],
    buffer: &mut [f32],
    outs: &mut [f32],
) {
    let (format, k) = (w.format(), w.k());
    let (row, meta) = w.row(r);
    let buffer = &mut buffer[..k];
    if has_blocks(format) && k % BLOCK == 0 {
        let decoded = Decoded {
            isa,
            format,
            row,
            meta,
        };
        if outs.len() <= TILE {
            return tiles(isa, k, x, outs, &decoded);
        }
        for (b, values) in buffer.as_chunks_mut().0.iter_mut().enumerate() {
            decoded.block(b, values);
        }
    } else {
        format.decode_row(row, meta, k, buffer);
    }
    tiles(isa, k, x, outs, &Buffered(buffer));
}

/// Where the blocks of a row come from.
trait Blocks {
    /// Whole block `b` of the row, decoded into `values` or not.
    fn block<'a>(&'a self, b: usize, values: &'a mut [f32; BLOCK]) -> &'a [f32; BLOCK];

    /// The values after the row's whole blocks.
    fn rest(&self) -> &[f32];
}

/// A row of a format that [`has_blocks`], of whole blocks, decoded block by block.
struct Decoded<'a, I> {
    isa: I,
    format: WeightFormat,
    row: &'a [u32],
    meta: &'a [u32],
}

impl<I: Isa> Blocks for Decoded<'_, I> {
    #[inline(always)]
    fn block<'a>(&'a self, b: usize, values: &'a mut [f32; BLOCK]) -> &'a [f32; BLOCK] {
        decode_block(self.isa, self.format, self.row, self.meta, b, values);
        values
    }

    #[inline(always)]
    fn rest(&self) -> &[f32] {
        &[]
    }
}

/// A row decoded into a buffer.
struct Buffered<'a>(&'a [f32]);

impl Blocks for Buffered<'_> {
    #[inline(always)]
    fn block<'a>(&'a self, b: usize, _: &'a mut [f32; BLOCK]) -> &'a [f32; BLOCK] {
        &self.0.as_chunks().0[b]
    }

    #[inline(always)]
    fn rest(&self) -> &[f32] {
        self.0.as_chunks::<BLOCK>().1
    }
}

/// The row of `blocks` dotted with the tokens of `x`, [`TILE`] tokens a pass.
#[inline(always)]
fn tiles<I: Isa>(isa: I, k: usize, x: &[f32], outs: &mut [f32], blocks: &impl Blocks) {
    for (x, outs) in x.chunks(TILE * k).zip(outs.chunks_mut(TILE)) {
        match outs.len() {
            1 => outs.copy_from_slice(&tile::<I, 1>(isa, k, x, blocks)),
            2 => outs.copy_from_slice(&tile::<I, 2>(isa, k, x, blocks)),
            3 => outs.copy_from_slice(&tile::<I, 3>(isa, k, x, blocks)),
            _ => outs.copy_from_slice(&tile::<I, TILE>(isa, k, x, blocks)),
        }
    }
}

/// The dot products of the row of `blocks` with the `T` tokens of `x` (`[T, k]`), each in
/// the order the module describes.
#[inline(always)]
fn tile<I: Isa, const T: usize>(isa: I, k: usize, x: &[f32], blocks: &impl Blocks) -> [f32; T] {
    let mut sums = [[0.0f32; LANES]; T];
    let mut tails = [0.0f32; T];
    let mut scratch = [0.0f32; BLOCK];
    let xs: [_; T] = std::array::from_fn(|t| x[t * k..(t + 1) * k].as_chunks::<BLOCK>());
    for b in 0..k / BLOCK {
        let values = blocks.block(b, &mut scratch).as_chunks::<LANES>().0;
        for (sums, (x, _)) in sums.iter_mut().zip(&xs) {
            for (v, x) in values.iter().zip(x[b].as_chunks::<LANES>().0) {
                isa.mul_add16(sums, v, x);
            }
        }
    }
    let rest = blocks.rest();
    let (whole, tail) = rest.as_chunks::<LANES>();
    for ((sums, tail_sum), (_, x)) in sums.iter_mut().zip(&mut tails).zip(&xs) {
        let (x_whole, x_tail) = x.as_chunks::<LANES>();
        for (v, x) in whole.iter().zip(x_whole) {
            isa.mul_add16(sums, v, x);
        }
        for (v, x) in tail.iter().zip(x_tail) {
            *tail_sum = isa.mul_add(*tail_sum, *v, *x);
        }
    }
    std::array::from_fn(|t| {
        let sums = &mut sums[t];
        let mut width = LANES / 2;
        while width > 0 {
            for l in 0..width {
                sums[l] += sums[l + width];
            }
            width /= 2;
        }
        sums[0] + tails[t]
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::dispatch::detect;

    /// Every instruction set this CPU has gives each row·token dot product of f64's value, from
    /// blocks (k 96) and from whole rows (k 40), for 1 to 6 tokens.
    #[test]
    fn every_instruction_set_dots_rows_as_f64_does() {
        let mut all = vec![Kernels::Portable];
        #[cfg(target_arch = "x86_64")]
        if let found @ Kernels::Avx2(_) = detect() {
            all.push(found);
        }
        let rows = 3;
        for (format, k) in WeightFormat::ALL
            .into_iter()
            .flat_map(|f| [(f, 96), (f, 40)])
        {
            let data: Vec<f32> = (0..rows * k)
                .map(|i| ((i * 37) % 101) as f32 / 9.0 - 5.0)
                .collect();
            let mut packed = Vec::new();
            format.pack_into(&mut packed, &data, rows, k);
            let held = format.unpack(&packed, rows, k);
            let w = PackedMatrix::new("w", format, &packed, rows, k).unwrap();
            for n in 1..=6 {
                let x: Vec<f32> = (0..n * k)
                    .map(|i| ((i * 11) % 23) as f32 / 7.0 - 1.5)
                    .collect();
                for (r, held) in held.chunks_exact(k).enumerate() {
                    for &kernels in &all {
                        let mut outs = vec![f32::NAN; n];
                        row_dots(kernels, &w, r, &x, &mut vec![0.0; k], &mut outs);
                        for (t, (got, x)) in outs.iter().zip(x.chunks_exact(k)).enumerate() {
                            let want: f64 = held
                                .iter()
                                .zip(x)
                                .map(|(a, b)| f64::from(*a) * f64::from(*b))
                                .sum();
                            let err = (f64::from(*got) - want).abs();
                            assert!(
                                err <= 1e-4 * (1.0 + want.abs()),
                                "{format} k {k} row {r} token {t} {kernels:?}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
