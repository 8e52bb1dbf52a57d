//! Memory-mapped checkpoints: safetensors (one file or a sharded index) or a GGUF file read
//! under Hugging Face names (`checkpoint_gguf`). Tensors are looked up by name, checked for
//! shape and dtype, and converted to f32 only when asked for.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use half::{bf16, f16};
use memmap2::Mmap;
use safetensors::{Dtype, SafeTensors};

use super::gguf_names::GgufView;
use super::safetensors_header::{check_header, shard_files};
use crate::error::{Error, Result};
use crate::gguf::{GgufFile, is_gguf};

/// Where one tensor lives.
#[derive(Debug, Clone)]
pub struct TensorEntry {
    /// Index of the safetensors file holding it.
    pub file: usize,
    /// Element type as stored.
    pub dtype: Dtype,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// Byte range inside the file's mapping.
    pub start: usize,
    /// End of the byte range (exclusive).
    pub end: usize,
    /// In a GGUF checkpoint: how the tensor is read from the file (`dtype` is then F32, the
    /// type it is read as, and the byte range is empty).
    pub gguf: Option<GgufView>,
}

pub(super) struct Shard {
    path: PathBuf,
    map: Mmap,
    /// The file's `__metadata__` (e.g. `format: pt`), kept when rewriting it.
    metadata: Option<HashMap<String, String>>,
}

/// A checkpoint's tensors, memory-mapped; nothing is read until a tensor is asked for.
pub struct Checkpoint {
    /// The checkpoint directory (a GGUF checkpoint: the file).
    pub dir: PathBuf,
    pub(super) shards: Vec<Shard>,
    pub(super) tensors: HashMap<String, TensorEntry>,
    /// The GGUF file the tensors are views of, where the checkpoint is one.
    pub(super) gguf: Option<GgufFile>,
}

impl Checkpoint {
    /// Opens `dir/model.safetensors`, or the shards named by `dir/model.safetensors.index.json`,
    /// or every `*.safetensors` file in `dir`; or `dir` itself where it is a `.gguf` file.
    pub fn open(dir: &Path) -> Result<Self> {
        if is_gguf(dir) {
            return Self::open_gguf(dir);
        }
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        let files: Vec<PathBuf> = if index.is_file() {
            shard_files(&index)?
        } else if single.is_file() {
            vec![single]
        } else {
            let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
                .map_err(|e| Error::io(dir, e))?
                .filter_map(|d| d.ok().map(|d| d.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            found.sort();
            if found.is_empty() {
                return Err(Error::io(
                    &single,
                    std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no .safetensors file in the model directory",
                    ),
                ));
            }
            found
        };
        let mut ckpt = Self {
            dir: dir.to_path_buf(),
            shards: Vec::new(),
            tensors: HashMap::new(),
            gguf: None,
        };
        for f in files {
            ckpt.add_file(&f)?;
        }
        Ok(ckpt)
    }

    /// Opens a single safetensors file.
    pub fn open_file(path: &Path) -> Result<Self> {
        let mut ckpt = Self {
            dir: path.parent().unwrap_or(Path::new(".")).to_path_buf(),
            shards: Vec::new(),
            tensors: HashMap::new(),
            gguf: None,
        };
        ckpt.add_file(path)?;
        Ok(ckpt)
    }

    fn add_file(&mut self, path: &Path) -> Result<()> {
        if path.is_dir() {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                message: "is a directory, not a safetensors file".into(),
            });
        }
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        // Safety: the mapping is read-only; a checkpoint modified while mapped is the caller's
        // problem, as with every mmap-based loader.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
        check_header(path, &map)?;
        let (header, meta) = SafeTensors::read_metadata(&map).map_err(|e| Error::Checkpoint {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        let base = 8 + header;
        let file_index = self.shards.len();
        for (name, info) in meta.tensors() {
            let (s, e) = info.data_offsets;
            if let Some(other) = self.tensors.get(&name) {
                return Err(Error::tensor(
                    name,
                    format!(
                        "is in two shards: {} and {}",
                        self.shards[other.file].path.display(),
                        path.display()
                    ),
                ));
            }
            self.tensors.insert(
                name,
                TensorEntry {
                    file: file_index,
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: base + s,
                    end: base + e,
                    gguf: None,
                },
            );
        }
        self.shards.push(Shard {
            path: path.to_path_buf(),
            map,
            metadata: meta.metadata().clone(),
        });
        Ok(())
    }

    /// The files of the checkpoint, in load order.
    pub fn shard_paths(&self) -> Vec<&Path> {
        match &self.gguf {
            Some(g) => g.paths(),
            None => self.shards.iter().map(|s| s.path.as_path()).collect(),
        }
    }

    /// The `__metadata__` of shard `file`.
    pub fn shard_metadata(&self, file: usize) -> Option<&HashMap<String, String>> {
        self.shards.get(file).and_then(|s| s.metadata.as_ref())
    }

    /// Whether the checkpoint has a tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }

    /// Every tensor name, in no particular order.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(|s| s.as_str())
    }

    /// Where tensor `name` lives; [`crate::Error::Tensor`] if it is missing.
    pub fn entry(&self, name: &str) -> Result<&TensorEntry> {
        self.tensors.get(name).ok_or_else(|| {
            let shards: Vec<String> = self
                .shards
                .iter()
                .map(|s| s.path.display().to_string())
                .collect();
            Error::tensor(
                name,
                format!("is missing from the checkpoint ({})", shards.join(", ")),
            )
        })
    }

    /// The file a tensor lives in.
    pub fn file_of(&self, name: &str) -> Result<&Path> {
        let e = self.entry(name)?;
        match &self.gguf {
            Some(g) => Ok(g.paths()[0]),
            None => Ok(&self.shards[e.file].path),
        }
    }

    /// The raw bytes of a safetensors tensor (a GGUF checkpoint's tensors are read with
    /// [`Self::f32`] or, for experts, [`Self::gguf_block_bytes`]).
    pub fn bytes(&self, name: &str) -> Result<&[u8]> {
        let e = self.entry(name)?;
        if let Some(view) = &e.gguf {
            return Err(Error::tensor(
                name,
                format!(
                    "is GGUF tensor `{}`, which is read as f32 values, not as safetensors bytes",
                    view.tensor()
                ),
            ));
        }
        Ok(&self.shards[e.file].map[e.start..e.end])
    }

    /// The shape of tensor `name`.
    pub fn shape(&self, name: &str) -> Result<&[usize]> {
        Ok(&self.entry(name)?.shape)
    }

    /// A floating-point tensor of exactly `shape`, converted to f32.
    pub fn f32(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>> {
        let e = self.entry(name)?;
        if e.shape != shape {
            return Err(Error::tensor(
                name,
                format!("has shape {:?}, expected {:?}", e.shape, shape),
            ));
        }
        self.f32_any(name)
    }

    /// A floating-point tensor of any shape, converted to f32.
    pub fn f32_any(&self, name: &str) -> Result<Vec<f32>> {
        let e = self.entry(name)?;
        if let Some(view) = &e.gguf {
            return self.gguf_f32(view);
        }
        let raw = self.bytes(name)?;
        to_f32(name, e.dtype, raw)
    }

    /// An integer tensor (I64, I32, U32, U8), widened to i64.
    pub fn i64_any(&self, name: &str) -> Result<Vec<i64>> {
        let e = self.entry(name)?;
        let raw = self.bytes(name)?;
        Ok(match e.dtype {
            Dtype::I64 => raw
                .chunks_exact(8)
                .map(|c| i64::from_le_bytes(c.try_into().unwrap_or_default()))
                .collect(),
            Dtype::I32 => raw
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                .collect(),
            Dtype::U32 => raw
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes(c.try_into().unwrap_or_default()) as i64)
                .collect(),
            Dtype::U8 => raw.iter().map(|v| *v as i64).collect(),
            other => {
                return Err(Error::tensor(
                    name,
                    format!("has dtype {other:?}, expected an integer type"),
                ));
            }
        })
    }
}

/// Converts F32, F16 or BF16 little-endian bytes to f32; a NaN or infinite value is an error
/// naming tensor `name` and the value's index.
pub fn to_f32(name: &str, dtype: Dtype, raw: &[u8]) -> Result<Vec<f32>> {
    to_f32_from(name, dtype, raw, 0)
}

/// [`to_f32`] of the part of a tensor that starts at flat index `first`, which errors count
/// from. Each chunk is checked right after conversion, while it is still in cache: the check
/// costs a few percent of the conversion.
pub(super) fn to_f32_from(name: &str, dtype: Dtype, raw: &[u8], first: usize) -> Result<Vec<f32>> {
    const CHUNK: usize = 4096;
    let width = float_width(name, dtype)?;
    let mut out = Vec::with_capacity(raw.len() / width);
    for part in raw.chunks(CHUNK * width) {
        let done = out.len();
        extend_f32(dtype, width, part, &mut out);
        if let Some(i) = first_non_finite(&out[done..]) {
            return Err(Error::tensor(
                name,
                format!(
                    "value {} (flat index) is {}; weights must be finite",
                    first + done + i,
                    out[done + i]
                ),
            ));
        }
    }
    Ok(out)
}

/// Bytes per value of a floating-point dtype; an error naming tensor `name` for others.
pub(crate) fn float_width(name: &str, dtype: Dtype) -> Result<usize> {
    match dtype {
        Dtype::F32 => Ok(4),
        Dtype::F16 | Dtype::BF16 => Ok(2),
        other => Err(Error::tensor(
            name,
            format!("has dtype {other:?}; F32, F16 and BF16 are supported"),
        )),
    }
}

/// Appends the values of `part` (whole values of `width` bytes of `dtype`) to `out` as f32.
pub(crate) fn extend_f32(dtype: Dtype, width: usize, part: &[u8], out: &mut Vec<f32>) {
    let words = part.chunks_exact(width);
    match dtype {
        Dtype::F32 => out.extend(words.map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))),
        Dtype::F16 => out.extend(words.map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())),
        _ => out.extend(words.map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())),
    }
}

/// Index of the first NaN or infinity: a branch-free scan (it vectorises), then a search only
/// where it found one.
pub(crate) fn first_non_finite(v: &[f32]) -> Option<usize> {
    if v.iter().fold(false, |a, x| a | !x.is_finite()) {
        v.iter().position(|x| !x.is_finite())
    } else {
        None
    }
}
