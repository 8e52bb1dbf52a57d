//! One tensor a config asks of a checkpoint: name, shape, dtype class, whether it is optional;
//! and the check of a checkpoint's tensor against it.

use crate::error::Result;
use crate::model::checkpoint::Checkpoint;

/// How a tensor's values are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stored {
    /// F32, F16 or BF16.
    Float,
    /// U8 (MXFP4 blocks and scales).
    U8,
}

/// One tensor the config asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedTensor {
    /// Name in the checkpoint.
    pub name: String,
    /// Shape, outermost dimension first.
    pub shape: Vec<usize>,
    /// Dtype class.
    pub stored: Stored,
    /// Loaded when present (projection biases), not required.
    pub optional: bool,
}

impl ExpectedTensor {
    /// A required floating-point tensor.
    pub fn float(name: String, shape: &[usize]) -> Self {
        Self {
            name,
            shape: shape.to_vec(),
            stored: Stored::Float,
            optional: false,
        }
    }

    /// A required U8 tensor.
    pub fn u8(name: String, shape: &[usize]) -> Self {
        Self {
            stored: Stored::U8,
            ..Self::float(name, shape)
        }
    }

    /// Checks the checkpoint's tensor: present (unless optional), of this shape and dtype; the
    /// error names the tensor, its shape and this one.
    pub fn check(&self, ckpt: &Checkpoint) -> Result<()> {
        if self.optional && !ckpt.contains(&self.name) {
            return Ok(());
        }
        match self.stored {
            Stored::Float => ckpt.expect(&self.name, &self.shape),
            Stored::U8 => ckpt.expect_u8(&self.name, &self.shape),
        }
    }
}
