//! The GGUF file reader on files from the test writer (tests/common/gguf.rs): every value type
//! and tensor type read back as written, the typed accessors and their errors, expert slices,
//! and split models of 2 and 3 parts.

use std::path::{Path, PathBuf};

use moe_gpu::gguf::{GgmlType, GgufFile, Value};

use crate::common::edit::temp_dir;
use crate::common::gguf::{Writer, blocks};

fn every_value() -> Vec<(&'static str, Value)> {
    vec![
        ("v.u8", Value::U8(200)),
        ("v.i8", Value::I8(-100)),
        ("v.u16", Value::U16(60000)),
        ("v.i16", Value::I16(-30000)),
        ("v.u32", Value::U32(4_000_000_000)),
        ("v.i32", Value::I32(-2_000_000_000)),
        ("v.u64", Value::U64(u64::MAX)),
        ("v.i64", Value::I64(i64::MIN)),
        ("v.f32", Value::F32(-1.5e-7)),
        ("v.f64", Value::F64(0.1)),
        ("v.bool", Value::Bool(true)),
        ("v.string", Value::String("héllo\n\"wörld\"".into())),
        ("v.empty", Value::String(String::new())),
        (
            "v.strings",
            Value::Array(vec![Value::String("a".into()), Value::String("".into())]),
        ),
        ("v.i32s", Value::Array(vec![Value::I32(-1), Value::I32(7)])),
        (
            "v.f32s",
            Value::Array(vec![Value::F32(0.5), Value::F32(-2.0)]),
        ),
        (
            "v.nested",
            Value::Array(vec![
                Value::Array(vec![Value::U8(1), Value::U8(2)]),
                Value::Array(vec![Value::U8(3)]),
            ]),
        ),
        ("v.none", Value::Array(vec![])),
    ]
}

/// ggml dims for `ty`'s fixture blocks: two rows.
fn dims(ty: GgmlType, bytes: usize) -> Vec<u64> {
    let values = bytes / ty.block_bytes() * ty.block_values();
    vec![values as u64 / 2, 2]
}

/// A file holding every value type and one tensor of every tensor type, and its path.
fn every_type_file(dir: &Path) -> (Writer, PathBuf) {
    let mut w = Writer::default().kv("general.alignment", Value::U32(64));
    for (k, v) in every_value() {
        w = w.kv(k, v);
    }
    for ty in GgmlType::ALL {
        let data = blocks(ty);
        w = w.tensor(&format!("t.{ty}"), &dims(ty, data.len()), ty, data);
    }
    let path = dir.join("every.gguf");
    w.write(&path);
    (w, path)
}

#[test]
fn gguf_every_value_and_tensor_type_round_trips() {
    let dir = temp_dir("gguf-every");
    let (w, path) = every_type_file(&dir);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!((f.version(), f.alignment()), (3, 64));
    assert_eq!(f.paths(), vec![path.as_path()]);
    let keys: Vec<&str> = f.keys().collect();
    let want: Vec<&str> = w.kvs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(keys, want);
    for (k, v) in &w.kvs {
        assert_eq!(f.get(k), Some(v), "{k}");
    }
    assert_eq!(f.tensors().count(), GgmlType::ALL.len());
    for ty in GgmlType::ALL {
        let name = format!("t.{ty}");
        let data = blocks(ty);
        let t = f.tensor(&name).unwrap();
        assert_eq!((t.ty, &t.dims), (ty, &dims(ty, data.len())), "{name}");
        assert_eq!(t.shape(), vec![2, t.dims[0] as usize]);
        assert_eq!(t.elements(), t.dims[0] as usize * 2);
        assert_eq!(t.byte_len(), data.len());
        assert!(f.contains(&name));
        assert_eq!(f.tensor_bytes(&name).unwrap(), data.as_slice(), "{name}");
        let want = moe_gpu::gguf::dequantize(ty, &data, t.elements()).unwrap();
        // The float fixtures are random bits, NaN and infinities included: then tensor_f32
        // must refuse, naming the first.
        match want.iter().position(|v| !v.is_finite()) {
            None => {
                let got = f.tensor_f32(&name).unwrap();
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&got), bits(&want), "{name}");
            }
            Some(i) => {
                let e = f.tensor_f32(&name).unwrap_err().to_string();
                assert!(e.contains(&format!("`{name}`: value {i} ")), "{e}");
            }
        }
    }
}

#[test]
fn gguf_typed_accessors() {
    let dir = temp_dir("gguf-typed");
    let (_, path) = every_type_file(&dir);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.u64("v.u8").unwrap(), 200);
    assert_eq!(f.u64("v.u64").unwrap(), u64::MAX);
    assert_eq!(f.u64_opt("absent").unwrap(), None);
    assert_eq!(f.f32("v.f64").unwrap(), 0.1f64 as f32);
    assert_eq!(f.f32("v.i16").unwrap(), -30000.0);
    assert_eq!(f.f32_opt("v.f32").unwrap(), Some(-1.5e-7));
    assert_eq!(f.bool_opt("v.bool").unwrap(), Some(true));
    assert_eq!(f.bool_opt("absent").unwrap(), None);
    assert_eq!(f.string("v.string").unwrap(), "héllo\n\"wörld\"");
    assert_eq!(f.string_opt("v.empty").unwrap(), Some(""));
    assert_eq!(f.strings("v.strings").unwrap(), vec!["a", ""]);
    assert_eq!(f.i64s("v.i32s").unwrap(), vec![-1, 7]);
    assert_eq!(f.f32s("v.i32s").unwrap(), vec![-1.0, 7.0]);
    assert_eq!(f.f32s("v.f32s").unwrap(), vec![0.5, -2.0]);
    assert_eq!(f.array("v.nested").unwrap().len(), 2);
    assert!(f.array("v.none").unwrap().is_empty());

    let err = |r: moe_gpu::Result<String>| r.unwrap_err().to_string();
    let fmt = |s: &str| s.to_string();
    for (e, key, says) in [
        (
            err(f.u64("v.i8").map(|v| v.to_string())),
            "v.i8",
            "I8(-100)",
        ),
        (
            err(f.u64("absent").map(|v| v.to_string())),
            "absent",
            "missing",
        ),
        (
            err(f.u64_opt("v.string").map(|v| format!("{v:?}"))),
            "v.string",
            "non-negative integer",
        ),
        (
            err(f.f32("v.bool").map(|v| v.to_string())),
            "v.bool",
            "a number",
        ),
        (err(f.string("v.u32").map(fmt)), "v.u32", "a string"),
        (err(f.string("absent").map(fmt)), "absent", "missing"),
        (
            err(f.bool_opt("v.u8").map(|v| format!("{v:?}"))),
            "v.u8",
            "a bool",
        ),
        (
            err(f.array("v.f32").map(|v| format!("{v:?}"))),
            "v.f32",
            "an array",
        ),
        (
            err(f.strings("v.i32s").map(|v| v.join(""))),
            "v.i32s",
            "element 0",
        ),
        (
            err(f.i64s("v.f32s").map(|v| format!("{v:?}"))),
            "v.f32s",
            "element 0",
        ),
        (
            err(f.f32s("v.strings").map(|v| format!("{v:?}"))),
            "v.strings",
            "element 0",
        ),
    ] {
        assert!(e.contains(&format!("`{key}`")) && e.contains(says), "{e}");
        assert!(e.contains("every.gguf"), "{e}");
    }
}

#[test]
fn gguf_tensor_errors_name_the_tensor() {
    let dir = temp_dir("gguf-tensor-errors");
    let mut nan = blocks(GgmlType::F32);
    nan[4 * 5..4 * 6].copy_from_slice(&f32::NAN.to_le_bytes());
    let path = dir.join("m.gguf");
    Writer::default()
        .tensor("nan", &[32, 2], GgmlType::F32, nan)
        .tensor("flat", &[64], GgmlType::F32, blocks(GgmlType::F32))
        .write(&path);
    let f = GgufFile::open(&path).unwrap();
    let e = f.tensor("absent").unwrap_err().to_string();
    assert!(e.contains("`absent`") && e.contains("m.gguf"), "{e}");
    let e = f.tensor_f32("nan").unwrap_err().to_string();
    assert!(e.contains("`nan`") && e.contains("value 5 "), "{e}");
    let e = f.expert_bytes("flat", 0).unwrap_err().to_string();
    assert!(e.contains("`flat`") && e.contains("[experts, n]"), "{e}");
    assert!(f.tensor_bytes("absent").is_err() && !f.contains("absent"));
}

#[test]
fn gguf_expert_bytes_slice_the_outermost_axis() {
    let dir = temp_dir("gguf-experts");
    let data = blocks(GgmlType::Q8_0).repeat(3)[..3 * 2 * 2 * 34].to_vec();
    let path = dir.join("m.gguf");
    Writer::default()
        .tensor("exps", &[64, 2, 3], GgmlType::Q8_0, data.clone())
        .write(&path);
    let f = GgufFile::open(&path).unwrap();
    assert_eq!(f.tensor("exps").unwrap().shape(), vec![3, 2, 64]);
    let per = 2 * 2 * 34;
    for e in 0..3 {
        assert_eq!(
            f.expert_bytes("exps", e).unwrap(),
            &data[e * per..(e + 1) * per]
        );
    }
    let e = f.expert_bytes("exps", 3).unwrap_err().to_string();
    assert!(e.contains("`exps`") && e.contains("expert 3"), "{e}");
}

/// Writes a model split into `parts` parts, each with tensor `t<i>` (F32, 64 values), the
/// metadata in the first; `count` is the `split.count` each part states.
fn write_split(dir: &Path, parts: usize, count: u16) -> Vec<PathBuf> {
    (0..parts)
        .map(|i| {
            let mut w = Writer::default();
            if i == 0 {
                w = w.kv("general.name", Value::String("split".into()));
            }
            let path = dir.join(format!("m-{:05}-of-{parts:05}.gguf", i + 1));
            w.kv("split.no", Value::U16(i as u16))
                .kv("split.count", Value::U16(count))
                .kv("split.tensors.count", Value::I32(parts as i32))
                .tensor(
                    &format!("t{i}"),
                    &[64],
                    GgmlType::F32,
                    blocks(GgmlType::F32),
                )
                .write(&path);
            path
        })
        .collect()
}

#[test]
fn gguf_split_models_of_2_and_3_parts() {
    for parts in [2, 3] {
        let dir = temp_dir("gguf-split");
        let paths = write_split(&dir, parts, parts as u16);
        for open in &paths {
            let f = GgufFile::open(open).unwrap();
            assert_eq!(
                f.paths(),
                paths.iter().map(PathBuf::as_path).collect::<Vec<_>>()
            );
            assert_eq!(f.string("general.name").unwrap(), "split");
            assert_eq!(f.u64("split.no").unwrap(), 0);
            let names: Vec<String> = f.tensors().map(|t| t.name.clone()).collect();
            let want: Vec<String> = (0..parts).map(|i| format!("t{i}")).collect();
            assert_eq!(names, want);
            for name in &want {
                assert_eq!(f.tensor_bytes(name).unwrap(), blocks(GgmlType::F32));
            }
        }
    }
}

#[test]
fn gguf_split_missing_part_is_named() {
    let dir = temp_dir("gguf-split-missing");
    let paths = write_split(&dir, 3, 3);
    std::fs::remove_file(&paths[1]).unwrap();
    let e = GgufFile::open(&paths[0]).unwrap_err().to_string();
    assert!(
        e.contains("m-00002-of-00003.gguf") && e.contains("missing"),
        "{e}"
    );
}

#[test]
fn gguf_split_wrong_count_is_named() {
    let dir = temp_dir("gguf-split-count");
    let paths = write_split(&dir, 2, 3);
    let e = GgufFile::open(&paths[1]).unwrap_err().to_string();
    assert!(e.contains("`split.count`") && e.contains("is 3"), "{e}");

    let single = dir.join("single.gguf");
    std::fs::copy(&paths[0], &single).unwrap();
    let e = GgufFile::open(&single).unwrap_err().to_string();
    assert!(e.contains("`split.count`") && e.contains("3 parts"), "{e}");
}

#[test]
fn gguf_split_wrong_number_or_tensor_count_is_named() {
    let dir = temp_dir("gguf-split-no");
    let paths = write_split(&dir, 2, 2);
    let mut bytes = std::fs::read(&paths[1]).unwrap();
    let mut at = b"split.no".to_vec();
    at.extend(2u32.to_le_bytes());
    let mut with = at.clone();
    at.extend(1u16.to_le_bytes());
    with.extend(0u16.to_le_bytes());
    crate::common::gguf::patch(&mut bytes, &at, &with);
    std::fs::write(&paths[1], &bytes).unwrap();
    let e = GgufFile::open(&paths[0]).unwrap_err().to_string();
    assert!(
        e.contains("`split.no`") && e.contains("m-00002-of-00002"),
        "{e}"
    );

    let paths = write_split(&temp_dir("gguf-split-tensors"), 2, 2);
    Writer::default()
        .kv("split.no", Value::U16(0))
        .kv("split.count", Value::U16(2))
        .kv("split.tensors.count", Value::I32(5))
        .tensor("t0", &[64], GgmlType::F32, blocks(GgmlType::F32))
        .write(&paths[0]);
    let e = GgufFile::open(&paths[0]).unwrap_err().to_string();
    assert!(
        e.contains("`split.tensors.count`") && e.contains("is 5"),
        "{e}"
    );
}
