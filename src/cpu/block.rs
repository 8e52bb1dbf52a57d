//! Blocks of 32 values of a packed weight row decoded straight into registers (an array on the
//! stack), for the formats the CPU kernels read most: the same f32 numbers as
//! [`WeightFormat::decode_row`], in code the compiler vectorises, so that a kernel can dot a
//! block with the tokens as soon as it is decoded.

use half::f16;

use crate::cpu::isa::Isa;
use crate::kernels::gguf_unpack::k_scale_min;
use crate::kernels::mxfp4::e8m0_value;
use crate::spec::weight_format::WeightFormat;

/// Values of a block: one GGUF group, one int4 or mxfp4 scale group.
pub(crate) const BLOCK: usize = 32;

/// The e2m1 value of each nibble.
const E2M1: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// Whether [`decode_block`] decodes `format` (the others decode whole rows with
/// [`WeightFormat::decode_row`]).
pub(crate) fn has_blocks(format: WeightFormat) -> bool {
    use WeightFormat as F;
    matches!(
        format,
        F::F32
            | F::F16
            | F::Bf16
            | F::Int8
            | F::Int4
            | F::Mxfp4
            | F::Q8_0
            | F::Q4_0
            | F::Q4K
            | F::Q6K
    )
}

/// The f16 in the low (`high` false) or high half of `word`.
fn half(word: u32, high: bool) -> f32 {
    f16::from_bits((word >> if high { 16 } else { 0 }) as u16).to_f32()
}

/// The 32 4-bit codes of the 4 words `words` (code `i` is nibble `i % 8` of word `i / 8`).
#[inline(always)]
fn codes(words: &[u32]) -> [u8; BLOCK] {
    let bytes: &[u8] = bytemuck::cast_slice(&words[..4]);
    let mut out = [0; BLOCK];
    for (pair, b) in out.chunks_exact_mut(2).zip(bytes) {
        pair[0] = b & 15;
        pair[1] = b >> 4;
    }
    out
}

/// `out[i]` = `value(codes[i])`.
#[inline(always)]
fn map(codes: &[u8; BLOCK], out: &mut [f32; BLOCK], value: impl Fn(u8) -> f32) {
    for (o, &q) in out.iter_mut().zip(codes) {
        *o = value(q);
    }
}

/// Block `b` (values `32b..32b + 32`) of a row: `row` its value words, `meta` its scale words,
/// the row holding the whole block (its `k` a multiple of [`BLOCK`]) and `format` one that
/// [`has_blocks`]; another format fills zeros.
#[inline(always)]
pub(crate) fn decode_block<I: Isa>(
    isa: I,
    format: WeightFormat,
    row: &[u32],
    meta: &[u32],
    b: usize,
    out: &mut [f32; BLOCK],
) {
    use WeightFormat as F;
    match format {
        F::F32 => {
            for (o, w) in out.iter_mut().zip(&row[BLOCK * b..][..BLOCK]) {
                *o = f32::from_bits(*w);
            }
        }
        F::F16 | F::Bf16 => {
            let halves: &[u16] = bytemuck::cast_slice(&row[16 * b..][..16]);
            if format == F::F16 {
                isa.f16_to_f32(halves, out);
            } else {
                for (o, h) in out.iter_mut().zip(halves) {
                    *o = f32::from_bits(u32::from(*h) << 16);
                }
            }
        }
        F::Int8 | F::Q8_0 => {
            let d = match format {
                F::Int8 => f32::from_bits(meta[0]),
                _ => half(meta[b / 2], b % 2 == 1),
            };
            let bytes: &[u8] = bytemuck::cast_slice(&row[8 * b..][..8]);
            for (o, q) in out.iter_mut().zip(bytes) {
                *o = f32::from(*q as i8) * d;
            }
        }
        F::Int4 => {
            let scale = f32::from_bits((meta[b / 2] >> (16 * (b % 2))) << 16);
            map(&codes(&row[4 * b..]), out, |q| {
                f32::from(((q << 4) as i8) >> 4) * scale
            });
        }
        F::Mxfp4 => {
            let scale = e8m0_value((meta[b / 4] >> (8 * (b % 4))) as u8);
            map(&codes(&row[4 * b..]), out, |q| {
                E2M1[usize::from(q & 15)] * scale
            });
        }
        F::Q4_0 => {
            let d = half(meta[b / 2], b % 2 == 1);
            map(&codes(&row[4 * b..]), out, |q| d * (f32::from(q) - 8.0));
        }
        F::Q4K => {
            let (scale, min) = k_scale_min(&meta[4 * (b / 8)..], b % 8);
            map(&codes(&row[4 * b..]), out, |q| scale * f32::from(q) - min);
        }
        F::Q6K => q6k_block(
            &codes(&row[4 * b..]),
            &meta[21 * (b / 8)..][..21],
            b % 8,
            out,
        ),
        _ => out.fill(0.0),
    }
}

/// Q6_K's block `j` of its super-block, whose 21 scale words are `meta`: 16 words of the values'
/// two high bits, 4 of 16-value i8 scales, the f16 `d`.
#[inline(always)]
fn q6k_block(low: &[u8; BLOCK], meta: &[u32], j: usize, out: &mut [f32; BLOCK]) {
    let d = half(meta[20], false);
    let scales: &[u8] = bytemuck::cast_slice(&meta[16..20]);
    for (s, (out, low)) in out
        .chunks_exact_mut(16)
        .zip(low.chunks_exact(16))
        .enumerate()
    {
        let (high, scale) = (meta[2 * j + s], d * f32::from(scales[2 * j + s] as i8));
        for (i, (o, q)) in out.iter_mut().zip(low).enumerate() {
            let q = q | ((((high >> (2 * i)) & 3) as u8) << 4);
            *o = scale * f32::from(q as i8 - 32);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::isa::{Kernels, Portable, detect};

    /// Every block of every block format equals the row `decode_row` gives, on each instruction
    /// set this CPU has.
    #[test]
    fn blocks_are_the_rows_decode_row_gives() {
        let (rows, k) = (3, 512);
        let data: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 37) % 101) as f32 / 7.0 - 7.0)
            .collect();
        let formats = WeightFormat::ALL.into_iter().filter(|f| has_blocks(*f));
        assert_eq!(formats.clone().count(), 10);
        for format in formats {
            let mut packed = Vec::new();
            format.pack_into(&mut packed, &data, rows, k);
            let (words, meta) = (format.row_words(k), format.scale_words(1, k));
            let mut want = vec![0.0; k];
            for r in 0..rows {
                let (row, scales) = (
                    &packed[r * words..][..words],
                    &packed[rows * words + r * meta..][..meta],
                );
                format.decode_row(row, scales, k, &mut want);
                let mut got = [0.0; BLOCK];
                for (b, want) in want.chunks_exact(BLOCK).enumerate() {
                    decode_block(Portable, format, row, scales, b, &mut got);
                    assert_eq!(got, want, "{format:?} row {r} block {b}");
                    #[cfg(target_arch = "x86_64")]
                    if let Kernels::Avx2(isa) = detect() {
                        decode_block(isa, format, row, scales, b, &mut got);
                        assert_eq!(got, want, "{format:?} AVX2 row {r} block {b}");
                    }
                }
            }
        }
    }
}
