//! GGUF's quantised types on the GPU, and the lossless repack from GGUF blocks.
//!
//! The formats keep [`weight_packing`](crate::kernels::weight_packing)'s scheme: `[rows, k]`
//! rows of `vec4<u32>` value words, then the slot's scale block. They hold the same codes and
//! the same f16 scales as GGUF, only moved so that one 32-value group is one `vec4<u32>` word
//! (Q8_0: two) and its side data sits in the scale block, where every kernel reads it with the
//! word. Rows are padded to whole GGUF blocks (32 values, 256 for the K-quants).
//!
//! | format | value word (32 values) | scale block words per row (g groups of 32) | bits/weight (GGUF) |
//! |---|---|---|---|
//! | `Q8_0` | two words of 16 × i8, element `4m + b` in byte `b` of u32 `m` | `⌈g/2⌉`: f16 `d`, even group low | 8.5 (8.5) |
//! | `Q4_0` | unsigned nibbles, element `8m + n` in bits `4n..4n + 4` of u32 `m` | `⌈g/2⌉`: f16 `d` pairs | 4.5 (4.5) |
//! | `Q4_1` | nibbles as Q4_0 | `g`: `d \| m << 16` | 5.0 (5.0) |
//! | `Q5_0` | low nibbles as Q4_0 | `g` words `qh` (bit `i`: value `i`'s fifth bit), then `⌈g/2⌉` of `d` pairs | 5.5 (5.5) |
//! | `Q5_1` | low nibbles as Q4_0 | per group: `qh`, then `d \| m << 16` | 6.0 (6.0) |
//! | `Q4K` | nibbles as Q4_0 | per 256: `d \| dmin << 16`, then GGUF's 12 packed 6-bit scale/min bytes | 4.5 (4.5) |
//! | `Q5K` | low nibbles as Q4_0 | per 256: Q4K's 4 words, then 8 `qh` words (bit `l` of word `j`: value `l` of group `j`) | 5.5 (5.5) |
//! | `Q6K` | low nibbles as Q4_0 | per 256: 16 words of high bit pairs (value `16m + n` of the super-block in bits `2n` of word `m`), 4 words of the 16 i8 scales, f16 `d` | 6.625 (6.5625) |
//!
//! Values are computed as gguf-py computes them (`q * d`, `d * (q - 8)`, `d * q + m`,
//! `(d * sc) * q - dmin * m`, `(d * sc) * (q - 32)`), so [`WeightFormat::unpack`] equals
//! [`crate::gguf::dequantize`] bit for bit. A non-finite f16 scale is refused at the repack.

use half::f16;

use super::gguf_quantize::quantize_row;
use crate::error::{Error, Result};
use crate::gguf::GgmlType;
use crate::spec::weight_format::WeightFormat;

/// Values per group: one `vec4<u32>` of nibbles.
pub(crate) const GROUP: usize = 32;

/// Values per K-quant super-block.
pub(crate) const QK_K: usize = 256;

impl WeightFormat {
    /// The GGUF type this format holds block for block, for the GGUF quantised formats.
    pub fn gguf_type(self) -> Option<GgmlType> {
        Some(match self {
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q4_0 => GgmlType::Q4_0,
            Self::Q4_1 => GgmlType::Q4_1,
            Self::Q5_0 => GgmlType::Q5_0,
            Self::Q5_1 => GgmlType::Q5_1,
            Self::Q4K => GgmlType::Q4_K,
            Self::Q5K => GgmlType::Q5_K,
            Self::Q6K => GgmlType::Q6_K,
            _ => return None,
        })
    }

    /// The format that holds GGUF type `ty` without loss: F32, F16 and BF16 as themselves,
    /// MXFP4 as [`Self::Mxfp4`] (the same e2m1 values and power-of-two scales).
    pub fn of_gguf(ty: GgmlType) -> Self {
        match ty {
            GgmlType::F32 => Self::F32,
            GgmlType::F16 => Self::F16,
            GgmlType::BF16 => Self::Bf16,
            GgmlType::MXFP4 => Self::Mxfp4,
            _ => Self::GGUF
                .into_iter()
                .find(|f| f.gguf_type() == Some(ty))
                .unwrap_or(Self::F32),
        }
    }

    /// Values per GGUF block of a GGUF quantised format (rows are padded to whole blocks).
    pub(crate) fn gguf_block(self) -> Option<usize> {
        match self {
            Self::Q4K | Self::Q5K | Self::Q6K => Some(QK_K),
            f if f.gguf_type().is_some() => Some(GROUP),
            _ => None,
        }
    }

    /// Scale-block words of one row of `k` values in a GGUF quantised format (0 in the others).
    pub(crate) fn gguf_scale_row_words(self, k: usize) -> usize {
        // 32-value groups of the row padded to whole blocks.
        let g = self
            .gguf_block()
            .map_or(0, |block| k.next_multiple_of(block) / GROUP);
        match self {
            Self::Q8_0 | Self::Q4_0 => g.div_ceil(2),
            Self::Q4_1 => g,
            Self::Q5_0 => g + g.div_ceil(2),
            Self::Q5_1 => 2 * g,
            Self::Q4K => g / 2,
            Self::Q5K => g / 8 * 12,
            Self::Q6K => g / 8 * 21,
            _ => 0,
        }
    }

    /// [`WeightFormat::pack_stacked_into`] for a GGUF format: each f32 row, padded with zeros
    /// to whole blocks, quantised to GGUF blocks ([`gguf_quantize`](super::gguf_quantize)) and
    /// repacked.
    pub(crate) fn pack_gguf_floats_into(self, out: &mut Vec<u32>, parts: &[&[f32]], k: usize) {
        let (Some(ty), Some(block)) = (self.gguf_type(), self.gguf_block()) else {
            return;
        };
        let padded_k = k.next_multiple_of(block);
        let mut scales = Vec::new();
        let mut padded = vec![0.0; padded_k];
        for row in parts.iter().flat_map(|p| p.chunks_exact(k.max(1))) {
            padded[..k].copy_from_slice(row);
            let bytes = quantize_row(ty, &padded);
            self.repack_rows(out, &mut scales, &bytes, padded_k);
        }
        scales.resize(scales.len().next_multiple_of(4), 0);
        out.extend(scales);
    }

    /// Appends the rows of `rows` (whole GGUF blocks of this format's type, `k` values a row,
    /// scales already checked finite): value words to `out`, side data to `scales`.
    pub(crate) fn repack_rows(
        self,
        out: &mut Vec<u32>,
        scales: &mut Vec<u32>,
        rows: &[u8],
        k: usize,
    ) {
        let Some(ty) = self.gguf_type() else { return };
        let row_bytes = k / ty.block_values() * ty.block_bytes();
        for row in rows.chunks_exact(row_bytes.max(1)) {
            let start = scales.len();
            let groups = k / GROUP;
            let mut pairs = Vec::with_capacity(groups);
            for block in row.chunks_exact(ty.block_bytes()) {
                self.repack_block(block, out, scales, &mut pairs);
            }
            // Q8_0, Q4_0 and Q5_0 end in their f16 d values, two a word.
            scales.extend(
                pairs
                    .chunks(2)
                    .map(|p| p[0] as u32 | (*p.get(1).unwrap_or(&0) as u32) << 16),
            );
            debug_assert_eq!(scales.len() - start, self.gguf_scale_row_words(k));
        }
    }

    /// One GGUF block: its value words to `out`, its side data to `scales` (or to `pairs`, the
    /// row's f16 `d` values that go two a word after it).
    fn repack_block(
        self,
        b: &[u8],
        out: &mut Vec<u32>,
        scales: &mut Vec<u32>,
        pairs: &mut Vec<u16>,
    ) {
        let half = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        let word = |at: usize| u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        match self {
            Self::Q8_0 => {
                pairs.push(half(0));
                out.extend(
                    b[2..34]
                        .chunks_exact(4)
                        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
                );
            }
            Self::Q4_0 | Self::Q4_1 | Self::Q5_0 | Self::Q5_1 => {
                let qs_at = match self {
                    Self::Q4_0 => 2,
                    Self::Q4_1 => 4,
                    Self::Q5_0 => 6,
                    _ => 8,
                };
                let qs = &b[qs_at..qs_at + 16];
                out.extend(nibble_words(|i| {
                    if i < 16 { qs[i] & 15 } else { qs[i - 16] >> 4 }
                }));
                match self {
                    Self::Q4_0 => pairs.push(half(0)),
                    Self::Q4_1 => scales.push(word(0)),
                    Self::Q5_0 => {
                        // The g qh words come first, the d pairs after all of them.
                        scales.push(word(2));
                        pairs.push(half(0));
                    }
                    _ => scales.extend([word(4), word(0)]),
                }
            }
            Self::Q4K | Self::Q5K => {
                let qs_at = if self == Self::Q5K { 48 } else { 16 };
                let qs = &b[qs_at..qs_at + 128];
                for j in 0..8 {
                    out.extend(nibble_words(|l| {
                        (qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 15
                    }));
                }
                scales.extend([word(0), word(4), word(8), word(12)]);
                if self == Self::Q5K {
                    let qh = &b[16..48];
                    scales.extend(
                        (0..8).map(|j| {
                            (0..32).fold(0u32, |w, l| w | (((qh[l] >> j) & 1) as u32) << l)
                        }),
                    );
                }
            }
            Self::Q6K => {
                let (ql, qh) = (&b[..128], &b[128..192]);
                let low = |i: usize| (ql[(i / 128) * 64 + i % 64] >> (4 * (i % 128 / 64))) & 15;
                let high = |i: usize| (qh[(i / 128) * 32 + i % 32] >> (2 * (i % 128 / 32))) & 3;
                for j in 0..8 {
                    out.extend(nibble_words(|l| low(32 * j + l)));
                }
                scales.extend(
                    (0..16).map(|m| {
                        (0..16).fold(0u32, |w, n| w | (high(16 * m + n) as u32) << (2 * n))
                    }),
                );
                scales.extend((0..4).map(|m| word(192 + 4 * m)));
                scales.push(half(208) as u32);
            }
            _ => {}
        }
    }
}

/// The four u32 of a group of 32 nibbles, `code(i)` of element `8m + n` in bits `4n` of u32 `m`.
fn nibble_words(code: impl Fn(usize) -> u8) -> [u32; 4] {
    std::array::from_fn(|m| (0..8).fold(0, |w, n| w | (code(8 * m + n) as u32) << (4 * n)))
}

/// The error for the first non-finite f16 scale in `bytes` (rows of `k` values of `ty`),
/// naming its row and block.
fn check_scales(ty: GgmlType, bytes: &[u8], k: usize) -> Result<()> {
    let per_row = k / ty.block_values();
    for (i, block) in bytes.chunks_exact(ty.block_bytes()).enumerate() {
        if ty == GgmlType::MXFP4 && block[0] == 255 {
            return Err(Error::input(format!(
                "MXFP4: row {} block {} has exponent 255 (2^127), which the GPU format does not hold",
                i / per_row,
                i % per_row
            )));
        }
        for &at in ty.f16_scale_offsets() {
            let v = f16::from_bits(u16::from_le_bytes([block[at], block[at + 1]]));
            if !v.is_finite() {
                return Err(Error::input(format!(
                    "{ty}: row {} block {} (values {}..) has a non-finite f16 scale {v}",
                    i / per_row,
                    i % per_row,
                    i % per_row * ty.block_values()
                )));
            }
        }
    }
    Ok(())
}

/// Repacks a row-major `[rows, k]` GGUF matrix of type `ty` for the GPU, losslessly: the
/// format that holds it ([`WeightFormat::of_gguf`]) and its words, which
/// [`WeightFormat::unpack`] turns into exactly [`crate::gguf::dequantize`]'s values.
///
/// `k` must be a whole number of `ty`'s blocks and `bytes` exactly the matrix; a non-finite
/// f16 scale is an error naming its row and block.
pub fn pack_gguf(
    ty: GgmlType,
    bytes: &[u8],
    rows: usize,
    k: usize,
) -> Result<(WeightFormat, Vec<u32>)> {
    pack_gguf_stacked(ty, &[(bytes, rows)], k)
}

/// As [`pack_gguf`] for one matrix made of `parts` (`(bytes, rows)` each, e.g. the gate rows
/// then the up rows), whose scale block follows all of their rows.
pub fn pack_gguf_stacked(
    ty: GgmlType,
    parts: &[(&[u8], usize)],
    k: usize,
) -> Result<(WeightFormat, Vec<u32>)> {
    let per_block = ty.block_values();
    if !k.is_multiple_of(per_block) {
        return Err(Error::input(format!(
            "{ty}: a row of {k} values is not a whole number of {per_block}-value blocks"
        )));
    }
    let format = WeightFormat::of_gguf(ty);
    let rows: usize = parts.iter().map(|p| p.1).sum();
    let mut out = Vec::with_capacity(format.matrix_bytes(rows, k) as usize / 4);
    let mut scales = Vec::new();
    for &(bytes, part_rows) in parts {
        let want = part_rows * k / per_block * ty.block_bytes();
        if bytes.len() != want {
            return Err(Error::input(format!(
                "{ty}: [{part_rows}, {k}] needs {want} bytes, got {}",
                bytes.len()
            )));
        }
        check_scales(ty, bytes, k)?;
        match format {
            WeightFormat::F32 | WeightFormat::F16 | WeightFormat::Bf16 => {
                // Our float rows are GGUF's little-endian values, padded: NaN payloads survive.
                for row in bytes.chunks_exact((k * ty.block_bytes()).max(1)) {
                    let start = out.len();
                    out.extend(
                        row.chunks(4)
                            .map(|c| c.iter().rev().fold(0u32, |w, &b| w << 8 | b as u32)),
                    );
                    out.resize(start + format.row_words(k), 0);
                }
            }
            WeightFormat::Mxfp4 => repack_mxfp4_rows(&mut out, &mut scales, bytes, k),
            _ => format.repack_rows(&mut out, &mut scales, bytes, k),
        }
    }
    scales.resize(scales.len().next_multiple_of(4), 0);
    out.extend(scales);
    Ok((format, out))
}

/// GGUF MXFP4 rows as [`WeightFormat::Mxfp4`]: the same codes and exponents (GGUF doubles the
/// e2m1 values and halves the scale, `2^(e - 128)`, where we use `2^(e - 127)`), except that
/// code 8, which GGUF decodes as +0 and e2m1 as -0, becomes code 0.
fn repack_mxfp4_rows(out: &mut Vec<u32>, scales: &mut Vec<u32>, rows: &[u8], k: usize) {
    let row_bytes = k / GROUP * 17;
    for row in rows.chunks_exact(row_bytes.max(1)) {
        let start = scales.len();
        scales.resize(start + (k / GROUP).div_ceil(4), 0);
        for (g, b) in row.chunks_exact(17).enumerate() {
            let qs = &b[1..];
            let code = |i: usize| if i < 16 { qs[i] & 15 } else { qs[i - 16] >> 4 };
            out.extend(nibble_words(|i| if code(i) == 8 { 0 } else { code(i) }));
            scales[start + g / 4] |= (b[0] as u32) << (8 * (g % 4));
        }
    }
}

#[cfg(test)]
#[path = "gguf_formats_tests.rs"]
mod tests;
