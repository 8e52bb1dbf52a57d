//! Structured expert pruning: rank experts by calibration statistics, drop (or merge) the least
//! important, and write a standard Hugging Face checkpoint.

pub mod merge;
pub mod plan;
pub mod stats_match;
pub mod write;

pub use plan::{Keep, LayerPlan, PruneMethod, PrunePlan, plan};
pub use stats_match::check_stats;
pub use write::write_pruned;
