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

/// Twice the e2m1 value of each nibble (every one an integer; the scale is halved instead).
const E2M1_TWICE: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// The two's-complement value of each nibble.
const INT4: [i8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, -8, -7, -6, -5, -4, -3, -2, -1];

/// Each nibble less 8 (Q4_0's codes).
const LESS_8: [i8; 16] = [-8, -7, -6, -5, -4, -3, -2, -1, 0, 1, 2, 3, 4, 5, 6, 7];

/// Each nibble itself.
const SAME: [i8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

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
#[inline(always)]
fn half(word: u32, high: bool) -> f32 {
    f16::from_bits((word >> if high { 16 } else { 0 }) as u16).to_f32()
}

/// Block `b` of `row` as `W` words (fixed lengths let the compiler vectorise).
#[inline(always)]
fn words<const W: usize>(row: &[u32], b: usize) -> &[u32; W] {
    &row.as_chunks::<W>().0[b]
}

/// `out[i]` = `q[i] · scale - offset` for the 32 values of a block.
#[inline(always)]
fn scaled<I: Isa>(isa: I, q: &[i8; BLOCK], scale: f32, offset: f32, out: &mut [f32; BLOCK]) {
    let halves = q.as_chunks::<16>().0.iter();
    for (q, out) in halves.zip(out.as_chunks_mut::<16>().0) {
        isa.scaled(q, scale, offset, out);
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
            for (o, w) in out.iter_mut().zip(words::<BLOCK>(row, b)) {
                *o = f32::from_bits(*w);
            }
        }
        F::F16 | F::Bf16 => {
            let halves: &[u16; BLOCK] = bytemuck::cast_ref(words::<16>(row, b));
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
            scaled(isa, bytemuck::cast_ref(words::<8>(row, b)), d, 0.0, out);
        }
        F::Int4 | F::Mxfp4 | F::Q4_0 | F::Q4K => {
            let (table, scale, offset) = match format {
                F::Int4 => (
                    &INT4,
                    f32::from_bits((meta[b / 2] >> (16 * (b % 2))) << 16),
                    0.0,
                ),
                F::Mxfp4 => {
                    let scale = e8m0_value((meta[b / 4] >> (8 * (b % 4))) as u8);
                    (&E2M1_TWICE, 0.5 * scale, 0.0)
                }
                F::Q4_0 => (&LESS_8, half(meta[b / 2], b % 2 == 1), 0.0),
                _ => {
                    let (scale, min) = k_scale_min(&meta[4 * (b / 8)..], b % 8);
                    (&SAME, scale, min)
                }
            };
            let q = isa.nibbles(bytemuck::cast_ref(words::<4>(row, b)), table);
            scaled(isa, &q, scale, offset, out);
        }
        F::Q6K => {
            let low = isa.nibbles(bytemuck::cast_ref(words::<4>(row, b)), &SAME);
            q6k_block(isa, &low, words(meta, b / 8), b % 8, out);
        }
        _ => out.fill(0.0),
    }
}

/// Q6_K's block `j` of its super-block, whose 21 scale words are `meta`: 16 words of the values'
/// two high bits, 4 of 16-value i8 scales, the f16 `d`.
#[inline(always)]
fn q6k_block<I: Isa>(
    isa: I,
    low: &[i8; BLOCK],
    meta: &[u32; 21],
    j: usize,
    out: &mut [f32; BLOCK],
) {
    let d = half(meta[20], false);
    let scales: [u8; 16] = std::array::from_fn(|i| (meta[16 + i / 4] >> (8 * (i % 4))) as u8);
    let halves = low
        .as_chunks::<16>()
        .0
        .iter()
        .zip(out.as_chunks_mut::<16>().0);
    for (s, (low, out)) in halves.enumerate() {
        let high = meta[2 * j + s];
        let q: [i8; 16] =
            std::array::from_fn(|i| (low[i] | (((high >> (2 * i)) & 3) as i8) << 4) - 32);
        isa.scaled(&q, d * f32::from(scales[2 * j + s] as i8), 0.0, out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::dispatch::{Kernels, detect};
    use crate::cpu::isa::Portable;

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
