//! One weight row dotted with every token: the row decoded block by block straight into
//! registers for up to [`TILE`] tokens, decoded once into a buffer for more, then dotted with
//! [`TILE`] tokens a pass, on the best instruction set of the CPU ([`isa`](super::isa)).
//!
//! Every dot product sums in one fixed order that depends on nothing but `k`: value `i` of the
//! row goes to running sum `i % LANES` while whole chunks of [`LANES`] remain, the last values
//! to a tail sum, then the running sums add pairwise in a fixed tree and the tail last. A
//! token's outputs therefore have the same bits alone and in a batch of any size, on any thread.

use crate::cpu::block::{BLOCK, decode_block, has_blocks};
#[cfg(target_arch = "x86_64")]
use crate::cpu::isa::Avx2;
use crate::cpu::isa::{Isa, Kernels, Portable};
use crate::cpu::matmul::PackedMatrix;

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
        if outs.len() <= TILE {
            return tiles(isa, k, x, outs, |b, values: &mut [f32; BLOCK]| {
                decode_block(isa, format, row, meta, b, values);
            });
        }
        for (b, values) in buffer.as_chunks_mut().0.iter_mut().enumerate() {
            decode_block(isa, format, row, meta, b, values);
        }
    } else {
        format.decode_row(row, meta, k, buffer);
    }
    tiles(isa, k, x, outs, |b, values: &mut [f32; BLOCK]| {
        let block = &buffer[BLOCK * b..(BLOCK * b + BLOCK).min(k)];
        values[..block.len()].copy_from_slice(block);
    });
}

/// The row whose block `b` (its last one possibly partial) `block` writes, dotted with the
/// tokens of `x`, [`TILE`] tokens a pass.
#[inline(always)]
fn tiles<I: Isa>(
    isa: I,
    k: usize,
    x: &[f32],
    outs: &mut [f32],
    mut block: impl FnMut(usize, &mut [f32; BLOCK]),
) {
    for (x, outs) in x.chunks(TILE * k).zip(outs.chunks_mut(TILE)) {
        match outs.len() {
            1 => outs.copy_from_slice(&tile::<I, 1>(isa, k, x, &mut block)),
            2 => outs.copy_from_slice(&tile::<I, 2>(isa, k, x, &mut block)),
            3 => outs.copy_from_slice(&tile::<I, 3>(isa, k, x, &mut block)),
            _ => outs.copy_from_slice(&tile::<I, TILE>(isa, k, x, &mut block)),
        }
    }
}

/// The dot products of the row `block` writes with the `T` tokens of `x` (`[T, k]`), each in
/// the order the module describes.
#[inline(always)]
fn tile<I: Isa, const T: usize>(
    isa: I,
    k: usize,
    x: &[f32],
    block: &mut impl FnMut(usize, &mut [f32; BLOCK]),
) -> [f32; T] {
    let mut sums = [[0.0f32; LANES]; T];
    let mut tails = [0.0f32; T];
    let mut values = [0.0f32; BLOCK];
    for b in 0..k.div_ceil(BLOCK) {
        block(b, &mut values);
        let start = BLOCK * b;
        let len = (k - start).min(BLOCK);
        let whole = len / LANES * LANES;
        for (t, (sums, tail)) in sums.iter_mut().zip(&mut tails).enumerate() {
            let x = &x[t * k + start..][..len];
            let chunks = values[..whole].as_chunks::<LANES>().0;
            for (v, x) in chunks.iter().zip(x[..whole].as_chunks::<LANES>().0) {
                for l in 0..LANES {
                    sums[l] = isa.mul_add(sums[l], v[l], x[l]);
                }
            }
            for (v, x) in values[whole..len].iter().zip(&x[whole..]) {
                *tail = isa.mul_add(*tail, *v, *x);
            }
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
    use crate::cpu::isa::detect;
    use crate::spec::weight_format::WeightFormat;

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
