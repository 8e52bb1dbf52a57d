//! CPU expert kernels: the routed experts a step misses on the GPU, computed on the CPU from
//! their packed host copies while the GPU computes the resident ones, where that beats
//! uploading them.
//!
//! The weights stay in their GPU formats ([`weight_packing`](crate::kernels::weight_packing)):
//! each row is decoded once with [`WeightFormat::decode_row`](crate::spec::weight_format::WeightFormat::decode_row)
//! into the same f32 numbers the GPU computes with (the hot formats block by block straight into
//! registers, [`block`]) and dotted with every token, a few tokens a pass, with AVX2 and FMA
//! where the CPU has them ([`isa`]). Every output is one row·token dot product summed in a
//! fixed order by one task ([`kernel`]), so the results depend neither on the number of threads
//! nor on the number of tokens.

#[cfg(target_arch = "x86_64")]
mod avx2;
mod block;
mod dispatch;
pub mod expert;
mod isa;
mod kernel;
pub mod matmul;
mod packed;

pub use expert::CpuExperts;
pub use matmul::matmul;
pub use packed::PackedMatrix;
