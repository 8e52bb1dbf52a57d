//! Plain CPU versions of every kernel and of whole layers: the oracle the GPU is tested against.
//! Each file has the name of the kernel (`kernels/`) or spec (`spec/`) it mirrors.
//! Written for clarity, in f64 where it helps, and independent of the shaders' structure.

pub mod attention;
pub mod linear;
pub mod moe;
pub mod norm;
pub mod rope;
pub mod routing;

pub use attention::{AttentionInput, attention};
pub use linear::{glu_mlp, linear};
pub use moe::{RefMoeOutput, moe_block, permutation};
pub use norm::rms_norm;
pub use rope::rotate;
pub use routing::route;
