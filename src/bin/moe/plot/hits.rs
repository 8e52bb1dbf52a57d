//! `moe cache-sim --plot`: hit rate against slots per layer, one line per cache policy and one
//! for Belady's MIN, the optimum they are measured against.

use std::path::Path;

use anyhow::{Result, bail};
use moe_gpu::moe::cachesim::{PolicyResult, SimReport};
use plotters::prelude::*;

use super::{font, render};

/// Belady's MIN's line colour.
pub const OPTIMAL: RGBColor = RGBColor(44, 160, 44);
/// The policies' line colours, in the reports' order (then repeated).
pub const POLICIES: [RGBColor; 4] = [
    RGBColor(31, 119, 180),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(255, 127, 14),
];

/// Draws `reports` (one per slot count, ascending) into the PNG `path`, under `title`.
pub fn plot(reports: &[SimReport], title: &str, path: &Path) -> Result<()> {
    let (Some(first), Some(last)) = (reports.first(), reports.last()) else {
        bail!("--plot: no slot counts to plot");
    };
    let x = first.slots as f64..(last.slots as f64).max(first.slots as f64 + 1.0);
    render(path, |root| {
        let mut chart = ChartBuilder::on(root)
            .caption(title, font(24))
            .margin(20)
            .x_label_area_size(50)
            .y_label_area_size(70)
            .build_cartesian_2d(x, 0.0..100.0)?;
        chart
            .configure_mesh()
            .x_desc("expert slots per layer")
            .y_desc("hit rate (%)")
            .light_line_style(TRANSPARENT)
            .x_label_formatter(&|v| format!("{v:.0}"))
            .y_label_formatter(&|v| format!("{v:.0}"))
            .label_style(font(16))
            .axis_desc_style(font(18))
            .draw()?;
        let line = |pick: fn(&SimReport) -> &PolicyResult| -> Vec<(f64, f64)> {
            reports
                .iter()
                .map(|r| (r.slots as f64, 100.0 * pick(r).hit_rate))
                .collect()
        };
        let optimal = OPTIMAL.stroke_width(4);
        chart
            .draw_series(LineSeries::new(line(|r| &r.optimal), optimal))?
            .label(first.optimal.policy.clone())
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], optimal));
        for (i, p) in first.policies.iter().enumerate() {
            let style = POLICIES[i % POLICIES.len()].stroke_width(3);
            let points = reports
                .iter()
                .filter_map(|r| Some((r.slots as f64, 100.0 * r.policies.get(i)?.hit_rate)));
            chart
                .draw_series(LineSeries::new(points, style))?
                .label(p.policy.clone())
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style));
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .label_font(font(16))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
        Ok(())
    })
}
