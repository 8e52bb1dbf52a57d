//! GGUF tensor types ([`GgmlType`]: ids, block sizes) and [`dequantize`], their CPU reference
//! decoder over whole tensors.

use super::{blocks, kquants};
use crate::error::{Error, Result};

/// A GGUF tensor type, numbered as in ggml.h's `ggml_type`.
// The variants are spelled as ggml and GGUF files spell them, `Q4_K` included.
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GgmlType {
    /// One little-endian f32 per value.
    F32,
    /// One little-endian IEEE f16 per value.
    F16,
    /// One little-endian bfloat16 per value (the top half of an f32).
    BF16,
    /// 32 values in 34 bytes: f16 `d`, then 32 `i8` `q`; `x = q * d`.
    Q8_0,
    /// 32 values in 18 bytes: f16 `d`, then 16 bytes of nibbles (value `i` in the low nibble
    /// of byte `i`, value `i + 16` in its high nibble); `x = d * (q - 8)`.
    Q4_0,
    /// 32 values in 20 bytes: f16 `d`, f16 `m`, then nibbles as in Q4_0; `x = d * q + m`.
    Q4_1,
    /// 32 values in 22 bytes: f16 `d`, a little-endian u32 `qh` whose bit `i` is value `i`'s
    /// fifth bit, then nibbles as in Q4_0; `x = d * (q - 16)`.
    Q5_0,
    /// 32 values in 24 bytes: f16 `d`, f16 `m`, `qh` and nibbles as in Q5_0; `x = d * q + m`.
    Q5_1,
    /// 256 values in 144 bytes: f16 `d`, f16 `dmin`, 12 bytes of eight 6-bit scales and mins,
    /// then 128 bytes of nibbles; sub-block `j` of 32 is `x = d * sc[j] * q - dmin * m[j]`.
    Q4_K,
    /// 256 values in 176 bytes: as Q4_K, with 32 bytes `qh` (bit `j` of byte `l` is the fifth
    /// bit of value `l` of sub-block `j`) before the nibbles.
    Q5_K,
    /// 256 values in 210 bytes: 128 bytes low nibbles `ql`, 64 bytes 2-bit highs `qh`, 16
    /// `i8` scales, f16 `d`; sub-block `j` of 16 is `x = d * sc[j] * (q - 32)`.
    Q6_K,
    /// 32 values in 17 bytes: an e8m0 exponent byte `e`, then nibbles as in Q4_0, each an
    /// e2m1 code; `x = 2^(e - 128) * kvalues[q]` with e2m1 values doubled in `kvalues`.
    MXFP4,
}

impl GgmlType {
    /// Every type this module decodes.
    pub const ALL: [GgmlType; 12] = [
        GgmlType::F32,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::Q8_0,
        GgmlType::Q4_0,
        GgmlType::Q4_1,
        GgmlType::Q5_0,
        GgmlType::Q5_1,
        GgmlType::Q4_K,
        GgmlType::Q5_K,
        GgmlType::Q6_K,
        GgmlType::MXFP4,
    ];

    /// The type's id in GGUF files (ggml.h's `ggml_type`).
    pub fn id(self) -> u32 {
        match self {
            GgmlType::F32 => 0,
            GgmlType::F16 => 1,
            GgmlType::Q4_0 => 2,
            GgmlType::Q4_1 => 3,
            GgmlType::Q5_0 => 6,
            GgmlType::Q5_1 => 7,
            GgmlType::Q8_0 => 8,
            GgmlType::Q4_K => 12,
            GgmlType::Q5_K => 13,
            GgmlType::Q6_K => 14,
            GgmlType::BF16 => 30,
            GgmlType::MXFP4 => 39,
        }
    }

    /// The type with GGUF id `id`; an id we do not decode is an error naming it.
    pub fn from_id(id: u32) -> Result<Self> {
        Self::ALL.into_iter().find(|t| t.id() == id).ok_or_else(|| {
            Error::input(format!(
                "unsupported GGUF tensor type id {id}; supported: {}",
                Self::ALL
                    .map(|t| format!("{} ({})", t.name(), t.id()))
                    .join(", ")
            ))
        })
    }

    /// The type's name as ggml and gguf-py spell it (`Q4_K`, `MXFP4`).
    pub fn name(self) -> &'static str {
        match self {
            GgmlType::F32 => "F32",
            GgmlType::F16 => "F16",
            GgmlType::BF16 => "BF16",
            GgmlType::Q8_0 => "Q8_0",
            GgmlType::Q4_0 => "Q4_0",
            GgmlType::Q4_1 => "Q4_1",
            GgmlType::Q5_0 => "Q5_0",
            GgmlType::Q5_1 => "Q5_1",
            GgmlType::Q4_K => "Q4_K",
            GgmlType::Q5_K => "Q5_K",
            GgmlType::Q6_K => "Q6_K",
            GgmlType::MXFP4 => "MXFP4",
        }
    }

    /// Values per block: 1 for the float types, 32 for the legacy quants and MXFP4, 256 for
    /// the K-quants.
    pub fn block_values(self) -> usize {
        match self {
            GgmlType::F32 | GgmlType::F16 | GgmlType::BF16 => 1,
            GgmlType::Q4_K | GgmlType::Q5_K | GgmlType::Q6_K => kquants::QK_K,
            _ => blocks::QK,
        }
    }

    /// Bytes per block.
    pub fn block_bytes(self) -> usize {
        match self {
            GgmlType::F32 => 4,
            GgmlType::F16 | GgmlType::BF16 => 2,
            GgmlType::Q8_0 => 34,
            GgmlType::Q4_0 => 18,
            GgmlType::Q4_1 => 20,
            GgmlType::Q5_0 => 22,
            GgmlType::Q5_1 => 24,
            GgmlType::Q4_K => 144,
            GgmlType::Q5_K => 176,
            GgmlType::Q6_K => 210,
            GgmlType::MXFP4 => 17,
        }
    }

    /// Byte offsets, in one block, of its f16 scales (`d`, and `m` or `dmin`); none for the
    /// float types and MXFP4, whose scale is an e8m0 byte.
    pub fn f16_scale_offsets(self) -> &'static [usize] {
        match self {
            GgmlType::Q8_0 | GgmlType::Q4_0 | GgmlType::Q5_0 => &[0],
            GgmlType::Q4_1 | GgmlType::Q5_1 | GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
            GgmlType::Q6_K => &[208],
            _ => &[],
        }
    }

    /// The block decoder: one block's bytes in, `block_values` f32 out.
    fn decoder(self) -> fn(&[u8], &mut [f32]) {
        match self {
            GgmlType::F32 => blocks::f32,
            GgmlType::F16 => blocks::f16,
            GgmlType::BF16 => blocks::bf16,
            GgmlType::Q8_0 => blocks::q8_0,
            GgmlType::Q4_0 => blocks::q4_0,
            GgmlType::Q4_1 => blocks::q4_1,
            GgmlType::Q5_0 => blocks::q5_0,
            GgmlType::Q5_1 => blocks::q5_1,
            GgmlType::Q4_K => kquants::q4_k,
            GgmlType::Q5_K => kquants::q5_k,
            GgmlType::Q6_K => kquants::q6_k,
            GgmlType::MXFP4 => blocks::mxfp4,
        }
    }
}

impl std::fmt::Display for GgmlType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Decodes `values` values of type `ty` from `bytes`, exactly as gguf-py's
/// `gguf.quants.dequantize` does.
///
/// `values` must be a whole number of blocks and `bytes` exactly that many blocks long;
/// anything else is an error.
pub fn dequantize(ty: GgmlType, bytes: &[u8], values: usize) -> Result<Vec<f32>> {
    let per_block = ty.block_values();
    if !values.is_multiple_of(per_block) {
        return Err(Error::input(format!(
            "{ty}: {values} values is not a whole number of {per_block}-value blocks"
        )));
    }
    let blocks = values / per_block;
    let expected = blocks.checked_mul(ty.block_bytes());
    if expected != Some(bytes.len()) {
        return Err(Error::input(format!(
            "{ty}: {values} values ({blocks} blocks of {} bytes) need {} bytes, got {}",
            ty.block_bytes(),
            expected.map_or_else(|| "more than usize::MAX".into(), |n| n.to_string()),
            bytes.len()
        )));
    }
    let decode = ty.decoder();
    let mut out = vec![0f32; values];
    for (block, dst) in bytes
        .chunks_exact(ty.block_bytes())
        .zip(out.chunks_exact_mut(per_block))
    {
        decode(block, dst);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for ty in GgmlType::ALL {
            assert_eq!(GgmlType::from_id(ty.id()).unwrap(), ty);
        }
    }

    #[test]
    fn unknown_id_is_named() {
        let err = GgmlType::from_id(10).unwrap_err().to_string();
        assert!(err.contains("type id 10"), "{err}");
    }

    #[test]
    fn bad_lengths_are_errors() {
        assert!(dequantize(GgmlType::Q4_K, &[0; 144], 128).is_err());
        assert!(dequantize(GgmlType::Q4_0, &[0; 17], 32).is_err());
        assert!(dequantize(GgmlType::F32, &[0; 8], 3).is_err());
        assert_eq!(
            dequantize(GgmlType::Q4_0, &[], 0).unwrap(),
            Vec::<f32>::new()
        );
    }
}
