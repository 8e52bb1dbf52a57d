//! A GGUF writer for tests: version-3 files with any metadata and tensors, laid out as
//! llama.cpp lays them out (each tensor's data at the next aligned offset), with fields a test
//! may set to break the file (version, a tensor's type id or offset).

use std::path::Path;

use moe_gpu::gguf::{GgmlType, Value};

/// One tensor to write.
pub struct Tensor {
    pub name: String,
    /// ggml order: `dims[0]` innermost.
    pub dims: Vec<u64>,
    pub type_id: u32,
    pub data: Vec<u8>,
    /// The offset to state in the tensor info; `None` places it after the previous tensor.
    /// Data at a stated offset is written only where it falls inside the data section.
    pub offset: Option<u64>,
}

/// A GGUF file to write.
pub struct Writer {
    pub version: u32,
    pub kvs: Vec<(String, Value)>,
    pub tensors: Vec<Tensor>,
}

impl Default for Writer {
    fn default() -> Self {
        Writer {
            version: 3,
            kvs: Vec::new(),
            tensors: Vec::new(),
        }
    }
}

impl Writer {
    pub fn kv(mut self, key: &str, value: Value) -> Self {
        self.kvs.push((key.into(), value));
        self
    }

    pub fn tensor(mut self, name: &str, dims: &[u64], ty: GgmlType, data: Vec<u8>) -> Self {
        self.tensors.push(Tensor {
            name: name.into(),
            dims: dims.to_vec(),
            type_id: ty.id(),
            data,
            offset: None,
        });
        self
    }

    /// `general.alignment` when it is a power-of-two UINT32, else GGUF's default 32.
    pub fn alignment(&self) -> u64 {
        match self.kvs.iter().find(|(k, _)| k == "general.alignment") {
            Some((_, Value::U32(a))) if a.is_power_of_two() => *a as u64,
            _ => 32,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let align = self.alignment();
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend((self.kvs.len() as u64).to_le_bytes());
        for (key, value) in &self.kvs {
            string(&mut out, key.as_bytes());
            out.extend(type_id(value).to_le_bytes());
            encode(&mut out, value);
        }
        let mut offsets = Vec::new();
        let mut end = 0u64;
        for t in &self.tensors {
            // A stated offset (a test breaking the file) neither grows the data section nor
            // moves the next tensor.
            let offset = t.offset.unwrap_or_else(|| {
                let at = end.next_multiple_of(align);
                end = at + t.data.len() as u64;
                at
            });
            offsets.push(offset);
            string(&mut out, t.name.as_bytes());
            out.extend((t.dims.len() as u32).to_le_bytes());
            for d in &t.dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.type_id.to_le_bytes());
            out.extend(offset.to_le_bytes());
        }
        let data_start = (out.len() as u64).next_multiple_of(align) as usize;
        out.resize(data_start + end as usize, 0);
        for (t, offset) in self.tensors.iter().zip(offsets) {
            let range = usize::try_from(offset)
                .ok()
                .and_then(|o| data_start.checked_add(o))
                .and_then(|at| Some(at..at.checked_add(t.data.len())?));
            if let Some(dst) = range.and_then(|r| out.get_mut(r)) {
                dst.copy_from_slice(&t.data);
            }
        }
        out
    }

    pub fn write(&self, path: &Path) {
        std::fs::write(path, self.bytes()).unwrap();
    }
}

fn string(out: &mut Vec<u8>, s: &[u8]) {
    out.extend((s.len() as u64).to_le_bytes());
    out.extend(s);
}

/// GGUF's value type id of `v`.
pub fn type_id(v: &Value) -> u32 {
    match v {
        Value::U8(_) => 0,
        Value::I8(_) => 1,
        Value::U16(_) => 2,
        Value::I16(_) => 3,
        Value::U32(_) => 4,
        Value::I32(_) => 5,
        Value::F32(_) => 6,
        Value::Bool(_) => 7,
        Value::String(_) => 8,
        Value::Array(_) => 9,
        Value::U64(_) => 10,
        Value::I64(_) => 11,
        Value::F64(_) => 12,
    }
}

/// `v` without its type id; an array's element type is its first element's (UINT8 if empty).
fn encode(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::U8(x) => out.push(*x),
        Value::I8(x) => out.extend(x.to_le_bytes()),
        Value::U16(x) => out.extend(x.to_le_bytes()),
        Value::I16(x) => out.extend(x.to_le_bytes()),
        Value::U32(x) => out.extend(x.to_le_bytes()),
        Value::I32(x) => out.extend(x.to_le_bytes()),
        Value::U64(x) => out.extend(x.to_le_bytes()),
        Value::I64(x) => out.extend(x.to_le_bytes()),
        Value::F32(x) => out.extend(x.to_le_bytes()),
        Value::F64(x) => out.extend(x.to_le_bytes()),
        Value::Bool(x) => out.push(*x as u8),
        Value::String(s) => string(out, s.as_bytes()),
        Value::Array(items) => {
            out.extend(items.first().map_or(0, type_id).to_le_bytes());
            out.extend((items.len() as u64).to_le_bytes());
            for item in items {
                encode(out, item);
            }
        }
    }
}

/// Replaces the first occurrence of `find` in `bytes` with `with` (same length).
pub fn patch(bytes: &mut [u8], find: &[u8], with: &[u8]) {
    assert_eq!(find.len(), with.len());
    let at = bytes
        .windows(find.len())
        .position(|w| w == find)
        .unwrap_or_else(|| panic!("{find:?} not in the file"));
    bytes[at..at + with.len()].copy_from_slice(with);
}

/// The raw blocks of the committed gguf-py fixture of `ty` (tests/fixtures/gguf-quants): finite
/// scales, 64 values for the float types and 4 blocks for the others.
pub fn blocks(ty: GgmlType) -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/gguf-quants")
        .join(format!("{}.bin", ty.name()));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
