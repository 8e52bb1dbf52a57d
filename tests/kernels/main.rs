//! The `kernels` test binary: each GPU kernel against `src/reference` over shape sweeps, every
//! matmul tiling, the error of f16 and quantised weights, rope tables, the device seam, GPU
//! faults as errors; and one table-driven harness over every op, shape and weight format
//! (ops.rs).

#[path = "../common/mod.rs"]
mod common;

mod attention_sequences;
mod context;
mod cpu_experts;
mod f16_error;
mod gguf_decode;
mod gpu_faults;
mod kernel_attention;
mod kernel_bindings;
mod kernel_decoder;
mod kernel_matmul;
mod kernel_permute;
mod kernel_select;
mod matmul_long_k;
mod matmul_variants;
mod ops;
mod quant_error;
mod rope_tables;
mod select_status;
