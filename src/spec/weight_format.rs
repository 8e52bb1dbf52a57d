//! How weights are stored on the GPU, as plain data: the kernels pack and read each format
//! (`kernels::format`); the reference and the loaders name it.

use crate::error::{Error, Result};

/// Values per int4 scale group: one `vec4<u32>` word, the usual Q4 / GPTQ group size.
pub const INT4_GROUP: usize = 32;

/// Values per MXFP4 scale group (the OCP MX block size): one `vec4<u32>` word, as in int4.
pub const MXFP4_GROUP: usize = 32;

/// How weights are stored on the GPU. Accumulation is f32 in every format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum WeightFormat {
    /// Plain f32.
    F32,
    /// Two halves per u32, unpacked with `unpack2x16float`.
    F16,
    /// Two bfloat16 per u32 (the top half of an f32, so decoding is exact).
    Bf16,
    /// Symmetric int8, one f32 scale per row.
    Int8,
    /// Symmetric int4, one bf16 scale per group of [`INT4_GROUP`] values of a row.
    Int4,
    /// OCP MX FP4: e2m1 values with one e8m0 (power of two) scale per group of
    /// [`MXFP4_GROUP`] values of a row; gpt-oss's expert format.
    Mxfp4,
}

impl WeightFormat {
    /// Every format, from widest to narrowest.
    pub const ALL: [WeightFormat; 6] = [
        Self::F32,
        Self::F16,
        Self::Bf16,
        Self::Int8,
        Self::Int4,
        Self::Mxfp4,
    ];

    /// The name the CLI and the reports use.
    pub fn name(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Int8 => "int8",
            Self::Int4 => "int4",
            Self::Bf16 => "bf16",
            Self::Mxfp4 => "mxfp4",
        }
    }

    /// The format named `f32`, `f16`, `bf16`, `int8`, `int4` or `mxfp4`.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                Error::input(format!(
                    "unknown weight format `{name}`; use f32, f16, bf16, int8, int4 or mxfp4"
                ))
            })
    }
}

impl std::fmt::Display for WeightFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for WeightFormat {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}
