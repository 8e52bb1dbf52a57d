//! Progress bars on stderr for what may take seconds (loading gigabytes of weights,
//! calibration and evaluation runs, benchmarks, cache simulations, pruning); drawn only when
//! stderr is a terminal and `--quiet` is not given.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use moe_gpu::{Context, Model, ModelOptions};

/// `--quiet`: no progress bars.
static QUIET: AtomicBool = AtomicBool::new(false);

/// Turns every progress bar off (`--quiet`).
pub fn set_quiet(quiet: bool) {
    QUIET.store(quiet, Ordering::Relaxed);
}

/// Where bars draw: stderr, which indicatif leaves alone when it is not a terminal.
fn target() -> ProgressDrawTarget {
    if QUIET.load(Ordering::Relaxed) {
        ProgressDrawTarget::hidden()
    } else {
        ProgressDrawTarget::stderr()
    }
}

/// A bar of `what` counted in `unit`s with their rate and the time so far; `set_length` and
/// `set_position` move it.
pub fn counter(what: &str, unit: &str) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::with_draw_target(None, target());
    bar.set_style(ProgressStyle::with_template(&format!(
        "{what} {{wide_bar}} {{pos}}/{{len}} {unit} ({{per_sec}}, {{elapsed}})"
    ))?);
    Ok(bar)
}

/// A spinner showing `what` is under way and the time so far; its message names the step.
pub fn spinner(what: &str) -> anyhow::Result<ProgressBar> {
    let bar = ProgressBar::with_draw_target(None, target());
    bar.set_style(ProgressStyle::with_template(&format!(
        "{{spinner}} {what} {{msg}} ({{elapsed}})"
    ))?);
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    Ok(bar)
}

/// Loads `dir` with a bar of the checkpoint bytes read, converted and uploaded, and their rate.
pub fn load_model(ctx: &Context, dir: &Path, options: &ModelOptions) -> anyhow::Result<Model> {
    let bar = ProgressBar::with_draw_target(None, target());
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
