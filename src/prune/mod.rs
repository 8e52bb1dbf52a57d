//! Structured expert pruning: rank experts by calibration statistics, drop (or merge) the least
//! important, and write a standard Hugging Face checkpoint.

pub mod merge;
pub mod plan;
pub mod write;

pub use plan::{Keep, LayerPlan, PruneMethod, PrunePlan, plan};
pub use write::write_pruned;
