//! Round-to-nearest f32 → GGUF block quantisers, in the spirit of ggml's
//! `quantize_row_*_ref`: they let the GGUF formats be packed from f32 weights
//! ([`WeightFormat::pack_into`]), so every kernel test and `--weights` covers them.
//!
//! Legacy types: one scale per 32 (`max / -8`, `max / -16`, `(max - min) / 15` or `/ 31`,
//! `max|x| / 127`). K-quants: per 32-value sub-block a scale and a min (`min(0, min x)`),
//! quantised to 6 bits against the super-block's f16 `d = max scale / 63` and
//! `dmin = max min / 63`; Q6_K: a scale `max|x| / 31` per 16, quantised to i8 against
//! `d = max scale / 127`. Values are quantised against the stored (f16-rounded) scales.
//! Scales saturate at f16's largest finite value, so the output always repacks.

use half::f16;

use crate::gguf::GgmlType;

/// The f16 of `v` (saturating, NaN as 0), as its f32 value and its little-endian bytes.
fn to_f16(v: f32) -> (f32, [u8; 2]) {
    let h = f16::from_f32(if v.is_nan() {
        0.0
    } else {
        v.clamp(-65504.0, 65504.0)
    });
    (h.to_f32(), h.to_le_bytes())
}

/// `x / d` rounded to nearest, clamped to `lo..=hi` (0 for a zero scale).
fn quant(x: f32, d: f32, lo: i32, hi: i32) -> i32 {
    if d == 0.0 {
        return 0.clamp(lo, hi);
    }
    ((x / d).round() as i32).clamp(lo, hi)
}

/// The value of largest magnitude (with its sign), and the minimum and maximum.
fn extremes(x: &[f32]) -> (f32, f32, f32) {
    let signed = x
        .iter()
        .fold(0.0f32, |m, &v| if v.abs() > m.abs() { v } else { m });
    let lo = x.iter().fold(f32::INFINITY, |m, &v| m.min(v));
    let hi = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    (signed, lo, hi)
}

/// GGUF blocks of type `ty` for `row` (a whole number of blocks).
pub(crate) fn quantize_row(ty: GgmlType, row: &[f32]) -> Vec<u8> {
    let mut out = Vec::with_capacity(row.len() / ty.block_values() * ty.block_bytes());
    for x in row.chunks_exact(ty.block_values()) {
        match ty {
            GgmlType::Q4_K | GgmlType::Q5_K => k_block(&mut out, x, ty == GgmlType::Q5_K),
            GgmlType::Q6_K => q6_k_block(&mut out, x),
            _ => legacy_block(&mut out, ty, x),
        }
    }
    out
}

/// Q8_0, Q4_0, Q4_1, Q5_0 or Q5_1 of 32 values.
fn legacy_block(out: &mut Vec<u8>, ty: GgmlType, x: &[f32]) {
    let (signed, lo, hi) = extremes(x);
    let (offset, with_min) = match ty {
        GgmlType::Q4_0 | GgmlType::Q4_1 => (8, ty == GgmlType::Q4_1),
        GgmlType::Q5_0 | GgmlType::Q5_1 => (16, ty == GgmlType::Q5_1),
        _ => (0, false),
    };
    let (d, m) = if ty == GgmlType::Q8_0 {
        (to_f16(signed.abs() / 127.0), to_f16(0.0))
    } else if with_min {
        let m = to_f16(lo);
        (to_f16((hi - m.0) / (2 * offset - 1) as f32), m)
    } else {
        (to_f16(signed / -(offset as f32)), to_f16(0.0))
    };
    out.extend(d.1);
    if with_min {
        out.extend(m.1);
    }
    let q: Vec<i32> = x
        .iter()
        .map(|&v| match ty {
            GgmlType::Q8_0 => quant(v, d.0, -127, 127),
            _ if with_min => quant(v - m.0, d.0, 0, 2 * offset - 1),
            _ => quant(v, d.0, -offset, offset - 1) + offset,
        })
        .collect();
    if ty == GgmlType::Q8_0 {
        out.extend(q.iter().map(|&v| v as i8 as u8));
        return;
    }
    if offset == 16 {
        let qh = q
            .iter()
            .enumerate()
            .fold(0u32, |h, (i, &v)| h | (((v >> 4) & 1) as u32) << i);
        out.extend(qh.to_le_bytes());
    }
    out.extend((0..16).map(|i| (q[i] & 15) as u8 | ((q[i + 16] & 15) as u8) << 4));
}

/// Q4_K (or Q5_K with `five`) of 256 values.
fn k_block(out: &mut Vec<u8>, x: &[f32], five: bool) {
    let levels = if five { 31.0 } else { 15.0 };
    let (scales, mins): (Vec<f32>, Vec<f32>) = x
        .chunks_exact(32)
        .map(|s| {
            let (_, lo, hi) = extremes(s);
            let lo = lo.min(0.0);
            ((hi - lo) / levels, -lo)
        })
        .unzip();
    let d = to_f16(scales.iter().fold(0.0f32, |m, &v| m.max(v)) / 63.0);
    let dmin = to_f16(mins.iter().fold(0.0f32, |m, &v| m.max(v)) / 63.0);
    let sc: Vec<u8> = scales.iter().map(|&s| quant(s, d.0, 0, 63) as u8).collect();
    let mn: Vec<u8> = mins
        .iter()
        .map(|&m| quant(m, dmin.0, 0, 63) as u8)
        .collect();
    out.extend(d.1);
    out.extend(dmin.1);
    let mut packed = [0u8; 12];
    for j in 0..4 {
        packed[j] = sc[j] | ((sc[j + 4] >> 4) << 6);
        packed[j + 4] = mn[j] | ((mn[j + 4] >> 4) << 6);
        packed[j + 8] = (sc[j + 4] & 15) | ((mn[j + 4] & 15) << 4);
    }
    out.extend(packed);
    let mut qh = [0u8; 32];
    let mut qs = [0u8; 128];
    for (j, s) in x.chunks_exact(32).enumerate() {
        let scale = d.0 * f32::from(sc[j]);
        let min = dmin.0 * f32::from(mn[j]);
        for (l, &v) in s.iter().enumerate() {
            let q = quant(v + min, scale, 0, levels as i32) as u8;
            qs[(j / 2) * 32 + l] |= (q & 15) << (4 * (j % 2));
            qh[l] |= ((q >> 4) & 1) << j;
        }
    }
    if five {
        out.extend(qh);
    }
    out.extend(qs);
}

/// Q6_K of 256 values.
fn q6_k_block(out: &mut Vec<u8>, x: &[f32]) {
    let scales: Vec<f32> = x
        .chunks_exact(16)
        .map(|s| extremes(s).0.abs() / 31.0)
        .collect();
    let d = to_f16(scales.iter().fold(0.0f32, |m, &v| m.max(v)) / 127.0);
    let sc: Vec<i8> = scales
        .iter()
        .map(|&s| quant(s, d.0, -127, 127) as i8)
        .collect();
    let (mut ql, mut qh) = ([0u8; 128], [0u8; 64]);
    for (i, &v) in x.iter().enumerate() {
        let q = (quant(v, d.0 * f32::from(sc[i / 16]), -32, 31) + 32) as u8;
        let (half, r) = (i / 128, i % 128);
        ql[half * 64 + r % 64] |= (q & 15) << (4 * (r / 64));
        qh[half * 32 + r % 32] |= (q >> 4) << (2 * (r / 32));
    }
    out.extend(ql);
    out.extend(qh);
    out.extend(sc.iter().map(|&s| s as u8));
    out.extend(d.1);
}
