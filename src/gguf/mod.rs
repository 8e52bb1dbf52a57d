//! GGUF, llama.cpp's model format: the file reader ([`GgufFile`]: metadata and tensors,
//! single or split files, memory-mapped), the tensor types with their CPU reference decoders,
//! and the tokenizer a file's metadata describes ([`GgufVocab`]).
//!
//! Each [`GgmlType`] stores a tensor as a run of fixed-size blocks laid out as ggml's
//! `ggml-quants.c` lays them out. [`dequantize`] turns those bytes into f32 values that are
//! bit-identical to what the `gguf` Python package's `gguf.quants.dequantize` returns: the
//! same f16 → f32 conversion, and the same f32 operations in the same order.
//!
//! ```
//! use moe_gpu::gguf::{GgmlType, dequantize};
//!
//! // One Q8_0 block: f16 scale 0.5, then 32 signed bytes.
//! let mut block = vec![0u8; 34];
//! block[..2].copy_from_slice(&half::f16::from_f32(0.5).to_le_bytes());
//! block[2] = 6;
//! let values = dequantize(GgmlType::Q8_0, &block, 32)?;
//! assert_eq!(values[0], 3.0);
//! # Ok::<(), moe_gpu::Error>(())
//! ```

mod blocks;
mod file;
mod ggml_type;
mod kquants;
mod meta;
mod parse;
mod split;
mod tensor;
mod value;
mod vocab;
mod vocab_bpe;
mod vocab_read;
mod vocab_spm;

pub use file::GgufFile;
pub use ggml_type::{GgmlType, dequantize};
pub use tensor::TensorInfo;
pub use value::Value;
pub use vocab::GgufVocab;

/// Whether `path` names a GGUF file (by its extension; the header is checked on opening).
pub fn is_gguf(path: &std::path::Path) -> bool {
    path.extension()
        .is_some_and(|x| x.eq_ignore_ascii_case("gguf"))
        && !path.is_dir()
}
