//! Checked reads of a checkpoint's tensors without converting all of them: shape and dtype
//! checks, and slices along the first axis.

use safetensors::Dtype;

use super::checkpoint::{Checkpoint, float_width, to_f32_from};
use crate::error::{Error, Result};

impl Checkpoint {
    /// Checks that `name` exists with exactly `shape` and a floating-point dtype, without reading it.
    pub fn expect(&self, name: &str, shape: &[usize]) -> Result<()> {
        let e = self.entry(name)?;
        if e.shape != shape {
            return Err(Error::tensor(
                name,
                format!("has shape {:?}, expected {:?}", e.shape, shape),
            ));
        }
        float_width(name, e.dtype).map(|_| ())
    }

    /// Checks that `name` exists as a U8 tensor of exactly `shape`, without reading it.
    pub fn expect_u8(&self, name: &str, shape: &[usize]) -> Result<()> {
        let e = self.entry(name)?;
        if e.shape != shape || e.dtype != Dtype::U8 {
            return Err(Error::tensor(
                name,
                format!("is {:?} {:?}, expected U8 {:?}", e.dtype, e.shape, shape),
            ));
        }
        Ok(())
    }

    /// Slice `index` along the first axis of a floating-point tensor, converted to f32.
    pub fn f32_slice(&self, name: &str, index: usize) -> Result<Vec<f32>> {
        let e = self.entry(name)?;
        let (rows, per) = split_first(name, &e.shape)?;
        if index >= rows {
            return Err(Error::tensor(
                name,
                format!("has {rows} slices, asked for {index}"),
            ));
        }
        if e.gguf.is_some() {
            let all = self.f32_any(name)?;
            return Ok(all[index * per..(index + 1) * per].to_vec());
        }
        let width = e.dtype.bitsize() / 8;
        let raw = self.bytes(name)?;
        to_f32_from(
            name,
            e.dtype,
            &raw[index * per * width..(index + 1) * per * width],
            index * per,
        )
    }

    /// Slice `index` along the first axis of a U8 tensor.
    pub fn u8_slice(&self, name: &str, index: usize) -> Result<&[u8]> {
        let e = self.entry(name)?;
        if e.dtype != Dtype::U8 {
            return Err(Error::tensor(
                name,
                format!("has dtype {:?}, expected U8", e.dtype),
            ));
        }
        let (rows, per) = split_first(name, &e.shape)?;
        if index >= rows {
            return Err(Error::tensor(
                name,
                format!("has {rows} slices, asked for {index}"),
            ));
        }
        Ok(&self.bytes(name)?[index * per..(index + 1) * per])
    }
}

fn split_first(name: &str, shape: &[usize]) -> Result<(usize, usize)> {
    match shape.split_first() {
        Some((rows, rest)) => Ok((*rows, rest.iter().product())),
        None => Err(Error::tensor(
            name,
            "is a scalar, expected at least one axis",
        )),
    }
}
