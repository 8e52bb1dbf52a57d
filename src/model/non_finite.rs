//! NaN and infinity in a checkpoint's tensors, counted: what `moe inspect --verify` reports,
//! through the conversion and the scan the loaders refuse them with.

use safetensors::Dtype;
use serde::Serialize;

use crate::error::Result;
use crate::kernels::mxfp4::E8M0_NAN;
use crate::model::checkpoint::{Checkpoint, extend_f32, first_non_finite, float_width};

/// The NaN and infinite values of one tensor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct NonFinite {
    /// Tensor name.
    pub tensor: String,
    /// How many values are NaN or infinite.
    pub count: u64,
    /// Flat index of the first.
    pub first: usize,
    /// The first one's value (NaN for an e8m0 scale of 255).
    pub value: f32,
}

impl Checkpoint {
    /// Reads tensor `name` and counts its NaN and infinite values: F32, F16 and BF16 value by
    /// value, the U8 `*_scales` of MXFP4 for the e8m0 NaN (255); other dtypes hold none.
    /// `None` when every value is finite.
    pub fn non_finite(&self, name: &str) -> Result<Option<NonFinite>> {
        const CHUNK: usize = 4096;
        let dtype = self.entry(name)?.dtype;
        let raw = self.bytes(name)?;
        let found = |count: u64, first: usize, value: f32| NonFinite {
            tensor: name.to_string(),
            count,
            first,
            value,
        };
        if dtype == Dtype::U8 && name.ends_with("_scales") {
            let count = raw.iter().filter(|&&b| b == E8M0_NAN).count() as u64;
            let first = raw.iter().position(|&b| b == E8M0_NAN);
            return Ok(first.map(|i| found(count, i, f32::NAN)));
        }
        let Ok(width) = float_width(name, dtype) else {
            return Ok(None);
        };
        let mut result: Option<NonFinite> = None;
        let mut values = Vec::with_capacity(CHUNK);
        for (c, part) in raw.chunks(CHUNK * width).enumerate() {
            values.clear();
            extend_f32(dtype, width, part, &mut values);
            let Some(i) = first_non_finite(&values) else {
                continue;
            };
            let count = values[i..].iter().filter(|v| !v.is_finite()).count() as u64;
            match result.as_mut() {
                Some(r) => r.count += count,
                None => result = Some(found(count, c * CHUNK + i, values[i])),
            }
        }
        Ok(result)
    }
}
