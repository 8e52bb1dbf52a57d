//! Tensor infos checked against their file: type, dims, block size, alignment, and a byte
//! range inside the file that no other tensor shares.

use std::ops::Range;
use std::path::Path;

use super::ggml_type::GgmlType;
use super::parse::RawTensor;
use crate::error::{Error, Result};

/// A tensor of a GGUF file: its name, shape and type. Its bytes are
/// [`GgufFile::tensor_bytes`](super::GgufFile::tensor_bytes).
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's name, e.g. `blk.0.ffn_gate_exps.weight`.
    pub name: String,
    /// The dimensions in ggml order: `dims[0]` (ne0) is the innermost, contiguous axis.
    pub dims: Vec<u64>,
    /// How its values are stored.
    pub ty: GgmlType,
    /// Which part of a split model holds it (0 for a single file).
    pub(super) part: usize,
    /// Its bytes, as absolute offsets in that part.
    pub(super) range: Range<usize>,
}

impl TensorInfo {
    /// The shape outermost first, as safetensors and PyTorch write it: `dims` reversed.
    pub fn shape(&self) -> Vec<usize> {
        // Each dim fits usize: their product was checked to when the file was opened.
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The number of values.
    pub fn elements(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    /// The number of bytes its values take in the file.
    pub fn byte_len(&self) -> usize {
        self.range.len()
    }

    /// Checks `raw`, a tensor info of part `part` (the file `path`, laid out as `layout`),
    /// and places its bytes in that file.
    pub(super) fn new(
        raw: RawTensor,
        part: usize,
        layout: &Layout,
        path: &Path,
    ) -> Result<TensorInfo> {
        let fail = |m: String| Error::tensor(&raw.name, format!("{}: {m}", path.display()));
        let ty = GgmlType::from_id(raw.type_id).map_err(|e| match e {
            Error::InvalidInput(m) => fail(m),
            e => e,
        })?;
        if raw.dims.contains(&0) {
            return Err(fail(format!("dims {:?} have a 0", raw.dims)));
        }
        let elements = raw
            .dims
            .iter()
            .try_fold(1u64, |n, &d| n.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .and_then(|n| usize::try_from(n).ok())
            .ok_or_else(|| fail(format!("dims {:?}: the element count overflows", raw.dims)))?;
        let per_block = ty.block_values();
        if !raw.dims[0].is_multiple_of(per_block as u64) {
            return Err(fail(format!(
                "ne0 = {} is not a multiple of {ty}'s {per_block}-value blocks",
                raw.dims[0]
            )));
        }
        let bytes = (elements / per_block)
            .checked_mul(ty.block_bytes())
            .ok_or_else(|| fail(format!("dims {:?}: the byte size overflows", raw.dims)))?;
        if !raw.offset.is_multiple_of(layout.alignment as u64) {
            return Err(fail(format!(
                "data offset {} is not a multiple of the alignment {}",
                raw.offset, layout.alignment
            )));
        }
        let range = usize::try_from(raw.offset)
            .ok()
            .and_then(|o| layout.data_start.checked_add(o))
            .and_then(|start| Some(start..start.checked_add(bytes)?))
            .filter(|r| r.end <= layout.file_len)
            .ok_or_else(|| {
                fail(format!(
                    "its {bytes} bytes at data offset {} (the data section starts at byte \
                     {}) run past the end of the file ({} bytes)",
                    raw.offset, layout.data_start, layout.file_len
                ))
            })?;
        Ok(TensorInfo {
            name: raw.name,
            dims: raw.dims,
            ty,
            part,
            range,
        })
    }
}

/// Where one file's tensor data may lie.
pub(super) struct Layout {
    pub alignment: usize,
    pub data_start: usize,
    pub file_len: usize,
}

/// Fails when two of one file's tensors share a byte, naming both.
pub(super) fn check_overlaps(tensors: &[TensorInfo], path: &Path) -> Result<()> {
    let mut order: Vec<&TensorInfo> = tensors.iter().collect();
    order.sort_by_key(|t| t.range.start);
    for pair in order.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        if b.range.start < a.range.end {
            return Err(Error::tensor(
                &b.name,
                format!(
                    "{}: its bytes {:?} overlap those of tensor `{}` ({:?})",
                    path.display(),
                    b.range,
                    a.name,
                    a.range
                ),
            ));
        }
    }
    Ok(())
}
