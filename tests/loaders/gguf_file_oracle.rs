//! The GGUF reader on files written by gguf-py's `GGUFWriter` (tests/fixtures/gguf-files, made
//! by scripts/gguf_file_fixture.py): every value type, a 64-byte alignment, f32/f16/q8_0
//! tensors and a 3-part split model. And its robustness: every truncation and hundreds of
//! seeded byte corruptions of a valid header end in `Ok` or `Err`, never a panic.

use std::path::{Path, PathBuf};

use moe_gpu::gguf::{GgmlType, GgufFile, Value};

use crate::common::edit::temp_dir;
use crate::common::gguf::{Writer, blocks};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf-files")
        .join(name)
}

#[test]
fn gguf_reads_gguf_py_every_type() {
    let f = GgufFile::open(&fixture("every-type.gguf")).unwrap();
    assert_eq!((f.version(), f.alignment()), (3, 64));
    let s = |v: &str| Value::String(v.into());
    let want = [
        ("general.architecture", s("test")),
        ("general.alignment", Value::U32(64)),
        ("test.u8", Value::U8(200)),
        ("test.i8", Value::I8(-100)),
        ("test.u16", Value::U16(60000)),
        ("test.i16", Value::I16(-30000)),
        ("test.u32", Value::U32(4_000_000_000)),
        ("test.i32", Value::I32(-2_000_000_000)),
        ("test.f32", Value::F32(1.25)),
        ("test.bool", Value::Bool(true)),
        ("test.string", s("héllo wörld")),
        ("test.u64", Value::U64((1 << 40) + 1)),
        ("test.i64", Value::I64(-(1 << 40))),
        ("test.f64", Value::F64(0.1)),
        (
            "test.array.i32",
            Value::Array(vec![Value::I32(1), Value::I32(-2), Value::I32(3)]),
        ),
        (
            "test.array.f32",
            Value::Array(vec![Value::F32(0.5), Value::F32(-1.5)]),
        ),
        (
            "test.array.string",
            Value::Array(vec![s("a"), s("bc"), s("ünï")]),
        ),
        (
            "test.array.nested",
            Value::Array(vec![
                Value::Array(vec![Value::I32(1), Value::I32(2)]),
                Value::Array(vec![Value::I32(3)]),
            ]),
        ),
    ];
    let keys: Vec<&str> = want.iter().map(|(k, _)| *k).collect();
    assert_eq!(f.keys().collect::<Vec<_>>(), keys);
    for (k, v) in &want {
        assert_eq!(f.get(k), Some(v), "{k}");
    }

    let f32 = f.tensor("f32.weight").unwrap();
    assert_eq!((f32.ty, f32.shape()), (GgmlType::F32, vec![3, 8]));
    let want: Vec<f32> = (0..24).map(|i| i as f32 * 0.25 - 2.0).collect();
    assert_eq!(f.tensor_f32("f32.weight").unwrap(), want);
    let f16 = f.tensor("f16.weight").unwrap();
    assert_eq!((f16.ty, f16.shape()), (GgmlType::F16, vec![2, 16]));
    let want: Vec<f32> = (0..32).map(|i| i as f32 / 8.0 - 1.5).collect();
    assert_eq!(f.tensor_f32("f16.weight").unwrap(), want);
    let q8 = f.tensor("q8_0.weight").unwrap();
    assert_eq!((q8.ty, q8.shape()), (GgmlType::Q8_0, vec![2, 64]));
    assert_eq!(q8.byte_len(), 4 * 34);
    let want: Vec<u32> = std::fs::read(fixture("every-type.q8_0.f32"))
        .unwrap()
        .chunks_exact(4)
        .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let got: Vec<u32> = f
        .tensor_f32("q8_0.weight")
        .unwrap()
        .iter()
        .map(|v| v.to_bits())
        .collect();
    assert_eq!(got, want);
}

#[test]
fn gguf_reads_gguf_py_split_model() {
    let paths: Vec<PathBuf> = (1..=3)
        .map(|i| fixture(&format!("split-{i:05}-of-00003.gguf")))
        .collect();
    let f = GgufFile::open(&paths[1]).unwrap();
    assert_eq!(
        f.paths(),
        paths.iter().map(PathBuf::as_path).collect::<Vec<_>>()
    );
    assert_eq!(f.string("general.architecture").unwrap(), "test");
    assert_eq!(f.u64("test.u32").unwrap(), 7);
    assert_eq!(f.u64("split.tensors.count").unwrap(), 3);
    for i in 0..3 {
        let name = format!("t{i}");
        assert_eq!(f.tensor(&name).unwrap().shape(), vec![2, 4]);
        assert_eq!(f.tensor_f32(&name).unwrap(), vec![i as f32; 8]);
    }
}

/// A small valid file with keys of every kind and two tensors (the second 3-D), and the length
/// of its header (where its data section starts).
fn small() -> (Vec<u8>, usize) {
    let w = Writer::default()
        .kv("general.alignment", Value::U32(32))
        .kv("a.u32", Value::U32(3))
        .kv("a.i64", Value::I64(-3))
        .kv("a.f64", Value::F64(0.5))
        .kv("a.bool", Value::Bool(false))
        .kv("a.str", Value::String("xyz".into()))
        .kv(
            "a.strs",
            Value::Array(vec![Value::String("p".into()), Value::String("q".into())]),
        )
        .kv(
            "a.nested",
            Value::Array(vec![Value::Array(vec![Value::U16(1), Value::U16(2)])]),
        )
        .tensor("f", &[16, 4], GgmlType::F32, blocks(GgmlType::F32))
        .tensor("q", &[32, 2, 2], GgmlType::Q8_0, blocks(GgmlType::Q8_0));
    let bytes = w.bytes();
    let data = 256usize.next_multiple_of(32) + 4 * 34;
    let header = bytes.len() - data;
    (bytes, header)
}

/// Opens `bytes` as a file and, if that works, reads every key and tensor every way.
fn open_and_read_all(path: &Path, bytes: &[u8]) -> bool {
    std::fs::write(path, bytes).unwrap();
    let Ok(f) = GgufFile::open(path) else {
        return false;
    };
    let keys: Vec<String> = f.keys().map(String::from).collect();
    for k in &keys {
        let _ = (f.u64(k), f.f32(k), f.bool_opt(k), f.string(k), f.array(k));
        let _ = (f.strings(k), f.f32s(k), f.i64s(k));
    }
    let names: Vec<String> = f.tensors().map(|t| t.name.clone()).collect();
    for n in &names {
        let t = f.tensor(n).unwrap();
        let _ = (t.shape(), t.elements(), t.byte_len());
        let _ = (f.tensor_f32(n), f.expert_bytes(n, 1), f.tensor_bytes(n));
    }
    true
}

#[test]
fn gguf_truncations_and_corruptions_never_panic() {
    let (bytes, header) = small();
    let path = temp_dir("gguf-robust").join("m.gguf");
    assert!(open_and_read_all(&path, &bytes), "the base file must open");
    let truncated_ok = (0..bytes.len())
        .filter(|&len| open_and_read_all(&path, &bytes[..len]))
        .count();
    assert_eq!(truncated_ok, 0, "a truncated file opened");

    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        // splitmix64
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    };
    let (mut ok, mut err) = (0, 0);
    for _ in 0..400 {
        let mut b = bytes.clone();
        let at = next() as usize % header;
        b[at] = next() as u8;
        if open_and_read_all(&path, &b) {
            ok += 1;
        } else {
            err += 1;
        }
    }
    // Most corruptions of a header break it; some (a value's byte, a name's letter) do not.
    assert!(ok > 0 && err > 0, "{ok} opened, {err} refused");
}
