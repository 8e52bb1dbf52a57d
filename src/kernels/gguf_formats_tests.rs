//! The GGUF repack is lossless: the GPU layout's values equal gguf-py's decoding of the
//! blocks it came from, bit for bit, for every type.

use super::*;
use crate::gguf::dequantize;
use crate::synthetic::Rng;

fn fixture(name: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf-quants")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Differences between the unpacked repack of `[rows, k]` `bytes` and their dequantisation.
/// An F16 NaN matches any NaN: the words hold GGUF's bits as they are, but widening a
/// signalling NaN (the GPU's `unpack2x16float`, the CPU's F16C) may quiet it.
fn mismatches(ty: GgmlType, bytes: &[u8], rows: usize, k: usize) -> Vec<String> {
    let want = dequantize(ty, bytes, rows * k).unwrap();
    let (format, packed) = pack_gguf(ty, bytes, rows, k).unwrap();
    assert_eq!(
        packed.len() as u64 * 4,
        format.matrix_bytes(rows, k),
        "{ty}"
    );
    let got = format.unpack(&packed, rows, k);
    got.iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (g, w))| {
            g.to_bits() != w.to_bits() && !(ty == GgmlType::F16 && g.is_nan() && w.is_nan())
        })
        .map(|(i, (g, w))| format!("{ty} [{rows}, {k}] value {i}: {g:e}, gguf {w:e}"))
        .collect()
}

/// `blocks` random blocks of `ty` with random finite scales.
fn random_blocks(rng: &mut Rng, ty: GgmlType, blocks: usize) -> Vec<u8> {
    let mut bytes: Vec<u8> = (0..blocks * ty.block_bytes())
        .map(|_| rng.below(256) as u8)
        .collect();
    for block in bytes.chunks_exact_mut(ty.block_bytes()) {
        if ty == GgmlType::MXFP4 {
            block[0] = rng.below(255) as u8;
        }
        for &at in ty.f16_scale_offsets() {
            let s = f16::from_f32(rng.normal() * 0.01);
            block[at..at + 2].copy_from_slice(&s.to_le_bytes());
        }
    }
    bytes
}

#[test]
fn repack_of_gguf_py_vectors_unpacks_to_their_values_bit_for_bit() {
    let mut bad = Vec::new();
    for ty in GgmlType::ALL {
        let bytes = fixture(&format!("{}.bin", ty.name()));
        let blocks = bytes.len() / ty.block_bytes();
        for rows in [1, 2, blocks] {
            bad.extend(mismatches(
                ty,
                &bytes,
                rows,
                blocks / rows * ty.block_values(),
            ));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn repack_of_random_blocks_unpacks_to_their_values_bit_for_bit() {
    let mut rng = Rng::new(15);
    let mut bad = Vec::new();
    for ty in GgmlType::ALL {
        for (rows, blocks) in [(3, 1), (2, 3), (5, 4)] {
            let bytes = random_blocks(&mut rng, ty, rows * blocks);
            bad.extend(mismatches(ty, &bytes, rows, blocks * ty.block_values()));
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn stacked_repack_is_the_repack_of_the_concatenated_rows() {
    let mut rng = Rng::new(16);
    for ty in GgmlType::ALL {
        let k = 2 * ty.block_values();
        let (gate, up) = (
            random_blocks(&mut rng, ty, 6),
            random_blocks(&mut rng, ty, 6),
        );
        let stacked = pack_gguf_stacked(ty, &[(&gate, 3), (&up, 3)], k).unwrap();
        let whole = pack_gguf(ty, &[gate, up].concat(), 6, k).unwrap();
        assert_eq!(stacked, whole, "{ty}");
    }
}

#[test]
fn nonfinite_scales_are_errors_naming_row_and_block() {
    for ty in GgmlType::ALL.into_iter().filter(|t| t.block_values() > 1) {
        let bytes = fixture(&format!("{}.nonfinite.bin", ty.name()));
        let k = ty.block_values();
        let rows = bytes.len() / ty.block_bytes();
        let err = pack_gguf(ty, &bytes, rows, k).unwrap_err().to_string();
        assert!(
            err.contains(ty.name()) && err.contains("row ") && err.contains("block 0"),
            "{err}"
        );
    }
}

#[test]
fn partial_blocks_and_wrong_lengths_are_errors() {
    let err = pack_gguf(GgmlType::Q4_K, &[0; 144], 1, 128)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("not a whole number of 256-value blocks"),
        "{err}"
    );
    let err = pack_gguf(GgmlType::Q8_0, &[0; 34], 2, 32)
        .unwrap_err()
        .to_string();
    assert!(err.contains("needs 68 bytes, got 34"), "{err}");
}

#[test]
fn every_gguf_type_has_a_lossless_format() {
    for ty in GgmlType::ALL {
        let format = WeightFormat::of_gguf(ty);
        assert!(format.gguf_type().is_none_or(|t| t == ty), "{ty}: {format}");
    }
    for format in WeightFormat::GGUF {
        assert_eq!(WeightFormat::of_gguf(format.gguf_type().unwrap()), format);
    }
}
