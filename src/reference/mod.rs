//! Plain CPU versions of every kernel and of whole layers: the oracle the GPU is tested against.
//! Written for clarity, in f64 where it helps, and independent of the shaders' structure.

pub mod linear;
pub mod moe;
pub mod routing;

pub use linear::{glu_mlp, linear};
pub use moe::{RefMoeOutput, moe_block, permutation};
pub use routing::route;
