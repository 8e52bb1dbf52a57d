//! Unit tests of the weight formats: names, sizes, packing round trips, row selection.

use super::*;
use crate::synthetic::Rng;

#[test]
fn names_round_trip_and_unknown_names_are_errors() {
    for f in WeightFormat::ALL {
        assert_eq!(WeightFormat::parse(f.name()).unwrap(), f);
    }
    let err = WeightFormat::parse("q4").unwrap_err().to_string();
    assert!(err.contains("int4"), "{err}");
}

#[test]
fn packed_sizes_match_matrix_bytes() {
    let mut rng = Rng::new(3);
    for f in WeightFormat::ALL {
        for (rows, k) in [(1, 1), (3, 31), (5, 32), (7, 33), (2, 70), (9, 100)] {
            let w = rng.normals(rows * k, 1.0);
            let mut packed = Vec::new();
            f.pack_into(&mut packed, &w, rows, k);
            assert_eq!(
                packed.len() as u64 * 4,
                f.matrix_bytes(rows, k),
                "{f} {rows}x{k}"
            );
            assert_eq!(packed.len() % 4, 0, "{f}: whole vec4 words");
            assert_eq!(f.row_words(k) % 4, 0, "{f}: rows of whole vec4 words");
        }
    }
}

#[test]
fn quantised_values_are_within_half_a_step_of_the_weights() {
    let mut rng = Rng::new(5);
    // k = 70: two full int4 groups and a partial one of 6 values.
    let (rows, k) = (6, 70);
    let mut w = rng.normals(rows * k, 0.3);
    w[k..2 * k].iter_mut().for_each(|v| *v = 0.0); // an all-zero row
    w[2 * k + 65] = 40.0; // an outlier in the partial group only
    for f in [WeightFormat::Int8, WeightFormat::Int4] {
        let d = f.dequantize(&w, rows, k);
        for r in 0..rows {
            for i in 0..k {
                let span = match f {
                    WeightFormat::Int8 => &w[r * k..(r + 1) * k],
                    _ => {
                        let g = i / INT4_GROUP * INT4_GROUP;
                        &w[r * k + g..r * k + (g + INT4_GROUP).min(k)]
                    }
                };
                let levels = if f == WeightFormat::Int8 { 127.0 } else { 7.0 };
                // bf16 rounds the int4 step up by at most 2⁻⁸.
                let step = max_abs(span) / levels * (1.0 + 1.0 / 256.0);
                let (got, want) = (d[r * k + i], w[r * k + i]);
                assert!(
                    (got - want).abs() <= 0.5 * step * (1.0 + 1e-6),
                    "{f} ({r}, {i}): {got} vs {want}, step {step}"
                );
            }
        }
        assert!(d[k..2 * k].iter().all(|&v| v == 0.0), "{f}: zero row");
    }
    // The outlier widens only its own int4 group's step.
    let d = WeightFormat::Int4.dequantize(&w, rows, k);
    let g0 = 2 * k;
    let err0: f32 = (0..INT4_GROUP).map(|i| (d[g0 + i] - w[g0 + i]).abs()).sum();
    assert!(err0 / INT4_GROUP as f32 <= 0.3 / 7.0 * 3.0, "{err0}");
}

#[test]
fn extremes_quantise_to_the_end_levels_exactly() {
    let w = [1.0f32, -0.5, 0.25, -1.0, 0.0];
    let d8 = WeightFormat::Int8.dequantize(&w, 1, 5);
    assert!((d8[0] - 1.0).abs() <= 1e-6, "{}", d8[0]);
    assert_eq!(d8[3], -d8[0]);
    assert_eq!(d8[4], 0.0);
    // 7 · 1/7 in bf16 (rounded up) is the largest level: just above 1.
    let d4 = WeightFormat::Int4.dequantize(&w, 1, 5);
    assert!(d4[0] >= 1.0 && d4[0] <= 1.0 + 1.0 / 128.0, "{}", d4[0]);
    assert_eq!(d4[3], -d4[0]);
}

#[test]
fn bf16_rounding_is_upward_and_exact_on_bf16_values() {
    for v in [1.0f32, 0.1, 3.0e-30, 1.0e30, 1.5] {
        let b = bf16_to_f32(bf16_round_up(v));
        assert!(b >= v, "{v} → {b}");
        assert!(b - v <= v / 128.0, "{v} → {b}");
    }
    // Subnormal: coarser, still upward.
    assert!(bf16_to_f32(bf16_round_up(3.0e-39)) >= 3.0e-39);
    assert_eq!(bf16_to_f32(bf16_round_up(1.5)), 1.5);
    assert_eq!(bf16_round_up(0.0), 0);
}

#[test]
fn lanes_sign_extend() {
    let lanes = [-8i8, 7, -1, 0, 3, -7, 1, -2];
    let mut out = [0.0; 8];
    // Scale 1.0: bf16 0x3f80 in the low half for int4, an f32 for int8.
    WeightFormat::Int4.decode_row(&[pack_lanes(&lanes, 4)], &[0x3f80], 8, &mut out);
    assert_eq!(out, lanes.map(f32::from));
    let bytes = [-128i8, 127, -1, 5];
    let mut out = [0.0; 4];
    let scale = [1.0f32.to_bits()];
    WeightFormat::Int8.decode_row(&[pack_lanes(&bytes, 8)], &scale, 4, &mut out);
    assert_eq!(out, bytes.map(f32::from));
}

#[test]
fn selected_rows_are_the_rows_packed_alone() {
    let mut rng = Rng::new(9);
    for f in WeightFormat::ALL {
        for (n, k) in [(5, 37), (8, 64), (3, 1)] {
            let (gate, up) = (rng.normals(n * k, 1.0), rng.normals(n * k, 1.0));
            let mut all = Vec::new();
            f.pack_stacked_into(&mut all, &[&gate, &up], k);
            for (a, b) in [(0, n), (1, 3), (n - 1, n)] {
                let mut want = Vec::new();
                f.pack_stacked_into(&mut want, &[&gate[a * k..b * k], &up[a * k..b * k]], k);
                let got = f.select_rows(&all, 2 * n, k, &[(a, b), (n + a, n + b)]);
                assert_eq!(got, want, "{f} {n}x{k} rows {a}..{b}");
            }
        }
    }
}
