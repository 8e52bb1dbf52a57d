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
    /// [`MXFP4_GROUP`] values of a row; gpt-oss's expert format (and GGUF's MXFP4).
    Mxfp4,
    /// GGUF Q8_0: i8 values, one f16 scale per 32.
    Q8_0,
    /// GGUF Q4_0: 4-bit values offset by 8, one f16 scale per 32.
    Q4_0,
    /// GGUF Q4_1: 4-bit values, an f16 scale and an f16 min per 32.
    Q4_1,
    /// GGUF Q5_0: 5-bit values offset by 16, one f16 scale per 32.
    Q5_0,
    /// GGUF Q5_1: 5-bit values, an f16 scale and an f16 min per 32.
    Q5_1,
    /// GGUF Q4_K: 4-bit values; 6-bit scales and mins per 32 against f16 `d`, `dmin` per 256.
    Q4K,
    /// GGUF Q5_K: as Q4_K with a fifth bit per value.
    Q5K,
    /// GGUF Q6_K: 6-bit values offset by 32; an i8 scale per 16 against an f16 `d` per 256.
    Q6K,
}

impl WeightFormat {
    /// Every format: our own from widest to narrowest, then GGUF's ([`Self::GGUF`]).
    pub const ALL: [WeightFormat; 14] = [
        Self::F32,
        Self::F16,
        Self::Bf16,
        Self::Int8,
        Self::Int4,
        Self::Mxfp4,
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
    ];

    /// The formats that hold GGUF's quantised types as they are (see
    /// [`GgmlType`](crate::gguf::GgmlType)).
    pub const GGUF: [WeightFormat; 8] = [
        Self::Q8_0,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q5_1,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
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
            Self::Q8_0 => "q8_0",
            Self::Q4_0 => "q4_0",
            Self::Q4_1 => "q4_1",
            Self::Q5_0 => "q5_0",
            Self::Q5_1 => "q5_1",
            Self::Q4K => "q4_k",
            Self::Q5K => "q5_k",
            Self::Q6K => "q6_k",
        }
    }

    /// The format named `f32`, `f16`, `bf16`, `int8`, `int4`, `mxfp4`, `q8_0`, `q4_0`, `q4_1`,
    /// `q5_0`, `q5_1`, `q4_k`, `q5_k` or `q6_k`.
    pub fn parse(name: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|f| f.name() == name)
            .ok_or_else(|| {
                Error::input(format!(
                    "unknown weight format `{name}`; use one of {}",
                    Self::ALL.map(Self::name).join(", ")
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

/// The storage formats of a routed expert's two matrices: gate/up (`[2·inter, hidden]`) and
/// down (`[hidden, inter]`). They differ in llama.cpp's mixed quantisations (Q4_K_M keeps some
/// layers' down in Q6_K); the layers of a model may differ too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ExpertFormat {
    /// Format of the gate/up matrix.
    pub gate_up: WeightFormat,
    /// Format of the down matrix.
    pub down: WeightFormat,
}

impl ExpertFormat {
    /// Both matrices in `format`.
    pub fn uniform(format: WeightFormat) -> Self {
        Self {
            gate_up: format,
            down: format,
        }
    }

    /// Both matrices share one format.
    pub fn is_uniform(self) -> bool {
        self.gate_up == self.down
    }

    /// The name the reports use: `int4`, or gate/up then down as `int4+int8`.
    pub fn name(self) -> String {
        self.to_string()
    }

    /// The formats of a model's MoE layers `moe_layers`, given `formats` by decoder layer: one
    /// name when they are all the same (the first format's for a model without MoE layers),
    /// else each format with its layers, as `int4 (layers 0-1, 3), int4+int8 (layer 2)`.
    pub fn describe_layers(formats: &[ExpertFormat], moe_layers: &[usize]) -> String {
        let mut groups: Vec<(ExpertFormat, Vec<usize>)> = Vec::new();
        for &l in moe_layers {
            let Some(&f) = formats.get(l) else { continue };
            match groups.iter_mut().find(|(g, _)| *g == f) {
                Some((_, ls)) => ls.push(l),
                None => groups.push((f, vec![l])),
            }
        }
        match groups.as_slice() {
            [] => formats.first().map(|f| f.name()).unwrap_or_default(),
            [(f, _)] => f.name(),
            _ => groups
                .iter()
                .map(|(f, ls)| format!("{f} ({})", layer_ranges(ls)))
                .collect::<Vec<_>>()
                .join(", "),
        }
    }
}

/// Ascending layer indices as `layer 2` or `layers 0-1, 3`.
fn layer_ranges(layers: &[usize]) -> String {
    let mut runs: Vec<(usize, usize)> = Vec::new();
    for &l in layers {
        match runs.last_mut() {
            Some((_, end)) if *end + 1 == l => *end = l,
            _ => runs.push((l, l)),
        }
    }
    let runs: Vec<String> = runs
        .iter()
        .map(|&(a, b)| {
            if a == b {
                a.to_string()
            } else {
                format!("{a}-{b}")
            }
        })
        .collect();
    let noun = if layers.len() == 1 { "layer" } else { "layers" };
    format!("{noun} {}", runs.join(", "))
}

/// `int4` when both matrices share it, else gate/up then down: `int4+int8`.
impl std::fmt::Display for ExpertFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.is_uniform() {
            write!(f, "{}", self.gate_up)
        } else {
            write!(f, "{}+{}", self.gate_up, self.down)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expert_formats_are_named_gate_up_then_down_and_layers_by_format() {
        let int4 = ExpertFormat::uniform(WeightFormat::Int4);
        let mixed = ExpertFormat {
            down: WeightFormat::Int8,
            ..int4
        };
        assert_eq!(
            (int4.name(), mixed.name()),
            ("int4".into(), "int4+int8".into())
        );
        let formats = [int4, int4, mixed, int4];
        assert_eq!(ExpertFormat::describe_layers(&formats, &[1, 3]), "int4");
        assert_eq!(ExpertFormat::describe_layers(&formats, &[]), "int4");
        assert_eq!(
            ExpertFormat::describe_layers(&formats, &[0, 1, 2, 3]),
            "int4 (layers 0-1, 3), int4+int8 (layer 2)"
        );
    }
}
