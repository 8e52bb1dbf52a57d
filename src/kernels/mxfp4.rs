//! The two element codecs that are not plain IEEE types: OCP MX FP4 (e2m1 values with an e8m0
//! power-of-two scale per group of 32) and bfloat16 rounding. The packed layouts are in
//! [`weight_packing`](crate::kernels::weight_packing).
//!
//! An e2m1 nibble is a sign bit (bit 3), two exponent bits and one mantissa bit: magnitudes
//! 0, 0.5, 1, 1.5, 2, 3, 4, 6. An e8m0 byte `e` is the scale 2^(e − 127); 255 is NaN in the OCP
//! spec and is rejected by the loaders, never decoded. Scale 0 is 2^-127, an f32 subnormal
//! (GPUs that flush subnormals read it as 0; neither the quantiser nor real checkpoints use
//! scales that small for non-zero weights).
//!
//! Quantising f32 → MXFP4 follows the OCP MX rule: per group, the shared exponent is
//! floor(log2(max|w|)) − 2 (2 = the largest e2m1 exponent), so max|w| / scale lies in [4, 8);
//! each w / scale is rounded to the nearest e2m1 magnitude (ties to the even mantissa) and
//! clamped to ±6. An all-zero group gets scale 2^0; the exponent is clamped to the e8m0 range
//! [−127, 127]. Dequantised values are exact f32 products e2m1 · 2^(e − 127).

use crate::spec::weight_format::MXFP4_GROUP;

/// e2m1 magnitudes of nibbles 0..8.
const E2M1: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// The e8m0 byte that means NaN.
pub const E8M0_NAN: u8 = 255;

/// The value of an e2m1 nibble (bits above the low four are ignored).
pub fn e2m1_value(nibble: u8) -> f32 {
    let m = E2M1[(nibble & 7) as usize];
    if nibble & 8 != 0 { -m } else { m }
}

/// The scale 2^(e − 127) of an e8m0 byte, built from its bits (exact; 0 is the subnormal
/// 2^-127, 255 reads as infinity and must be rejected before).
pub fn e8m0_value(e: u8) -> f32 {
    if e == 0 {
        f32::from_bits(0x0040_0000)
    } else {
        f32::from_bits((e as u32) << 23)
    }
}

/// One group's e8m0 scale and e2m1 nibbles (the OCP rule above; at most [`MXFP4_GROUP`]
/// values, a shorter group is padded with zero nibbles by the caller).
pub fn quantize_group(group: &[f32]) -> (u8, Vec<u8>) {
    debug_assert!(group.len() <= MXFP4_GROUP);
    let max = group.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let e = if max == 0.0 {
        127
    } else {
        // floor(log2(max)) from the bits; subnormal maxima clamp to the smallest scale.
        let exp = ((max.to_bits() >> 23) & 0xff) as i32 - 127;
        (exp - 2 + 127).clamp(0, 254) as u8
    };
    let scale = e8m0_value(e);
    let nibbles = group.iter().map(|&v| nearest_e2m1(v / scale)).collect();
    (e, nibbles)
}

/// The e2m1 nibble nearest `v` (ties to the even mantissa, clamped to ±6; NaN → 0).
fn nearest_e2m1(v: f32) -> u8 {
    let a = v.abs();
    let mut best = 0u8;
    for (i, &m) in E2M1.iter().enumerate().skip(1) {
        let (d, db) = ((a - m).abs(), (a - E2M1[best as usize]).abs());
        if d < db || d == db && i % 2 == 0 {
            best = i as u8;
        }
    }
    if v.is_sign_negative() && best != 0 {
        best | 8
    } else {
        best
    }
}

/// `v` rounded to the nearest bfloat16 (ties to even), as its bits; NaN stays NaN.
pub fn bf16_round(v: f32) -> u16 {
    half::bf16::from_f32(v).to_bits()
}

/// Appends a `[rows, k]` MXFP4 matrix from checkpoint bytes (`k` a multiple of
/// [`MXFP4_GROUP`]): each of `rows` is `(blocks, scales)` with `k / 2` block bytes (element
/// 2b in the low nibble of byte b) and `k / 32` e8m0 bytes. The packed rows are those bytes as
/// they are; the scale block follows, padded to whole `vec4<u32>` words.
pub fn pack_mxfp4_rows<'a>(
    out: &mut Vec<u32>,
    rows: impl Iterator<Item = (&'a [u8], &'a [u8])> + Clone,
    k: usize,
) {
    debug_assert_eq!(k % MXFP4_GROUP, 0);
    let words = |bytes: &'a [u8]| {
        bytes.chunks(4).map(|c| {
            let mut w = [0u8; 4];
            w[..c.len()].copy_from_slice(c);
            u32::from_le_bytes(w)
        })
    };
    for (blocks, _) in rows.clone() {
        out.extend(words(blocks));
    }
    let start = out.len();
    for (_, scales) in rows {
        out.extend(words(scales));
    }
    let scale_words = out.len() - start;
    out.resize(start + scale_words.next_multiple_of(4), 0);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::weight_format::WeightFormat;
    use crate::synthetic::Rng;

    #[test]
    fn e2m1_rounds_to_nearest_with_ties_to_even_and_clamps() {
        let cases = [
            (0.2, 0.0),
            (0.25, 0.0),
            (0.3, 0.5),
            (0.75, 1.0),
            (1.25, 1.0),
            (1.75, 2.0),
            (2.5, 2.0),
            (3.5, 4.0),
            (5.0, 4.0),
            (5.1, 6.0),
            (7.9, 6.0),
            (-1.6, -1.5),
        ];
        for (v, want) in cases {
            assert_eq!(e2m1_value(nearest_e2m1(v)), want, "{v}");
        }
        assert_eq!(nearest_e2m1(f32::NAN), 0);
        assert_eq!(nearest_e2m1(-0.1), 0);
    }

    #[test]
    fn e8m0_scales_are_exact_powers_of_two() {
        assert_eq!(e8m0_value(127), 1.0);
        assert_eq!(e8m0_value(128), 2.0);
        assert_eq!(e8m0_value(1), f32::MIN_POSITIVE);
        assert_eq!(e8m0_value(0), f32::MIN_POSITIVE / 2.0);
        assert_eq!(e8m0_value(254), 2f32.powi(127));
    }

    #[test]
    fn groups_take_the_ocp_shared_exponent() {
        // max 5 → floor(log2 5) − 2 = 0: scale 1, values on the e2m1 grid stay exact.
        let g = [5.0f32, -0.5, 1.5, 6.0, 0.0];
        let (e, q) = quantize_group(&g);
        assert_eq!(e, 127);
        let back: Vec<f32> = q.iter().map(|&n| e2m1_value(n)).collect();
        assert_eq!(back, [4.0, -0.5, 1.5, 6.0, 0.0]);
        // max 7.5 · 2⁻¹⁰ → scale 2⁻¹⁰, 7.5 clamps to 6.
        let (e, q) = quantize_group(&[7.5 / 1024.0, 1.0 / 1024.0]);
        assert_eq!(e, 117);
        assert_eq!(e2m1_value(q[0]), 6.0);
        assert_eq!(e2m1_value(q[1]), 1.0);
        assert_eq!(quantize_group(&[0.0; 4]).0, 127);
        assert_eq!(quantize_group(&[1e-44]).0, 0);
    }

    #[test]
    fn checkpoint_bytes_pack_to_what_the_quantiser_packs() {
        let (rows, k) = (3, 64);
        let w = Rng::new(9).normals(rows * k, 0.7);
        let mut packed = Vec::new();
        WeightFormat::Mxfp4.pack_into(&mut packed, &w, rows, k);
        let (mut blocks, mut scales) = (Vec::new(), Vec::new());
        for group in w.chunks(MXFP4_GROUP) {
            let (e, q) = quantize_group(group);
            scales.push(e);
            blocks.extend(q.chunks(2).map(|p| p[0] | (p[1] << 4)));
        }
        let mut direct = Vec::new();
        let per_row = (0..rows).map(|r| {
            (
                &blocks[r * k / 2..(r + 1) * k / 2],
                &scales[r * k / 32..(r + 1) * k / 32],
            )
        });
        pack_mxfp4_rows(&mut direct, per_row, k);
        assert_eq!(direct, packed);
    }

    #[test]
    fn unpack_gives_the_quantised_values_in_partial_groups_too() {
        let (rows, k) = (3, 70);
        let w = Rng::new(4).normals(rows * k, 2.0);
        let got = WeightFormat::Mxfp4.dequantize(&w, rows, k);
        for (r, row) in w.chunks(k).enumerate() {
            for (g, group) in row.chunks(MXFP4_GROUP).enumerate() {
                let (e, q) = quantize_group(group);
                for (n, &nib) in q.iter().enumerate() {
                    let want = e2m1_value(nib) * e8m0_value(e);
                    assert_eq!(got[r * k + g * MXFP4_GROUP + n], want, "({r}, {g}, {n})");
                }
            }
        }
        let got = WeightFormat::Bf16.dequantize(&w, rows, k);
        for (a, b) in got.iter().zip(&w) {
            assert_eq!(*a, half::bf16::from_f32(*b).to_f32());
        }
    }

    #[test]
    fn bf16_rounding_is_to_nearest_even() {
        assert_eq!(bf16_round(1.0), 0x3f80);
        // 1 + 2⁻⁸ is halfway between 1 and 1 + 2⁻⁷: ties to the even 1.
        assert_eq!(bf16_round(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(bf16_round(1.0 + 3.0 / 256.0), 0x3f82);
    }
}
