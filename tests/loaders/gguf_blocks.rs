//! GGUF block dequantisation against its oracle: for every type, `moe_gpu::gguf::dequantize`
//! of the committed random blocks in tests/fixtures/gguf-quants equals the `gguf` Python
//! package's output bit for bit (scripts/gguf_quant_vectors.py made both), NaN, infinite and
//! subnormal scales included; and bad lengths and unknown type ids are errors.

use std::path::PathBuf;

use moe_gpu::gguf::{GgmlType, dequantize};

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf-quants")
        .join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Differences between our decoding of `<stem>.bin` and gguf-py's `<stem>.f32`, one line
/// each. Values must be bit-identical. The float types are conversions, so even NaN payloads
/// must match; in the quantised types a NaN comes from arithmetic (`NaN * q`, `inf * 0`),
/// whose payload is the CPU's choice (x86 and Arm differ), so there any two NaNs match.
fn mismatches(ty: GgmlType, stem: &str) -> Vec<String> {
    let any_nan_matches = ty.block_values() > 1;
    let blocks = fixture(&format!("{stem}.bin"));
    let want: Vec<f32> = fixture(&format!("{stem}.f32"))
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let got = match dequantize(ty, &blocks, want.len()) {
        Ok(got) => got,
        Err(e) => return vec![format!("{stem}: {e}")],
    };
    got.iter()
        .zip(&want)
        .enumerate()
        .filter(|(_, (g, w))| {
            g.to_bits() != w.to_bits() && !(any_nan_matches && g.is_nan() && w.is_nan())
        })
        .map(|(i, (g, w))| {
            format!(
                "{stem}[{i}]: got {g:e} ({:#010x}), gguf-py {w:e} ({:#010x})",
                g.to_bits(),
                w.to_bits()
            )
        })
        .collect()
}

#[test]
fn every_type_matches_gguf_py_bit_for_bit() {
    let bad: Vec<String> = GgmlType::ALL
        .into_iter()
        .flat_map(|ty| mismatches(ty, ty.name()))
        .collect();
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn nonfinite_and_subnormal_scales_match_gguf_py() {
    let quantised = GgmlType::ALL.into_iter().filter(|t| t.block_values() > 1);
    let mut checked = 0;
    let mut bad = Vec::new();
    for ty in quantised {
        bad.extend(mismatches(ty, &format!("{}.nonfinite", ty.name())));
        checked += 1;
    }
    assert_eq!(checked, 9, "every quantised type has a nonfinite fixture");
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

#[test]
fn nan_scale_gives_nan_and_infinite_scale_gives_infinities() {
    // Q8_0 with d = NaN, then d = +inf: codes 1 and 0 give NaN; inf and inf * 0 = NaN.
    let mut block = vec![0u8; 34];
    block[2] = 1;
    block[..2].copy_from_slice(&half::f16::NAN.to_le_bytes());
    let x = dequantize(GgmlType::Q8_0, &block, 32).unwrap();
    assert!(x[0].is_nan() && x[1].is_nan());
    block[..2].copy_from_slice(&half::f16::INFINITY.to_le_bytes());
    let x = dequantize(GgmlType::Q8_0, &block, 32).unwrap();
    assert_eq!(x[0], f32::INFINITY);
    assert!(x[1].is_nan());
}

#[test]
fn wrong_byte_length_is_an_error() {
    for ty in GgmlType::ALL {
        let values = 2 * ty.block_values();
        for len in [2 * ty.block_bytes() - 1, 2 * ty.block_bytes() + 1, 0] {
            let err = dequantize(ty, &vec![0; len], values)
                .expect_err(&format!("{ty}: {len} bytes for {values} values"))
                .to_string();
            assert!(
                err.contains(ty.name()) && err.contains(&format!("got {len}")),
                "{err}"
            );
        }
    }
}

#[test]
fn partial_block_is_an_error() {
    for ty in GgmlType::ALL.into_iter().filter(|t| t.block_values() > 1) {
        let values = ty.block_values() + 1;
        let err = dequantize(ty, &vec![0; 2 * ty.block_bytes()], values)
            .expect_err(&format!("{ty}: {values} values"))
            .to_string();
        assert!(err.contains("not a whole number"), "{err}");
    }
}

#[test]
fn unknown_type_id_is_an_error_naming_it() {
    // 4 and 5 were Q4_2 and Q4_3; 10 is Q2_K and 16 IQ2_XXS, which we do not decode.
    for id in [4, 5, 9, 10, 16, 40, u32::MAX] {
        let err = GgmlType::from_id(id)
            .expect_err(&format!("id {id}"))
            .to_string();
        assert!(err.contains(&format!("type id {id}")), "{err}");
    }
}
