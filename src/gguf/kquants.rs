//! Block decoders for the 256-value K-quants: Q4_K, Q5_K and Q6_K.
//!
//! As in gguf-py, a sub-block's scale is formed first in f32 (`d * sc`, `dmin * m`), and each
//! value is then `scale * q - min` (or `scale * q` for Q6_K), unfused.

use super::blocks::f16_at;

/// Values per K-quant block (ggml's `QK_K`).
pub(super) const QK_K: usize = 256;

/// Bytes of packed 6-bit scales and mins in Q4_K and Q5_K (ggml's `K_SCALE_SIZE`).
const K_SCALE_SIZE: usize = 12;

/// Scale and min of sub-block `j` (0..8) from the 12 packed bytes, as ggml's
/// `get_scale_min_k4`: bytes 0..4 hold scales 0..4 in their low six bits, bytes 4..8 mins 0..4;
/// scales and mins 4..8 take their low four bits from bytes 8..12 and their top two bits from
/// the spare top bits of bytes 0..4 and 4..8.
fn scale_min(s: &[u8], j: usize) -> (u8, u8) {
    if j < 4 {
        (s[j] & 0x3F, s[j + 4] & 0x3F)
    } else {
        (
            (s[j + 4] & 0x0F) | ((s[j - 4] >> 6) << 4),
            (s[j + 4] >> 4) | ((s[j] >> 6) << 4),
        )
    }
}

/// The 4-bit code of value `l` (0..32) of sub-block `j` (0..8): sub-blocks `2c` and `2c + 1`
/// share the 32 bytes of chunk `c`, low nibbles then high.
fn nibble_k(qs: &[u8], j: usize, l: usize) -> u8 {
    (qs[(j / 2) * 32 + l] >> (4 * (j % 2))) & 0x0F
}

/// Decodes Q4_K or Q5_K: `qh` is the Q5_K fifth-bit bytes, or `None` for Q4_K.
fn q4_or_5_k(b: &[u8], qh: Option<&[u8]>, qs: &[u8], out: &mut [f32]) {
    let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
    let scales = &b[4..4 + K_SCALE_SIZE];
    for (j, sub) in out.chunks_exact_mut(32).enumerate() {
        let (sc, m) = scale_min(scales, j);
        let (scale, min) = (d * f32::from(sc), dmin * f32::from(m));
        for (l, x) in sub.iter_mut().enumerate() {
            let high = qh.map_or(0, |qh| ((qh[l] >> j) & 1) << 4);
            *x = scale * f32::from(nibble_k(qs, j, l) | high) - min;
        }
    }
}

/// Q4_K: f16 `d`, f16 `dmin`, 12 scale bytes, 128 nibble bytes.
pub(super) fn q4_k(b: &[u8], out: &mut [f32]) {
    q4_or_5_k(b, None, &b[4 + K_SCALE_SIZE..], out);
}

/// Q5_K: as Q4_K with 32 `qh` bytes between the scales and the nibbles.
pub(super) fn q5_k(b: &[u8], out: &mut [f32]) {
    let qh_at = 4 + K_SCALE_SIZE;
    q4_or_5_k(b, Some(&b[qh_at..qh_at + 32]), &b[qh_at + 32..], out);
}

/// Q6_K: 128 bytes `ql`, 64 bytes `qh`, 16 `i8` scales, f16 `d`. Each half of 128 values
/// uses 64 `ql` bytes (values 0..64 low nibbles, 64..128 high) and 32 `qh` bytes (value
/// `32k + l` takes bits `2k..2k + 2` of byte `l`).
pub(super) fn q6_k(b: &[u8], out: &mut [f32]) {
    let (ql, qh, scales) = (&b[..128], &b[128..192], &b[192..208]);
    let d = f16_at(b, 208);
    for (i, x) in out.iter_mut().enumerate() {
        let (half, r) = (i / 128, i % 128);
        let low = (ql[half * 64 + r % 64] >> (4 * (r / 64))) & 0x0F;
        let high = (qh[half * 32 + r % 32] >> (2 * (r / 32))) & 0x03;
        let q = (low | (high << 4)) as i8 - 32;
        let scale = d * f32::from(scales[i / 16] as i8);
        *x = scale * f32::from(q);
    }
}

#[cfg(test)]
mod tests {
    use super::super::{GgmlType, dequantize};

    fn f16(x: f32) -> [u8; 2] {
        half::f16::from_f32(x).to_le_bytes()
    }

    /// Scale bytes giving sub-block `j` scale `j + 1` and min `2 * j`, packed by hand.
    fn packed_scales() -> [u8; 12] {
        let (sc, m): (Vec<u8>, Vec<u8>) = (0..8u8).map(|j| (j + 1, 2 * j)).unzip();
        let mut s = [0u8; 12];
        for j in 0..4 {
            s[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
            s[j + 4] = m[j] | ((m[j + 4] >> 4) << 6);
            s[j + 8] = (sc[j + 4] & 0x0F) | ((m[j + 4] & 0x0F) << 4);
        }
        s
    }

    #[test]
    fn q4_k_scales_mins_and_nibble_order() {
        // d = 1, dmin = 0.5; every low nibble 3, every high nibble 5.
        let block = [&f16(1.0)[..], &f16(0.5), &packed_scales(), &[0x53; 128]].concat();
        let x = dequantize(GgmlType::Q4_K, &block, 256).unwrap();
        for j in 0..8 {
            let q = if j % 2 == 0 { 3.0 } else { 5.0 };
            let want = (j + 1) as f32 * q - 0.5 * (2 * j) as f32;
            assert!(x[32 * j..32 * (j + 1)].iter().all(|&v| v == want), "{j}");
        }
    }

    #[test]
    fn q4_k_high_scale_bits() {
        // Sub-block 4's scale 63 needs the spare top bits of byte 0.
        let mut s = [0u8; 12];
        s[0] = 0b1100_0000;
        s[8] = 0x0F;
        let block = [&f16(1.0)[..], &f16(0.0), &s, &[0x01; 128]].concat();
        let x = dequantize(GgmlType::Q4_K, &block, 256).unwrap();
        assert_eq!((x[0], x[128]), (0.0, 63.0));
    }

    #[test]
    fn q5_k_fifth_bit_is_bit_j_of_qh() {
        // qh byte 0 = 0b100: only value 0 of sub-block 2 gets 16 added.
        let mut qh = [0u8; 32];
        qh[0] = 0b100;
        let block = [
            &f16(1.0)[..],
            &f16(0.5),
            &packed_scales(),
            &qh,
            &[0x11; 128],
        ]
        .concat();
        let x = dequantize(GgmlType::Q5_K, &block, 256).unwrap();
        assert_eq!(x[64], 3.0 * 17.0 - 2.0);
        assert_eq!(x[65], 3.0 * 1.0 - 2.0);
        assert_eq!(x[0], 1.0);
    }

    #[test]
    fn q6_k_ql_qh_and_signed_scales() {
        let mut ql = [0u8; 128];
        ql[0] = 0x21; // value 0: low 1; value 64: high 2
        ql[64] = 0x03; // value 128: low 3
        let mut qh = [0u8; 64];
        qh[0] = 0b1110_0100; // value 0: 0, value 32: 1, value 64: 2, value 96: 3
        let scales: Vec<u8> = (0..16).map(|j| (j as i8 - 8) as u8).collect();
        let block = [&ql[..], &qh, &scales, &f16(0.5)].concat();
        let x = dequantize(GgmlType::Q6_K, &block, 256).unwrap();
        let want = |i: usize, q: i32| 0.5 * ((i / 16) as f32 - 8.0) * (q - 32) as f32;
        assert_eq!(x[0], want(0, 1));
        assert_eq!(x[32], want(32, 16));
        assert_eq!(x[64], want(64, 2 | (2 << 4)));
        assert_eq!(x[96], want(96, 3 << 4));
        assert_eq!(x[128], want(128, 3));
        assert_eq!(x[255], want(255, 0));
    }
}
