//! One row of a packed matrix ([`weight_packing`](super::weight_packing)) decoded to f32: the
//! numbers the GPU computes with, written into a caller's slice so that a CPU kernel can decode
//! row after row without allocating. [`WeightFormat::unpack`] is this, row by row.

use half::slice::HalfFloatSliceExt;
use half::{bf16, f16};

use crate::kernels::mxfp4::e8m0_value;
use crate::spec::weight_format::{INT4_GROUP, MXFP4_GROUP, WeightFormat};

/// The e2m1 value of each nibble ([`e2m1_value`](crate::kernels::mxfp4::e2m1_value)).
const E2M1: [f32; 16] = [
    0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0, -0.0, -0.5, -1.0, -1.5, -2.0, -3.0, -4.0, -6.0,
];

/// The two's-complement value of each nibble.
const INT4: [f32; 16] = [
    0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, -8.0, -7.0, -6.0, -5.0, -4.0, -3.0, -2.0, -1.0,
];

impl WeightFormat {
    /// Decodes one row of a packed `[rows, k]` matrix into `out[..k]`, as
    /// [`unpack`](Self::unpack) gives it: `row` is the row's [`row_words`](Self::row_words)`(k)`
    /// words, `scales` its [`scale_words`](Self::scale_words)`(1, k)` words of the scale block
    /// (those at `r · scale_words(1, k)` for row `r`).
    ///
    /// # Panics
    ///
    /// If `row`, `scales` or `out` are shorter than that (callers check the matrix once,
    /// as `cpu::matmul` does, rather than every row).
    pub fn decode_row(self, row: &[u32], scales: &[u32], k: usize, out: &mut [f32]) {
        let out = &mut out[..k];
        let halves = || &bytemuck::cast_slice::<u32, u16>(row)[..k];
        match self {
            Self::F32 => out.copy_from_slice(bytemuck::cast_slice(&row[..k])),
            Self::F16 => bytemuck::cast_slice::<u16, f16>(halves()).convert_to_f32_slice(out),
            Self::Bf16 => bytemuck::cast_slice::<u16, bf16>(halves()).convert_to_f32_slice(out),
            Self::Int8 => {
                let scale = f32::from_bits(scales[0]);
                for (values, word) in out.chunks_mut(4).zip(row) {
                    for (b, v) in values.iter_mut().enumerate() {
                        *v = f32::from((word >> (8 * b)) as u8 as i8) * scale;
                    }
                }
            }
            Self::Int4 => {
                for (g, values) in out.chunks_mut(INT4_GROUP).enumerate() {
                    let bits = (scales[g / 2] >> (16 * (g % 2))) as u16;
                    let scale = f32::from_bits((bits as u32) << 16);
                    nibbles(values, &row[g * INT4_GROUP / 8..], &INT4, scale);
                }
            }
            Self::Mxfp4 => {
                for (g, values) in out.chunks_mut(MXFP4_GROUP).enumerate() {
                    let scale = e8m0_value((scales[g / 4] >> (8 * (g % 4))) as u8);
                    nibbles(values, &row[g * MXFP4_GROUP / 8..], &E2M1, scale);
                }
            }
            _ => self.decode_gguf_row(row, scales, out),
        }
    }
}

/// `values[8m + n]` = `table[nibble n of words[m]]` · `scale`.
pub(super) fn nibbles(values: &mut [f32], words: &[u32], table: &[f32; 16], scale: f32) {
    for (values, word) in values.chunks_mut(8).zip(words) {
        for (n, v) in values.iter_mut().enumerate() {
            *v = table[((word >> (4 * n)) & 15) as usize] * scale;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernels::mxfp4::e2m1_value;

    #[test]
    fn nibble_tables_are_the_codecs() {
        for n in 0u8..16 {
            assert_eq!(
                E2M1[n as usize].to_bits(),
                e2m1_value(n).to_bits(),
                "e2m1 {n}"
            );
            assert_eq!(
                INT4[n as usize],
                f32::from(((n << 4) as i8) >> 4),
                "int4 {n}"
            );
        }
    }

    #[test]
    fn rows_decode_alone_as_in_the_matrix() {
        let (rows, k) = (3, 75);
        let data: Vec<f32> = (0..rows * k)
            .map(|i| ((i * 37) % 101) as f32 - 50.0)
            .collect();
        for format in WeightFormat::ALL {
            let mut packed = Vec::new();
            format.pack_into(&mut packed, &data, rows, k);
            let whole = format.unpack(&packed, rows, k);
            let (words, meta) = (format.row_words(k), format.scale_words(1, k));
            let mut out = vec![f32::NAN; k + 1];
            for r in 0..rows {
                let scales = &packed[rows * words + r * meta..][..meta];
                format.decode_row(&packed[r * words..][..words], scales, k, &mut out);
                assert_eq!(out[..k], whole[r * k..(r + 1) * k], "{format:?} row {r}");
                assert!(out[k].is_nan(), "{format:?} wrote past k");
            }
        }
    }
}
