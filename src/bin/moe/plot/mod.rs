//! PNG plots (plotters' bitmap backend): routing statistics for `moe calibrate --plot` and hit
//! rates for `moe cache-sim --plot`. Text is drawn with DejaVu Sans, embedded in the binary
//! (`DejaVuSans.ttf` beside this file, with its licence), so that no system font is needed.

pub mod hits;
pub mod routing;

use std::path::Path;

use anyhow::{Context, Result, bail};
use plotters::prelude::*;

/// The embedded font, registered as plotters' `sans-serif` family.
const FONT: &[u8] = include_bytes!("DejaVuSans.ttf");

/// Width and height of every plot, in pixels.
pub const SIZE: (u32, u32) = (1200, 900);

/// Checks that `path` can take a PNG before anything is drawn: it ends in `.png` and its
/// folder exists.
pub fn check_path(path: &Path) -> Result<()> {
    let is_png = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("png"));
    if !is_png {
        bail!("--plot {}: the file name must end in .png", path.display());
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent
        && !dir.is_dir()
    {
        bail!(
            "--plot {}: {} is not an existing folder",
            path.display(),
            dir.display()
        );
    }
    Ok(())
}

/// Draws a plot of [`SIZE`] into `path` with `draw`, then writes the PNG.
fn render(
    path: &Path,
    draw: impl FnOnce(&DrawingArea<BitMapBackend, plotters::coord::Shift>) -> Result<()>,
) -> Result<()> {
    check_path(path)?;
    plotters::style::register_font("sans-serif", FontStyle::Normal, FONT)
        .map_err(|_| anyhow::anyhow!("the embedded font is not a valid TrueType font"))?;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE)?;
    draw(&root)?;
    root.present()
        .with_context(|| format!("--plot {}: cannot write the PNG", path.display()))
}

/// The embedded font, `size` pixels high.
fn font(size: u32) -> TextStyle<'static> {
    ("sans-serif", size).into_font().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_without_png_or_folder_is_refused_before_drawing() {
        let err = check_path(Path::new("plot.jpg")).unwrap_err().to_string();
        assert!(err.contains("must end in .png"), "{err}");
        let err = check_path(Path::new("/no/such/folder/plot.png"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not an existing folder"), "{err}");
        check_path(Path::new("plot.PNG")).unwrap();
    }
}
