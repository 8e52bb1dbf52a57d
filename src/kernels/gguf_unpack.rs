//! The CPU decoder of the GGUF formats' GPU layout ([`gguf_formats`](super::gguf_formats)):
//! the values the kernels compute with, in gguf-py's arithmetic, so they equal
//! [`crate::gguf::dequantize`] of the blocks they were repacked from, bit for bit.

use half::f16;

use super::gguf_formats::GROUP;
use super::weight_decode::nibbles;
use crate::spec::weight_format::WeightFormat;

/// The f32 of the f16 in the low (`high` false) or high half of `word`.
#[inline]
fn half(word: u32, high: bool) -> f32 {
    f16::from_bits((word >> if high { 16 } else { 0 }) as u16).to_f32()
}

/// Byte `i` of the little-endian words `words`.
#[inline]
fn byte(words: &[u32], i: usize) -> u8 {
    (words[i / 4] >> (8 * (i % 4))) as u8
}

/// ggml's `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min from the 12 packed bytes.
#[inline]
fn scale_min(s: &[u32], j: usize) -> (u8, u8) {
    let b = |i| byte(s, i);
    if j < 4 {
        (b(j) & 63, b(j + 4) & 63)
    } else {
        (
            (b(j + 4) & 15) | ((b(j - 4) >> 6) << 4),
            (b(j + 4) >> 4) | ((b(j) >> 6) << 4),
        )
    }
}

/// Sub-block `j`'s scale and min of the K-quant super-block whose scale words start `meta`
/// (d and dmin, then the 12 bytes of 6-bit scales and mins); inlined into the CPU kernels'
/// block decoders.
#[inline]
pub(crate) fn k_scale_min(meta: &[u32], j: usize) -> (f32, f32) {
    let (sc, m) = scale_min(&meta[1..4], j);
    (
        half(meta[0], false) * f32::from(sc),
        half(meta[0], true) * f32::from(m),
    )
}

impl WeightFormat {
    /// The value of each code of group `g` in the 4-bit formats without a fifth bit (Q4_0,
    /// Q4_1, Q4_K), so that the group decodes by lookup; `None` in the others.
    fn nibble_table(self, meta: &[u32], g: usize) -> Option<[f32; 16]> {
        let table = |value: &dyn Fn(f32) -> f32| Some(std::array::from_fn(|q| value(q as f32)));
        match self {
            Self::Q4_0 => {
                let d = half(meta[g / 2], g % 2 == 1);
                table(&|q| d * (q - 8.0))
            }
            Self::Q4_1 => {
                let (d, m) = (half(meta[g], false), half(meta[g], true));
                table(&|q| d * q + m)
            }
            Self::Q4K => {
                let (scale, min) = k_scale_min(&meta[4 * (g / 8)..], g % 8);
                table(&|q| scale * q - min)
            }
            _ => None,
        }
    }

    /// One row of `out.len()` values of a GGUF-format matrix into `out`: `words` its value
    /// words, `meta` its scale-block words.
    pub(crate) fn decode_gguf_row(self, words: &[u32], meta: &[u32], out: &mut [f32]) {
        let groups = words.len() * self.per_word() / GROUP;
        let fifth = |qh: u32, i: usize| ((qh >> i) & 1) as u8 * 16;
        for (g, out) in out.chunks_mut(GROUP).enumerate() {
            if let Some(table) = self.nibble_table(meta, g) {
                nibbles(out, &words[4 * g..], &table, 1.0);
                continue;
            }
            let mut codes = [0u8; GROUP];
            if self == Self::Q8_0 {
                for (i, c) in codes.iter_mut().enumerate() {
                    *c = byte(&words[8 * g..], i);
                }
            } else {
                for (i, c) in codes.iter_mut().enumerate() {
                    *c = ((words[4 * g + i / 8] >> (4 * (i % 8))) & 15) as u8;
                }
            }
            let values = out.iter_mut().zip(codes.iter().copied().enumerate());
            let (sb, j) = (g / 8, g % 8);
            match self {
                Self::Q8_0 => {
                    let d = half(meta[g / 2], g % 2 == 1);
                    values.for_each(|(v, (_, q))| *v = f32::from(q as i8) * d);
                }
                Self::Q5_0 => {
                    let d = half(meta[groups + g / 2], g % 2 == 1);
                    let qh = meta[g];
                    values
                        .for_each(|(v, (i, q))| *v = d * f32::from((q | fifth(qh, i)) as i8 - 16));
                }
                Self::Q5_1 => {
                    let (qh, dm) = (meta[2 * g], meta[2 * g + 1]);
                    let (d, m) = (half(dm, false), half(dm, true));
                    values.for_each(|(v, (i, q))| *v = d * f32::from(q | fifth(qh, i)) + m);
                }
                Self::Q5K => {
                    let (scale, min) = k_scale_min(&meta[12 * sb..], j);
                    let qh = meta[12 * sb + 4 + j];
                    values.for_each(|(v, (i, q))| *v = scale * f32::from(q | fifth(qh, i)) - min);
                }
                Self::Q6K => {
                    let base = 21 * sb;
                    let d = half(meta[base + 20], false);
                    values.for_each(|(v, (i, q))| {
                        let at = 32 * j + i;
                        let high = ((meta[base + at / 16] >> (2 * (at % 16))) & 3) as u8;
                        let sc = byte(&meta[base + 16..base + 20], at / 16) as i8;
                        *v = d * f32::from(sc) * f32::from((q | high << 4) as i8 - 32);
                    });
                }
                _ => out.fill(0.0),
            }
        }
    }
}
