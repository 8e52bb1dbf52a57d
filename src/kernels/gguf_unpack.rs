//! The CPU decoder of the GGUF formats' GPU layout ([`gguf_formats`](super::gguf_formats)):
//! the values the kernels compute with, in gguf-py's arithmetic, so they equal
//! [`crate::gguf::dequantize`] of the blocks they were repacked from, bit for bit.

use half::f16;

use super::gguf_formats::GROUP;
use crate::spec::weight_format::WeightFormat;

/// The f32 of the f16 in the low (`high` false) or high half of `word`.
fn half(word: u32, high: bool) -> f32 {
    f16::from_bits((word >> if high { 16 } else { 0 }) as u16).to_f32()
}

/// Byte `i` of the little-endian words `words`.
fn byte(words: &[u32], i: usize) -> u8 {
    (words[i / 4] >> (8 * (i % 4))) as u8
}

/// ggml's `get_scale_min_k4`: sub-block `j`'s 6-bit scale and min from the 12 packed bytes.
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

impl WeightFormat {
    /// One row of `k` values of a GGUF-format matrix, appended to `out`: `words` its value
    /// words, `meta` its scale-block words.
    pub(crate) fn unpack_gguf_row(self, words: &[u32], meta: &[u32], k: usize, out: &mut Vec<f32>) {
        let groups = words.len() * self.per_word() / GROUP;
        for g in 0..groups {
            let take = k.saturating_sub(g * GROUP).min(GROUP);
            if take == 0 {
                break;
            }
            let codes: Vec<u8> = if self == Self::Q8_0 {
                (0..GROUP).map(|i| byte(&words[8 * g..], i)).collect()
            } else {
                let w = &words[4 * g..4 * g + 4];
                (0..GROUP)
                    .map(|i| ((w[i / 8] >> (4 * (i % 8))) & 15) as u8)
                    .collect()
            };
            let fifth = |qh: u32, i: usize| ((qh >> i) & 1) as u8 * 16;
            let (sb, j) = (g / 8, g % 8);
            out.extend((0..take).map(|i| {
                let q = codes[i];
                match self {
                    Self::Q8_0 => f32::from(q as i8) * half(meta[g / 2], g % 2 == 1),
                    Self::Q4_0 => half(meta[g / 2], g % 2 == 1) * f32::from(q as i8 - 8),
                    Self::Q4_1 => half(meta[g], false) * f32::from(q) + half(meta[g], true),
                    Self::Q5_0 => {
                        let d = half(meta[groups + g / 2], g % 2 == 1);
                        d * f32::from((q | fifth(meta[g], i)) as i8 - 16)
                    }
                    Self::Q5_1 => {
                        let dm = meta[2 * g + 1];
                        half(dm, false) * f32::from(q | fifth(meta[2 * g], i)) + half(dm, true)
                    }
                    Self::Q4K | Self::Q5K => {
                        let base = if self == Self::Q4K { 4 * sb } else { 12 * sb };
                        let (sc, m) = scale_min(&meta[base + 1..base + 4], j);
                        let scale = half(meta[base], false) * f32::from(sc);
                        let min = half(meta[base], true) * f32::from(m);
                        let high = if self == Self::Q5K {
                            fifth(meta[base + 4 + j], i)
                        } else {
                            0
                        };
                        scale * f32::from(q | high) - min
                    }
                    Self::Q6K => {
                        let base = 21 * sb;
                        let v = 32 * j + i;
                        let high = ((meta[base + v / 16] >> (2 * (v % 16))) & 3) as u8;
                        let sc = byte(&meta[base + 16..base + 20], v / 16) as i8;
                        let scale = half(meta[base + 20], false) * f32::from(sc);
                        scale * f32::from((q | high << 4) as i8 - 32)
                    }
                    _ => 0.0,
                }
            }));
        }
    }
}
