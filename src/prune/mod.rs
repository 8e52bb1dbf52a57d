//! Structured expert pruning: rank experts by calibration statistics, drop (or merge) the least
//! important, optionally refit what is kept by least squares against the unpruned model, and
//! write a standard Hugging Face checkpoint.

pub mod layer_inputs;
mod least_squares;
pub mod merge;
pub mod plan;
pub mod recover;
mod recover_experts;
mod recover_fit;
mod recover_router;
pub mod stats_match;
pub mod write;

pub use layer_inputs::layer_inputs;
pub use plan::{Keep, LayerPlan, PruneMethod, PrunePlan, plan};
pub use recover::{LayerInput, LayerRecovery, recover_layer};
pub use stats_match::check_stats;
pub use write::{Replacements, write_pruned};
