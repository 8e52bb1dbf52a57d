//! Reading and writing safetensors files for the CLI.

use std::path::Path;

use anyhow::Result;
use safetensors::{Dtype, tensor::TensorView};

/// A tensor to write: name, dtype, shape and little-endian bytes.
pub struct OutTensor {
    pub name: String,
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl OutTensor {
    pub fn f32(name: &str, shape: Vec<usize>, v: &[f32]) -> Self {
        Self {
            name: name.to_string(),
            dtype: Dtype::F32,
            shape,
            data: bytemuck::cast_slice(v).to_vec(),
        }
    }

    pub fn i64(name: &str, shape: Vec<usize>, v: &[i64]) -> Self {
        Self {
            name: name.to_string(),
            dtype: Dtype::I64,
            shape,
            data: bytemuck::cast_slice(v).to_vec(),
        }
    }
}

pub fn write_safetensors(path: &Path, tensors: &[OutTensor]) -> Result<()> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|t| {
            Ok((
                t.name.clone(),
                TensorView::new(t.dtype, t.shape.clone(), &t.data)?,
            ))
        })
        .collect::<Result<_>>()?;
    Ok(moe_gpu::model::safetensors_file::write_safetensors(
        views, None, path,
    )?)
}
