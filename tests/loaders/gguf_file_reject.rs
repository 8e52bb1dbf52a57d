//! Every malformed GGUF header the reader must refuse, one test each: the error names the key
//! or tensor at fault (or, before any can be blamed, the file and what is wrong).

use moe_gpu::gguf::{GgmlType, GgufFile, Value};

use crate::common::edit::temp_dir;
use crate::common::gguf::{Writer, blocks, patch};

/// A valid file: a few keys and two tensors.
fn valid() -> Writer {
    Writer::default()
        .kv("general.architecture", Value::String("test".into()))
        .kv("test.count", Value::U32(3))
        .tensor("a.weight", &[32, 2], GgmlType::F32, blocks(GgmlType::F32))
        .tensor("b.weight", &[64, 2], GgmlType::Q8_0, blocks(GgmlType::Q8_0))
}

/// The error opening `bytes` as a file gives.
fn open_err(bytes: &[u8]) -> String {
    let path = temp_dir("gguf-reject").join("bad.gguf");
    std::fs::write(&path, bytes).unwrap();
    match GgufFile::open(&path) {
        Ok(_) => panic!("a malformed file was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Asserts `err` contains every one of `parts`.
fn says(err: &str, parts: &[&str]) {
    for p in parts {
        assert!(err.contains(p), "`{p}` missing from: {err}");
    }
}

#[test]
fn gguf_valid_file_opens() {
    let path = temp_dir("gguf-valid").join("ok.gguf");
    valid().write(&path);
    assert_eq!(GgufFile::open(&path).unwrap().tensors().count(), 2);
    // Version 2 has version 3's layout.
    Writer {
        version: 2,
        ..valid()
    }
    .write(&path);
    assert_eq!(GgufFile::open(&path).unwrap().version(), 2);
}

#[test]
fn gguf_rejects_bad_magic() {
    let mut b = valid().bytes();
    b[..4].copy_from_slice(b"GGML");
    says(&open_err(&b), &["bad.gguf", "magic `GGUF`"]);
}

#[test]
fn gguf_rejects_unsupported_versions() {
    for (version, want) in [(1, "version 1"), (4, "version 4"), (0, "version 0")] {
        let w = Writer { version, ..valid() };
        says(&open_err(&w.bytes()), &["bad.gguf", want]);
    }
}

#[test]
fn gguf_rejects_big_endian_files() {
    let w = Writer {
        version: 3u32.swap_bytes(),
        ..valid()
    };
    says(&open_err(&w.bytes()), &["big-endian"]);
}

#[test]
fn gguf_rejects_counts_larger_than_the_file() {
    let mut b = valid().bytes();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    says(&open_err(&b), &["tensor count", "bytes left"]);
    let mut b = valid().bytes();
    b[16..24].copy_from_slice(&(1u64 << 40).to_le_bytes());
    says(&open_err(&b), &["metadata count", "bytes left"]);
}

#[test]
fn gguf_rejects_string_lengths_larger_than_the_file() {
    let mut b = valid().bytes();
    let mut find = 4u64.to_le_bytes().to_vec();
    find.extend(b"test");
    let mut with = u64::MAX.to_le_bytes().to_vec();
    with.extend(b"test");
    patch(&mut b, &find, &with);
    says(&open_err(&b), &["`general.architecture`", "string length"]);
}

#[test]
fn gguf_rejects_array_lengths_larger_than_the_file() {
    let w = valid().kv(
        "test.list",
        Value::Array(vec![Value::U32(1), Value::U32(2)]),
    );
    let mut b = w.bytes();
    let mut find = 4u32.to_le_bytes().to_vec();
    find.extend(2u64.to_le_bytes());
    let mut with = 4u32.to_le_bytes().to_vec();
    with.extend((1u64 << 60).to_le_bytes());
    patch(&mut b, &find, &with);
    says(&open_err(&b), &["`test.list`", "array element count"]);
}

#[test]
fn gguf_rejects_invalid_utf8_keys() {
    let mut b = valid().bytes();
    patch(&mut b, b"test.count", b"test.\xffount");
    says(&open_err(&b), &["metadata entry 1", "UTF-8", "test."]);
}

#[test]
fn gguf_rejects_duplicate_keys() {
    let w = valid().kv("test.count", Value::U32(4));
    says(&open_err(&w.bytes()), &["`test.count`", "twice"]);
}

#[test]
fn gguf_rejects_unknown_value_types() {
    let mut b = valid().bytes();
    let mut find = b"test.count".to_vec();
    find.extend(4u32.to_le_bytes());
    let mut with = b"test.count".to_vec();
    with.extend(13u32.to_le_bytes());
    patch(&mut b, &find, &with);
    says(&open_err(&b), &["`test.count`", "unknown value type 13"]);
}

#[test]
fn gguf_rejects_deeply_nested_arrays_and_bad_bools() {
    let deep = (0..9).fold(Value::U8(1), |v, _| Value::Array(vec![v]));
    let w = valid().kv("test.deep", deep);
    says(&open_err(&w.bytes()), &["`test.deep`", "nested"]);
    let mut b = valid().kv("test.flag", Value::Bool(true)).bytes();
    let mut find = b"test.flag".to_vec();
    find.extend(7u32.to_le_bytes());
    let mut with = find.clone();
    find.push(1);
    with.push(2);
    patch(&mut b, &find, &with);
    says(&open_err(&b), &["`test.flag`", "bool byte is 2"]);
}

#[test]
fn gguf_rejects_bad_alignments() {
    let w = valid().kv("general.alignment", Value::U32(48));
    says(
        &open_err(&w.bytes()),
        &["`general.alignment`", "power of two"],
    );
    let w = valid().kv("general.alignment", Value::U32(0));
    says(
        &open_err(&w.bytes()),
        &["`general.alignment`", "power of two"],
    );
    let w = valid().kv("general.alignment", Value::U64(64));
    says(&open_err(&w.bytes()), &["`general.alignment`", "UINT32"]);
}

#[test]
fn gguf_rejects_zero_or_too_many_dims() {
    for dims in [vec![], vec![32, 1, 1, 1, 2]] {
        let mut w = valid();
        w.tensors[0].dims = dims.clone();
        let want = format!("{} dimensions", dims.len());
        says(&open_err(&w.bytes()), &["`a.weight`", &want]);
    }
}

#[test]
fn gguf_rejects_a_zero_dim() {
    let mut w = valid();
    w.tensors[1].dims = vec![64, 0];
    says(&open_err(&w.bytes()), &["`b.weight`", "have a 0"]);
}

#[test]
fn gguf_rejects_overflowing_element_counts() {
    for dims in [vec![1 << 32, 1 << 32], vec![1 << 62, 4]] {
        let mut w = valid();
        w.tensors[0].dims = dims;
        says(&open_err(&w.bytes()), &["`a.weight`", "overflows"]);
    }
}

#[test]
fn gguf_rejects_unknown_tensor_types() {
    let mut w = valid();
    w.tensors[1].type_id = 10;
    says(&open_err(&w.bytes()), &["`b.weight`", "type id 10"]);
}

#[test]
fn gguf_rejects_rows_that_are_not_whole_blocks() {
    let mut w = valid();
    w.tensors[1].dims = vec![16, 4];
    says(&open_err(&w.bytes()), &["`b.weight`", "ne0 = 16", "Q8_0"]);
}

#[test]
fn gguf_rejects_unaligned_offsets() {
    let mut w = valid();
    w.tensors[1].offset = Some(260);
    says(
        &open_err(&w.bytes()),
        &["`b.weight`", "offset 260", "alignment 32"],
    );
}

#[test]
fn gguf_rejects_data_past_the_end() {
    let b = valid().bytes();
    says(
        &open_err(&b[..b.len() - 1]),
        &["`b.weight`", "past the end"],
    );
    for offset in [1 << 40, u64::MAX - 31] {
        let mut w = valid();
        w.tensors[1].offset = Some(offset);
        says(&open_err(&w.bytes()), &["`b.weight`", "past the end"]);
    }
}

#[test]
fn gguf_rejects_overlapping_tensors() {
    let mut w = valid();
    w.tensors[1].offset = Some(0);
    says(
        &open_err(&w.bytes()),
        &["`b.weight`", "overlap", "`a.weight`"],
    );
}

#[test]
fn gguf_rejects_duplicate_tensor_names() {
    let w = valid().tensor("a.weight", &[64], GgmlType::F32, blocks(GgmlType::F32));
    says(&open_err(&w.bytes()), &["`a.weight`", "twice"]);
}

#[test]
fn gguf_rejects_empty_files_and_directories() {
    says(&open_err(&[]), &["bad.gguf", "non-empty"]);
    let dir = temp_dir("gguf-dir");
    let e = GgufFile::open(&dir).unwrap_err().to_string();
    says(&e, &["non-empty"]);
}
