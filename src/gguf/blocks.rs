//! Block decoders for the float types, the 32-value legacy quants (Q4_0 … Q8_0) and MXFP4.
//!
//! Each takes exactly one block's bytes and fills exactly one block of values (the caller,
//! [`super::dequantize`], has checked both lengths). The arithmetic is gguf-py's: f16 scales
//! widened to f32, integer codes converted to f32, then one f32 multiply (and one add for the
//! `_1` types), never fused.

/// Values per block of the legacy quants and MXFP4 (ggml's `QK4_0` … `QK_MXFP4`).
pub(super) const QK: usize = 32;

/// e2m1 values doubled, indexed by the 4-bit code (ggml's `kvalues_mxfp4`); the halving is in
/// the scale, [`e8m0_half`].
const KVALUES_MXFP4: [i8; 16] = [0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12];

/// The little-endian f16 at `b[at..at + 2]`, widened to f32 as numpy widens it: a NaN keeps
/// its payload and stays signalling if it was (the F16C instruction behind `half` would quiet
/// it), so F16 tensors match gguf-py bit for bit.
pub(super) fn f16_at(b: &[u8], at: usize) -> f32 {
    let bits = u16::from_le_bytes([b[at], b[at + 1]]);
    let (exponent, mantissa) = (bits & 0x7C00, bits & 0x03FF);
    if exponent == 0x7C00 && mantissa != 0 {
        let sign = u32::from(bits & 0x8000) << 16;
        f32::from_bits(sign | 0x7F80_0000 | (u32::from(mantissa) << 13))
    } else {
        half::f16::from_bits(bits).to_f32()
    }
}

/// Code `i` of a 32-value block's 16 nibble bytes: the low nibbles hold values 0..16, the
/// high nibbles values 16..32.
fn nibble(qs: &[u8], i: usize) -> u8 {
    if i < QK / 2 {
        qs[i] & 0x0F
    } else {
        qs[i - QK / 2] >> 4
    }
}

/// Bit `i` of a block's little-endian u32 `qh`, moved to bit 4: value `i`'s fifth bit.
fn high_bit(qh: &[u8], i: usize) -> u8 {
    ((qh[i / 8] >> (i % 8)) & 1) << 4
}

/// An e8m0 exponent as ggml's `ggml_e8m0_to_fp32_half`: `2^(e - 128)`, built from its bits
/// (subnormal for `e < 2`), so 255 is 2^127, not NaN.
fn e8m0_half(e: u8) -> f32 {
    let bits = if e < 2 {
        0x0020_0000u32 << e
    } else {
        u32::from(e - 1) << 23
    };
    f32::from_bits(bits)
}

/// F32: the value's four little-endian bytes.
pub(super) fn f32(b: &[u8], out: &mut [f32]) {
    out[0] = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
}

/// F16: widened to f32 (exact).
pub(super) fn f16(b: &[u8], out: &mut [f32]) {
    out[0] = f16_at(b, 0);
}

/// BF16: the 16 bits become an f32's top half.
pub(super) fn bf16(b: &[u8], out: &mut [f32]) {
    out[0] = f32::from_bits(u32::from(u16::from_le_bytes([b[0], b[1]])) << 16);
}

/// Q8_0: `q * d`.
pub(super) fn q8_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    for (x, &q) in out.iter_mut().zip(&b[2..2 + QK]) {
        *x = f32::from(q as i8) * d;
    }
}

/// Q4_0: `d * (q - 8)`.
pub(super) fn q4_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let qs = &b[2..];
    for (i, x) in out.iter_mut().enumerate() {
        *x = d * f32::from(nibble(qs, i) as i8 - 8);
    }
}

/// Q4_1: `d * q + m`.
pub(super) fn q4_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let qs = &b[4..];
    for (i, x) in out.iter_mut().enumerate() {
        *x = d * f32::from(nibble(qs, i)) + m;
    }
}

/// Q5_0: `d * (q - 16)`, with `q`'s fifth bit from `qh`.
pub(super) fn q5_0(b: &[u8], out: &mut [f32]) {
    let d = f16_at(b, 0);
    let (qh, qs) = (&b[2..6], &b[6..]);
    for (i, x) in out.iter_mut().enumerate() {
        let q = nibble(qs, i) | high_bit(qh, i);
        *x = d * f32::from(q as i8 - 16);
    }
}

/// Q5_1: `d * q + m`, with `q`'s fifth bit from `qh`.
pub(super) fn q5_1(b: &[u8], out: &mut [f32]) {
    let (d, m) = (f16_at(b, 0), f16_at(b, 2));
    let (qh, qs) = (&b[4..8], &b[8..]);
    for (i, x) in out.iter_mut().enumerate() {
        let q = nibble(qs, i) | high_bit(qh, i);
        *x = d * f32::from(q) + m;
    }
}

/// MXFP4: `e8m0_half(e) * kvalues[q]`.
pub(super) fn mxfp4(b: &[u8], out: &mut [f32]) {
    let d = e8m0_half(b[0]);
    let qs = &b[1..];
    for (i, x) in out.iter_mut().enumerate() {
        *x = d * f32::from(KVALUES_MXFP4[usize::from(nibble(qs, i))]);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{GgmlType, dequantize};

    fn f16(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_le_bytes()
    }

    /// A block of `ty` from its leading fields and its code bytes, decoded.
    fn decode(ty: GgmlType, head: &[u8], codes: &[u8]) -> Vec<f32> {
        let block = [head, codes].concat();
        dequantize(ty, &block, ty.block_values()).unwrap()
    }

    #[test]
    fn floats() {
        assert_eq!(
            dequantize(GgmlType::F32, &(-1.5f32).to_le_bytes(), 1).unwrap(),
            [-1.5]
        );
        assert_eq!(dequantize(GgmlType::F16, &f16(0.25), 1).unwrap(), [0.25]);
        // The smallest subnormal f16 is 2^-24; a signalling NaN keeps its bits (as numpy).
        assert_eq!(
            dequantize(GgmlType::F16, &[1, 0], 1).unwrap(),
            [2f32.powi(-24)]
        );
        let nan = dequantize(GgmlType::F16, &0x7D01u16.to_le_bytes(), 1).unwrap();
        assert_eq!(nan[0].to_bits(), 0x7FA0_2000);
        // bf16 0x3FC0 is f32 0x3FC00000 = 1.5.
        assert_eq!(dequantize(GgmlType::BF16, &[0xC0, 0x3F], 1).unwrap(), [1.5]);
    }

    #[test]
    fn q8_0_is_q_times_d() {
        let mut codes = [0u8; 32];
        codes[0] = 4;
        codes[31] = (-128i8) as u8;
        let x = decode(GgmlType::Q8_0, &f16(0.5), &codes);
        assert_eq!((x[0], x[1], x[31]), (2.0, 0.0, -64.0));
    }

    #[test]
    fn q4_0_low_nibbles_first_then_high() {
        // Byte 0 = 0xF0: value 0 is 0 - 8, value 16 is 15 - 8.
        let mut codes = [0x88u8; 16];
        codes[0] = 0xF0;
        let x = decode(GgmlType::Q4_0, &f16(2.0), &codes);
        assert_eq!((x[0], x[1], x[16], x[17]), (-16.0, 0.0, 14.0, 0.0));
    }

    #[test]
    fn q4_1_adds_the_min() {
        let mut codes = [0u8; 16];
        codes[1] = 0x30;
        let x = decode(GgmlType::Q4_1, &[f16(0.5), f16(-1.0)].concat(), &codes);
        assert_eq!((x[0], x[17]), (-1.0, 0.5));
    }

    #[test]
    fn q5_0_takes_the_fifth_bit_from_qh() {
        // qh bit 0 and bit 17 set; value 17 reads the high nibble of byte 1.
        let head = [f16(1.0).as_slice(), &0x0002_0001u32.to_le_bytes()].concat();
        let mut codes = [0u8; 16];
        codes[1] = 0x20;
        let x = decode(GgmlType::Q5_0, &head, &codes);
        assert_eq!((x[0], x[1], x[17]), (0.0, -16.0, 2.0));
    }

    #[test]
    fn q5_1_takes_the_fifth_bit_and_adds_the_min() {
        let head = [f16(0.5), f16(1.0)].concat();
        let head = [head.as_slice(), &0x8000_0000u32.to_le_bytes()].concat();
        let mut codes = [0u8; 16];
        codes[15] = 0x10;
        let x = decode(GgmlType::Q5_1, &head, &codes);
        assert_eq!((x[0], x[31]), (1.0, 0.5 * 17.0 + 1.0));
    }

    #[test]
    fn mxfp4_scale_is_two_to_the_e_minus_128() {
        // e = 128: scale 1, so values are the doubled e2m1 table; codes 7 (12) and 0xF (-12).
        let mut codes = [0u8; 16];
        codes[0] = 0xF7;
        let x = decode(GgmlType::MXFP4, &[128], &codes);
        assert_eq!((x[0], x[16], x[1]), (12.0, -12.0, 0.0));
        // e = 0 and 1 are subnormal 2^-128 and 2^-127; e = 255 is 2^127.
        for (e, scale) in [(0u8, -128), (1, -127), (255, 127)] {
            let x = decode(GgmlType::MXFP4, &[e], &[0x01; 16]);
            assert_eq!(x[0], 2f64.powi(scale) as f32, "e = {e}");
        }
    }
}
