//! How weight matrices are stored on the GPU, and the quantisation that produces them.
//!
//! A `[rows, k]` matrix is `rows` rows of u32 words, each row padded with zeros to whole
//! `vec4<u32>` words, then (quantised formats only) a block of scales padded to a whole
//! `vec4<u32>`. A slot of an expert arena is one such matrix, so the scales travel with their
//! rows in every upload and every byte count.
//!
//! | format | per u32 word | row padded to | scales |
//! |---|---|---|---|
//! | `F32` | 1 value | 8 values | none |
//! | `F16` | 2 halves (`unpack2x16float`) | 8 values | none |
//! | `Bf16` | 2 bfloat16, element `2m` in the low half | 8 values | none |
//! | `Int8` | 4 × i8, element `4m + b` in byte `b` | 16 values | one f32 per row: `[rows]` |
//! | `Int4` | 8 × i4, element `8m + n` in bits `4n..4n + 4` | 32 values | one bf16 per group of 32 values: `[rows, ⌈groups / 2⌉]` words, even groups in the low half |
//! | `Mxfp4` | 8 × e2m1, element `8m + n` in bits `4n..4n + 4` | 32 values | one e8m0 byte per group of 32 values: `[rows, ⌈groups / 4⌉]` words, group `4j + b` in byte `b` |
//! | `Q8_0` … `Q6K` | GGUF's codes, one 32-value group per `vec4<u32>` (Q8_0: two) | 32 values (K-quants 256) | GGUF's scales and high bits: [`gguf_formats`](crate::kernels::gguf_formats) |
//!
//! Quantisation is symmetric and round-to-nearest from the f32 weights: int8 uses
//! s = max|w| / 127 per row and q ∈ [-127, 127]; int4 uses s = max|w| / 7 per group of 32
//! consecutive values of a row and q ∈ [-7, 7], so a group is exactly one `vec4<u32>` word and
//! the kernels read one scale per word. A row whose length is not a multiple of 32 ends in a
//! partial group: its scale comes from its own values and the padding holds q = 0. The int4
//! scale is stored as bf16 rounded up (never down, so |w| / s ≤ 7 still holds) and the values
//! are quantised against the stored scale: bf16 keeps f32's range, so no group overflows or
//! underflows as it could in f16, and q · s is exact in f32.
//!
//! Bf16 rounds each f32 to the nearest bfloat16 (ties to even). Mxfp4 is the OCP MX format of
//! gpt-oss checkpoints, whose `*_blocks` / `*_scales` bytes are these rows and scales as they
//! are; its codec and f32 quantiser are in [`mxfp4`](crate::kernels::mxfp4).

use half::f16;

use crate::kernels::mxfp4::{bf16_round, quantize_group};
use crate::spec::weight_format::{ExpertFormat, INT4_GROUP, MXFP4_GROUP, WeightFormat};
use crate::spec::weights::{ExpertWeights, PackedExpert};

impl WeightFormat {
    /// `WFMT` in `shaders/matmul_common.wgsl`.
    pub(crate) fn shader_code(self) -> f64 {
        match self {
            Self::F32 => 0.0,
            Self::F16 => 1.0,
            Self::Int8 => 2.0,
            Self::Int4 => 3.0,
            Self::Bf16 => 4.0,
            Self::Mxfp4 => 5.0,
            Self::Q8_0 => 6.0,
            Self::Q4_0 => 7.0,
            Self::Q4_1 => 8.0,
            Self::Q5_0 => 9.0,
            Self::Q5_1 => 10.0,
            Self::Q4K => 11.0,
            Self::Q5K => 12.0,
            Self::Q6K => 13.0,
        }
    }

    /// Values per u32 word.
    pub(crate) fn per_word(self) -> usize {
        match self {
            Self::F32 => 1,
            Self::F16 | Self::Bf16 => 2,
            Self::Int8 | Self::Q8_0 => 4,
            _ => 8,
        }
    }

    /// Values a row is padded to: whole `vec4<u32>` words (and 8 values at least), whole
    /// blocks in the GGUF formats.
    fn row_pad(self) -> usize {
        self.gguf_block().unwrap_or((4 * self.per_word()).max(8))
    }

    /// u32 words of one weight row of `k` values, padding included.
    pub fn row_words(self, k: usize) -> usize {
        k.div_ceil(self.row_pad()) * self.row_pad() / self.per_word()
    }

    /// u32 words of the scales of a `[rows, k]` matrix, before padding.
    pub fn scale_words(self, rows: usize, k: usize) -> usize {
        match self {
            Self::F32 | Self::F16 | Self::Bf16 => 0,
            Self::Int8 => rows,
            Self::Int4 | Self::Mxfp4 => rows * self.group_scale_row_words(k),
            _ => rows * self.gguf_scale_row_words(k),
        }
    }

    /// Scale words of one row of a group-scaled format: int4 one bf16 per group of
    /// [`INT4_GROUP`], two per word; mxfp4 one e8m0 byte per group of [`MXFP4_GROUP`], four
    /// per word.
    fn group_scale_row_words(self, k: usize) -> usize {
        match self {
            Self::Mxfp4 => k.div_ceil(MXFP4_GROUP).div_ceil(4),
            _ => k.div_ceil(INT4_GROUP).div_ceil(2),
        }
    }

    /// Bytes of a `[rows, k]` matrix in this format, scales included.
    pub fn matrix_bytes(self, rows: usize, k: usize) -> u64 {
        let scales = self.scale_words(rows, k).next_multiple_of(4);
        ((rows * self.row_words(k) + scales) * 4) as u64
    }

    /// The rows `start..end` of each of `ranges`, in order, of a packed `[rows, k]` matrix, as
    /// one packed matrix: their words, then their scales (the row-split part of a matrix,
    /// `kernels::row_split`). The whole matrix in one range is returned as it is.
    pub fn select_rows(
        self,
        packed: &[u32],
        rows: usize,
        k: usize,
        ranges: &[(usize, usize)],
    ) -> Vec<u32> {
        if ranges == [(0, rows)] {
            return packed.to_vec();
        }
        let (words, scales) = (self.row_words(k), self.scale_words(1, k));
        let selected: usize = ranges.iter().map(|(start, end)| end - start).sum();
        let mut out = Vec::with_capacity(self.matrix_bytes(selected, k) as usize / 4);
        for &(start, end) in ranges {
            out.extend_from_slice(&packed[start * words..end * words]);
        }
        let block = &packed[rows * words..];
        for &(start, end) in ranges {
            out.extend_from_slice(&block[start * scales..end * scales]);
        }
        out.resize(self.matrix_bytes(selected, k) as usize / 4, 0);
        out
    }

    /// Appends a `[rows, k]` row-major f32 matrix in this format.
    pub fn pack_into(self, out: &mut Vec<u32>, data: &[f32], rows: usize, k: usize) {
        debug_assert_eq!(data.len(), rows * k);
        self.pack_stacked_into(out, &[data], k);
    }

    /// Appends one matrix whose rows are those of `parts` in order (gate rows then up rows):
    /// the scale block follows all of them.
    pub fn pack_stacked_into(self, out: &mut Vec<u32>, parts: &[&[f32]], k: usize) {
        if self.gguf_type().is_some() {
            return self.pack_gguf_floats_into(out, parts, k);
        }
        let words = self.row_words(k);
        let mut scales = Vec::new();
        for row in parts.iter().flat_map(|p| p.chunks_exact(k.max(1))) {
            let start = out.len();
            match self {
                Self::F32 => out.extend(row.iter().map(|v| v.to_bits())),
                Self::F16 => out.extend(row.chunks(2).map(|pair| {
                    let lo = f16::from_f32(pair[0]).to_bits() as u32;
                    let hi = pair
                        .get(1)
                        .map_or(0, |v| f16::from_f32(*v).to_bits() as u32);
                    lo | (hi << 16)
                })),
                Self::Bf16 => out.extend(row.chunks(2).map(|pair| {
                    let hi = pair.get(1).map_or(0, |v| bf16_round(*v) as u32);
                    bf16_round(pair[0]) as u32 | (hi << 16)
                })),
                Self::Int8 => {
                    let (scale, q) = quantize_int8(row);
                    out.extend(q.chunks(4).map(|c| pack_lanes(c, 8)));
                    scales.push(scale.to_bits());
                }
                Self::Int4 => {
                    let first = scales.len();
                    for (g, group) in row.chunks(INT4_GROUP).enumerate() {
                        let (scale, q) = quantize_int4(group);
                        out.extend(q.chunks(8).map(|c| pack_lanes(c, 4)));
                        out.resize(start + (g + 1) * INT4_GROUP / 8, 0);
                        if g % 2 == 0 {
                            scales.push(scale as u32);
                        } else {
                            scales[first + g / 2] |= (scale as u32) << 16;
                        }
                    }
                    scales.resize(first + self.group_scale_row_words(k), 0);
                }
                Self::Mxfp4 => {
                    let first = scales.len();
                    scales.resize(first + self.group_scale_row_words(k), 0);
                    for (g, group) in row.chunks(MXFP4_GROUP).enumerate() {
                        let (e, q) = quantize_group(group);
                        let lanes: Vec<i8> = q.iter().map(|&n| n as i8).collect();
                        out.extend(lanes.chunks(8).map(|c| pack_lanes(c, 4)));
                        out.resize(start + (g + 1) * MXFP4_GROUP / 8, 0);
                        scales[first + g / 4] |= (e as u32) << (8 * (g % 4));
                    }
                }
                _ => {}
            }
            out.resize(start + words, 0);
        }
        scales.resize(scales.len().next_multiple_of(4), 0);
        out.extend(scales);
    }

    /// The `[rows, k]` values a packed matrix holds, as f32: what the GPU computes with
    /// (int8 rows scale the sum rather than each value; the products are the same numbers).
    /// Each row is [`decode_row`](Self::decode_row)'s.
    pub fn unpack(self, packed: &[u32], rows: usize, k: usize) -> Vec<f32> {
        let (words, meta) = (self.row_words(k), self.scale_words(1, k));
        let scales = &packed[rows * words..];
        let mut out = vec![0.0; rows * k];
        for (r, values) in out.chunks_exact_mut(k.max(1)).enumerate() {
            let row = &packed[r * words..(r + 1) * words];
            self.decode_row(row, &scales[r * meta..(r + 1) * meta], k, values);
        }
        out
    }

    /// The values of `data` ([rows, k] f32) after a trip through this format.
    pub fn dequantize(self, data: &[f32], rows: usize, k: usize) -> Vec<f32> {
        let mut packed = Vec::new();
        self.pack_into(&mut packed, data, rows, k);
        self.unpack(&packed, rows, k)
    }
}

/// Symmetric int8 quantisation of one row: s = max|w| / 127, q = round(w / s).
fn quantize_int8(row: &[f32]) -> (f32, Vec<i8>) {
    let scale = max_abs(row) / 127.0;
    let q = row.iter().map(|&v| quantize(v, scale, 127)).collect();
    (scale, q)
}

/// Symmetric int4 quantisation of one group: the bf16 scale (rounded up from max|w| / 7) and
/// q = round(w / s) against it.
fn quantize_int4(group: &[f32]) -> (u16, Vec<i8>) {
    let bits = bf16_round_up(max_abs(group) / 7.0);
    let scale = bf16_to_f32(bits);
    (bits, group.iter().map(|&v| quantize(v, scale, 7)).collect())
}

fn max_abs(values: &[f32]) -> f32 {
    values.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// round(v / scale) within ±limit; 0 for an all-zero scale (and for NaN, as `as` casts it).
fn quantize(v: f32, scale: f32, limit: i32) -> i8 {
    if scale == 0.0 {
        return 0;
    }
    ((v / scale).round() as i32).clamp(-limit, limit) as i8
}

/// Two's-complement lanes of `bits` bits each, lane 0 lowest.
fn pack_lanes(lanes: &[i8], bits: u32) -> u32 {
    let mask = (1u32 << bits) - 1;
    lanes.iter().enumerate().fold(0, |w, (i, &q)| {
        w | ((q as i32 as u32 & mask) << (bits * i as u32))
    })
}

/// The smallest bf16 ≥ `v` (for v ≥ 0), as its bits.
fn bf16_round_up(v: f32) -> u16 {
    let bits = v.to_bits();
    let high = (bits >> 16) as u16;
    if v.is_finite() && bits & 0xffff != 0 {
        high + 1
    } else {
        high
    }
}

fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

impl ExpertWeights {
    /// Packs gate rows then up rows as one `[2·inter, hidden]` matrix in `format` (one scale
    /// block after both, for the quantised formats).
    pub fn pack_gate_up(&self, format: WeightFormat, hidden: usize, inter: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(format.matrix_bytes(2 * inter, hidden) as usize / 4);
        format.pack_stacked_into(&mut out, &[&self.gate, &self.up], hidden);
        out
    }

    /// Packs the `[hidden, inter]` down matrix in `format`.
    pub fn pack_down(&self, format: WeightFormat, hidden: usize, inter: usize) -> Vec<u32> {
        let mut out = Vec::with_capacity(format.matrix_bytes(hidden, inter) as usize / 4);
        format.pack_into(&mut out, &self.down, hidden, inter);
        out
    }

    /// Gate/up and down packed in their halves of `format`, with the biases.
    pub fn pack(&self, format: ExpertFormat, hidden: usize, inter: usize) -> PackedExpert {
        PackedExpert {
            format,
            gate_up: self.pack_gate_up(format.gate_up, hidden, inter),
            down: self.pack_down(format.down, hidden, inter),
            bias: self.biases(hidden, inter),
        }
    }
}

#[cfg(test)]
#[path = "weight_packing_tests.rs"]
mod tests;
