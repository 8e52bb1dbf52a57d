//! The GGUF header of one file: magic, version, metadata and tensor infos.
//!
//! Every count and length is checked against the bytes left in the file before anything is
//! allocated for it, so a corrupt header ends in an error naming the key or tensor it was
//! reading, never in a huge allocation or a panic.

use std::collections::HashSet;
use std::path::Path;

use super::value::{Value, id, min_size};
use crate::error::{Error, Result};

/// The alignment of the data section and of every tensor in it when `general.alignment` is
/// absent.
const DEFAULT_ALIGNMENT: usize = 32;
/// The metadata key that sets the alignment.
pub(super) const ALIGNMENT_KEY: &str = "general.alignment";
/// The most dimensions a tensor may have (ggml's `GGML_MAX_DIMS`).
const MAX_DIMS: u32 = 4;
/// How deep arrays may nest; the format allows nesting, and the limit keeps a hostile file
/// from recursing until the stack overflows.
const MAX_NESTING: usize = 8;
/// The fewest bytes a metadata entry takes: an empty key, a type, a one-byte value.
const MIN_KV_BYTES: usize = 8 + 4 + 1;
/// The fewest bytes a tensor info takes: an empty name, n_dims, one dim, type and offset.
const MIN_TENSOR_BYTES: usize = 8 + 4 + 8 + 4 + 8;

/// One file's header, parsed but not yet checked against the data section.
pub(super) struct Header {
    pub version: u32,
    pub alignment: usize,
    pub kvs: Vec<(String, Value)>,
    pub tensors: Vec<RawTensor>,
    /// Where the data section starts: the end of the tensor infos, padded to the alignment.
    pub data_start: usize,
}

/// A tensor info as the file states it.
pub(super) struct RawTensor {
    pub name: String,
    /// ggml order: `dims[0]` is the innermost (contiguous) axis.
    pub dims: Vec<u64>,
    pub type_id: u32,
    /// Relative to the data section.
    pub offset: u64,
}

/// Parses the header of the GGUF file `bytes`, read from `path`.
pub(super) fn header(bytes: &[u8], path: &Path) -> Result<Header> {
    let gguf = |message: String| Error::Gguf {
        path: path.to_path_buf(),
        message,
    };
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.take(4).map_err(gguf)?;
    if magic != b"GGUF" {
        return Err(gguf(format!(
            "the file starts with {magic:02x?}, not the magic `GGUF`"
        )));
    }
    let version = c.u32().map_err(gguf)?;
    check_version(version).map_err(gguf)?;
    let n_tensors = c.count("tensor", MIN_TENSOR_BYTES).map_err(gguf)?;
    let n_kv = c.count("metadata", MIN_KV_BYTES).map_err(gguf)?;
    let kvs = read_kvs(&mut c, n_kv, path)?;
    let alignment = alignment(&kvs, path)?;
    let tensors = (0..n_tensors)
        .map(|i| read_tensor(&mut c, i, path))
        .collect::<Result<Vec<_>>>()?;
    let data_start = c
        .pos
        .checked_next_multiple_of(alignment)
        .ok_or_else(|| gguf("the data section's offset overflows".into()))?;
    Ok(Header {
        version,
        alignment,
        kvs,
        tensors,
        data_start,
    })
}

/// Version 3 is current; version 2 has the same layout (64-bit counts). A version that
/// reads byte-swapped is a big-endian file.
fn check_version(version: u32) -> std::result::Result<(), String> {
    match version {
        2 | 3 => Ok(()),
        1 => Err("version 1 (32-bit counts) is not supported; \
                  convert the model again with a current llama.cpp"
            .into()),
        v if matches!(v.swap_bytes(), 1..=3) => Err(format!(
            "the version reads as {v:#010x}, a byte-swapped {}: this is a big-endian GGUF \
             file, and only little-endian files are supported",
            v.swap_bytes()
        )),
        v => Err(format!(
            "unsupported version {v}; versions 2 and 3 are supported"
        )),
    }
}

fn read_kvs(c: &mut Cursor, n_kv: usize, path: &Path) -> Result<Vec<(String, Value)>> {
    let mut kvs = Vec::with_capacity(n_kv);
    let mut seen = HashSet::with_capacity(n_kv);
    for i in 0..n_kv {
        let key = c.string().map_err(|m| Error::Gguf {
            path: path.to_path_buf(),
            message: format!("metadata entry {i}'s key: {m}"),
        })?;
        let at_key = |message: String| Error::GgufKey {
            path: path.to_path_buf(),
            key: key.clone(),
            message,
        };
        if !seen.insert(key.clone()) {
            return Err(at_key("appears twice in the metadata".into()));
        }
        let ty = c.u32().map_err(at_key)?;
        let value = c.value(ty, 0).map_err(at_key)?;
        kvs.push((key, value));
    }
    Ok(kvs)
}

/// `general.alignment`: a UINT32 power of two, as llama.cpp's gguf.cpp requires.
fn alignment(kvs: &[(String, Value)], path: &Path) -> Result<usize> {
    let fail = |message: String| Error::GgufKey {
        path: path.to_path_buf(),
        key: ALIGNMENT_KEY.into(),
        message,
    };
    match kvs.iter().find(|(k, _)| k == ALIGNMENT_KEY).map(|(_, v)| v) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(&Value::U32(a)) if a.is_power_of_two() => Ok(a as usize),
        Some(Value::U32(a)) => Err(fail(format!("{a} is not a power of two"))),
        Some(v) => Err(fail(format!("must be UINT32, found {}", v.type_name()))),
    }
}

fn read_tensor(c: &mut Cursor, i: usize, path: &Path) -> Result<RawTensor> {
    let name = c.string().map_err(|m| Error::Gguf {
        path: path.to_path_buf(),
        message: format!("tensor info {i}'s name: {m}"),
    })?;
    let at = |m: String| Error::tensor(&name, format!("{}: {m}", path.display()));
    let n_dims = c.u32().map_err(at)?;
    if n_dims == 0 || n_dims > MAX_DIMS {
        return Err(at(format!(
            "{n_dims} dimensions; GGUF tensors have 1 to {MAX_DIMS}"
        )));
    }
    let dims = (0..n_dims)
        .map(|_| c.u64())
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(at)?;
    let type_id = c.u32().map_err(at)?;
    let offset = c.u64().map_err(at)?;
    Ok(RawTensor {
        name,
        dims,
        type_id,
        offset,
    })
}

/// A read position in a file's bytes. Errors are messages; the caller adds the key or tensor.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type Read<T> = std::result::Result<T, String>;

impl<'a> Cursor<'a> {
    fn left(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if n > self.left() {
            return Err(format!(
                "truncated: {n} bytes needed at offset {}, the file has {} bytes",
                self.pos,
                self.bytes.len()
            ));
        }
        let out = &self.bytes[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        let mut out = [0; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u32(&mut self) -> Read<u32> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Read<u64> {
        self.array().map(u64::from_le_bytes)
    }

    /// A u64 count of things at least `min_bytes` each, which the bytes left must hold.
    fn count(&mut self, what: &str, min_bytes: usize) -> Read<usize> {
        let n = self.u64()?;
        let fits = self.left() / min_bytes;
        if n > fits as u64 {
            return Err(format!(
                "{what} count {n} is larger than the {} bytes left can hold \
                 (at least {min_bytes} bytes each)",
                self.left()
            ));
        }
        Ok(n as usize)
    }

    fn string(&mut self) -> Read<String> {
        let len = self.u64()?;
        if len > self.left() as u64 {
            return Err(format!(
                "string length {len} is larger than the {} bytes left",
                self.left()
            ));
        }
        let bytes = self.take(len as usize)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| {
            format!(
                "not valid UTF-8: {:?}",
                String::from_utf8_lossy(&bytes[..bytes.len().min(64)])
            )
        })
    }

    fn value(&mut self, ty: u32, depth: usize) -> Read<Value> {
        Ok(match ty {
            id::U8 => Value::U8(self.array::<1>()?[0]),
            id::I8 => Value::I8(i8::from_le_bytes(self.array()?)),
            id::U16 => Value::U16(u16::from_le_bytes(self.array()?)),
            id::I16 => Value::I16(i16::from_le_bytes(self.array()?)),
            id::U32 => Value::U32(self.u32()?),
            id::I32 => Value::I32(i32::from_le_bytes(self.array()?)),
            id::U64 => Value::U64(self.u64()?),
            id::I64 => Value::I64(i64::from_le_bytes(self.array()?)),
            id::F32 => Value::F32(f32::from_le_bytes(self.array()?)),
            id::F64 => Value::F64(f64::from_le_bytes(self.array()?)),
            id::BOOL => match self.array::<1>()?[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("bool byte is {b}, not 0 or 1")),
            },
            id::STRING => Value::String(self.string()?),
            id::ARRAY => self.array_value(depth)?,
            _ => return Err(format!("unknown value type {ty} (types are 0 to 12)")),
        })
    }

    fn array_value(&mut self, depth: usize) -> Read<Value> {
        if depth >= MAX_NESTING {
            return Err(format!("arrays nested more than {MAX_NESTING} deep"));
        }
        let ty = self.u32()?;
        let min = min_size(ty)
            .ok_or_else(|| format!("unknown array element type {ty} (types are 0 to 12)"))?;
        let n = self.count("array element", min)?;
        let mut items = Vec::with_capacity(n);
        for _ in 0..n {
            items.push(self.value(ty, depth + 1)?);
        }
        Ok(Value::Array(items))
    }
}
