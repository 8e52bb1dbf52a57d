//! Progress bars on stderr for what may take seconds (loading gigabytes of weights); drawn only
//! when stderr is a terminal.

use std::path::Path;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use moe_gpu::{Context, Model, ModelOptions};

/// Loads `dir` with a bar of the checkpoint bytes read, converted and uploaded, and their rate.
pub fn load_model(ctx: &Context, dir: &Path, options: &ModelOptions) -> anyhow::Result<Model> {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template(
            "loading {wide_bar} {binary_bytes}/{binary_total_bytes} ({binary_bytes_per_sec}, {elapsed})",
        )?,
    );
    let model = Model::load_observed(ctx, dir, options, &mut |p| {
        bar.set_length(p.total);
        bar.set_position(p.done);
    });
    bar.finish_and_clear();
    Ok(model?)
}
