//! A GGUF model, one file or every part of a split one, memory-mapped, its header checked, its
//! tensors' bytes borrowed straight from the mapping.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use super::ggml_type::dequantize;
use super::parse::{self, Header};
use super::split;
use super::tensor::{self, Layout, TensorInfo};
use super::value::Value;
use crate::error::{Error, Result};

/// An opened GGUF model: the metadata of its (first) file and the tensors of all its parts.
///
/// ```no_run
/// use moe_gpu::gguf::GgufFile;
///
/// let gguf = GgufFile::open("model-00001-of-00002.gguf".as_ref())?;
/// let experts = gguf.u64("qwen3moe.expert_count")?;
/// let gate = gguf.tensor("blk.0.ffn_gate_exps.weight")?;
/// println!("{experts} experts, gate {:?} in {}", gate.shape(), gate.ty);
/// let expert_3 = gguf.expert_bytes("blk.0.ffn_gate_exps.weight", 3)?;
/// # let _ = expert_3;
/// # Ok::<(), moe_gpu::Error>(())
/// ```
pub struct GgufFile {
    parts: Vec<Part>,
    version: u32,
    alignment: usize,
    pub(super) kvs: Vec<(String, Value)>,
    pub(super) kv_index: HashMap<String, usize>,
    tensors: Vec<TensorInfo>,
    tensor_index: HashMap<String, usize>,
}

/// One mapped file.
struct Part {
    path: PathBuf,
    map: Mmap,
}

impl GgufFile {
    /// Opens `path`, or, when it is named `NAME-0000I-of-0000N.gguf`, every part of that
    /// split model, and checks every header.
    pub fn open(path: &Path) -> Result<Self> {
        let paths = split::part_paths(path)?;
        let mut parts = Vec::with_capacity(paths.len());
        let mut headers = Vec::with_capacity(paths.len());
        for path in paths {
            let map = map(&path)?;
            headers.push(parse::header(&map, &path)?);
            parts.push(Part { path, map });
        }
        let found: Vec<split::Part> = parts
            .iter()
            .zip(&headers)
            .map(|(p, h)| split::Part {
                path: &p.path,
                kvs: &h.kvs,
                tensors: h.tensors.len(),
            })
            .collect();
        split::check(&found)?;
        let (mut tensors, mut tensor_index) = (Vec::new(), HashMap::new());
        let mut first = None;
        for (i, (part, header)) in parts.iter().zip(headers).enumerate() {
            let Header {
                version,
                alignment,
                kvs,
                tensors: raw,
                data_start,
            } = header;
            let layout = Layout {
                alignment,
                data_start,
                file_len: part.map.len(),
            };
            let placed = raw
                .into_iter()
                .map(|t| TensorInfo::new(t, i, &layout, &part.path))
                .collect::<Result<Vec<_>>>()?;
            tensor::check_overlaps(&placed, &part.path)?;
            for t in placed {
                if let Some(&j) = tensor_index.get(&t.name) {
                    let other: &TensorInfo = &tensors[j];
                    return Err(Error::tensor(
                        &t.name,
                        format!(
                            "appears twice: in {} and in {}",
                            parts[other.part].path.display(),
                            part.path.display()
                        ),
                    ));
                }
                tensor_index.insert(t.name.clone(), tensors.len());
                tensors.push(t);
            }
            first.get_or_insert((version, alignment, kvs));
        }
        let (version, alignment, kvs) = first.ok_or_else(|| Error::Gguf {
            path: path.to_path_buf(),
            message: "no parts".into(),
        })?;
        let kv_index = kvs
            .iter()
            .enumerate()
            .map(|(i, (k, _))| (k.clone(), i))
            .collect();
        Ok(GgufFile {
            parts,
            version,
            alignment,
            kvs,
            kv_index,
            tensors,
            tensor_index,
        })
    }

    /// The files opened, in part order.
    pub fn paths(&self) -> Vec<&Path> {
        self.parts.iter().map(|p| p.path.as_path()).collect()
    }

    /// The GGUF version of the (first) file: 2 or 3.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The data alignment of the (first) file, in bytes.
    pub fn alignment(&self) -> usize {
        self.alignment
    }

    /// The first file's path, for error messages.
    pub(super) fn path(&self) -> &Path {
        &self.parts[0].path
    }

    /// The tensor `name`; missing, an error naming it and the file.
    pub fn tensor(&self, name: &str) -> Result<&TensorInfo> {
        self.tensor_index
            .get(name)
            .map(|&i| &self.tensors[i])
            .ok_or_else(|| {
                let parts = match self.parts.len() {
                    1 => String::new(),
                    n => format!(" or its other {} parts", n - 1),
                };
                Error::tensor(name, format!("not in {}{parts}", self.path().display()))
            })
    }

    /// Every tensor, in file (and part) order.
    pub fn tensors(&self) -> impl Iterator<Item = &TensorInfo> {
        self.tensors.iter()
    }

    /// Whether the model has a tensor `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensor_index.contains_key(name)
    }

    /// The bytes of tensor `name`, as stored (blocks of its type).
    pub fn tensor_bytes(&self, name: &str) -> Result<&[u8]> {
        let t = self.tensor(name)?;
        Ok(&self.parts[t.part].map[t.range.clone()])
    }

    /// Tensor `name` decoded to f32 by [`dequantize`]; a NaN or infinite value is an error
    /// naming the tensor and the value's flat index.
    pub fn tensor_f32(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.tensor(name)?;
        let values = dequantize(t.ty, self.tensor_bytes(name)?, t.elements())
            .map_err(|e| Error::tensor(name, e.to_string()))?;
        match values.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(Error::tensor(
                name,
                format!(
                    "value {i} (flat index) is {}; weights must be finite",
                    values[i]
                ),
            )),
            None => Ok(values),
        }
    }

    /// The bytes of expert `expert` of an expert tensor `[experts, rows, k]`, or `[experts, n]`
    /// for biases (outermost first): slice `expert` of its outermost axis.
    pub fn expert_bytes(&self, name: &str, expert: usize) -> Result<&[u8]> {
        let t = self.tensor(name)?;
        let (&[_, experts] | &[_, _, experts]) = t.dims.as_slice() else {
            return Err(Error::tensor(
                name,
                format!(
                    "expert slices need a [experts, rows, k] or [experts, n] tensor; its shape \
                     is {:?}",
                    t.shape()
                ),
            ));
        };
        let experts = experts as usize;
        if expert >= experts {
            return Err(Error::tensor(
                name,
                format!("expert {expert} is out of range: the tensor holds {experts}"),
            ));
        }
        // Each expert is whole rows, and each row whole blocks (ne0 is a multiple of the block).
        let per_expert = t.byte_len() / experts;
        let bytes = self.tensor_bytes(name)?;
        Ok(&bytes[expert * per_expert..(expert + 1) * per_expert])
    }
}

/// The files, version and counts; not the metadata values, which can be megabytes.
impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("paths", &self.paths())
            .field("version", &self.version)
            .field("alignment", &self.alignment)
            .field("keys", &self.kvs.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

fn map(path: &Path) -> Result<Mmap> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let meta = file.metadata().map_err(|e| Error::io(path, e))?;
    if !meta.is_file() || meta.len() == 0 {
        return Err(Error::Gguf {
            path: path.to_path_buf(),
            message: "not a regular, non-empty file".into(),
        });
    }
    // Safety: the mapping is read-only; a model modified while mapped is the caller's
    // problem, as with every mmap-based loader.
    unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gguf_file_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<GgufFile>();
    }
}
