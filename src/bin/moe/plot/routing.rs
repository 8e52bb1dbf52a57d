//! `moe calibrate --plot`: a heatmap of each MoE layer's expert frequency (layers × experts,
//! with a colour bar) above the distribution of w_j / w_1 over all layers, one line per j.

use std::path::Path;

use anyhow::Result;
use moe_gpu::calibration::{CalibrationStats, RATIO_BUCKETS};
use plotters::coord::Shift;
use plotters::prelude::*;

use super::{font, render};

/// Draws `stats` into the PNG `path`.
pub fn plot(stats: &CalibrationStats, path: &Path) -> Result<()> {
    render(path, |root| {
        let title = format!("Routing of {} ({} tokens)", stats.model, stats.tokens);
        let root = root.titled(&title, font(26))?;
        let (top, bottom) = root.split_vertically(root.dim_in_pixel().1 * 3 / 5);
        let (map, bar) = top.split_horizontally(top.dim_in_pixel().0 * 7 / 8);
        let max = max_frequency(stats);
        heatmap(stats, &map, max)?;
        colour_bar(&bar, max)?;
        ratios(stats, &bottom)
    })
}

/// The largest share of tokens any expert of any layer was routed (at least a tiny positive
/// value, so that a scale exists when nothing was routed).
fn max_frequency(stats: &CalibrationStats) -> f64 {
    let max = stats
        .layers
        .iter()
        .flat_map(|l| l.frequency.iter().copied())
        .fold(0.0, f64::max);
    max.max(1e-9)
}

/// The colour of a share of tokens `f` on a scale up to `max`.
fn colour(f: f64, max: f64) -> RGBColor {
    ViridisRGB.get_color_normalized(f as f32, 0.0, max as f32)
}

/// One row per MoE layer (its decoder index on the axis), one column per expert; a pruned
/// layer with fewer experts leaves its extra columns blank.
fn heatmap(
    stats: &CalibrationStats,
    area: &DrawingArea<BitMapBackend, Shift>,
    max: f64,
) -> Result<()> {
    // A segmented range a..b has a segment for b as well.
    let last_expert = stats
        .layers
        .iter()
        .map(|l| l.experts)
        .max()
        .unwrap_or(1)
        .max(1)
        - 1;
    let last_row = stats.layers.len().max(1) - 1;
    let mut chart = ChartBuilder::on(area)
        .caption("Share of tokens routed to each expert", font(20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(
            (0..last_expert as u32).into_segmented(),
            (0..last_row as u32).into_segmented(),
        )?;
    let layer_of = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(r) => stats
            .layers
            .get(*r as usize)
            .map_or(String::new(), |l| l.layer.to_string()),
        _ => String::new(),
    };
    let expert_of = |v: &SegmentValue<u32>| match v {
        SegmentValue::CenterOf(e) => e.to_string(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc("expert")
        .y_desc("layer")
        .x_labels(16)
        .y_labels(16)
        .x_label_formatter(&expert_of)
        .y_label_formatter(&layer_of)
        .label_style(font(14))
        .axis_desc_style(font(16))
        .draw()?;
    let cells = stats.layers.iter().enumerate().flat_map(|(r, l)| {
        l.frequency.iter().enumerate().map(move |(e, &f)| {
            let (e, r) = (e as u32, r as u32);
            Rectangle::new(
                [
                    (SegmentValue::Exact(e), SegmentValue::Exact(r)),
                    (SegmentValue::Exact(e + 1), SegmentValue::Exact(r + 1)),
                ],
                colour(f, max).filled(),
            )
        })
    });
    chart.draw_series(cells)?;
    Ok(())
}

/// The heatmap's scale: colours from 0 to `max`, labelled in percent of tokens.
fn colour_bar(area: &DrawingArea<BitMapBackend, Shift>, max: f64) -> Result<()> {
    let top = 100.0 * max;
    let mut chart = ChartBuilder::on(area)
        .margin_top(40)
        .margin_bottom(50)
        .margin_right(10)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..1.0, 0.0..top)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .disable_x_axis()
        .y_desc("% of tokens")
        .label_style(font(14))
        .axis_desc_style(font(16))
        .draw()?;
    const STEPS: usize = 64;
    chart.draw_series((0..STEPS).map(|i| {
        let (lo, hi) = (i as f64 / STEPS as f64, (i + 1) as f64 / STEPS as f64);
        Rectangle::new(
            [(0.0, lo * top), (1.0, hi * top)],
            colour(lo * max, max).filled(),
        )
    }))?;
    Ok(())
}

/// Share of the picks of rank j (j = 2..k) whose w_j / w_1 falls in each bucket, summed over
/// the layers: one line per j, at the buckets' centres.
fn ratios(stats: &CalibrationStats, area: &DrawingArea<BitMapBackend, Shift>) -> Result<()> {
    let ranks = stats
        .layers
        .iter()
        .map(|l| l.ratio_histogram.len())
        .max()
        .unwrap_or(0);
    let lines: Vec<Vec<(f64, f64)>> = (0..ranks)
        .map(|j| {
            let mut sum = [0u64; RATIO_BUCKETS];
            for l in &stats.layers {
                if let Some(h) = l.ratio_histogram.get(j) {
                    sum.iter_mut().zip(h).for_each(|(s, c)| *s += c);
                }
            }
            let total = sum.iter().sum::<u64>().max(1) as f64;
            sum.iter()
                .enumerate()
                .map(|(b, &c)| ((b as f64 + 0.5) / RATIO_BUCKETS as f64, c as f64 / total))
                .collect()
        })
        .collect();
    let top = lines
        .iter()
        .flatten()
        .map(|p| p.1)
        .fold(0.0, f64::max)
        .max(0.01)
        * 1.1;
    let caption = if ranks == 0 {
        "w_j / w_1: none (one expert per token)"
    } else {
        "Distribution of w_j / w_1 (routing weight of the j-th pick over the top pick)"
    };
    let mut chart = ChartBuilder::on(area)
        .caption(caption, font(20))
        .margin(10)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(0.0..1.0, 0.0..top)?;
    chart
        .configure_mesh()
        .x_desc("w_j / w_1")
        .y_desc("share of picks")
        .light_line_style(TRANSPARENT)
        .label_style(font(14))
        .axis_desc_style(font(16))
        .draw()?;
    for (j, line) in lines.into_iter().enumerate() {
        let c = Palette99::pick(j).to_rgba();
        chart
            .draw_series(LineSeries::new(line, c.stroke_width(2)))?
            .label(format!("j = {}", j + 2))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], c.stroke_width(2)));
    }
    if ranks > 0 {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperRight)
            .label_font(font(14))
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use moe_gpu::calibration::LayerStats;

    #[test]
    fn layers_with_different_expert_counts_and_k_1_are_drawn() {
        // A pruned model: 8 experts in one layer, 6 in the next; k = 1 has no ratios.
        for k in [1, 2] {
            let mut layers = vec![LayerStats::new(0, 8, k), LayerStats::new(3, 6, k)];
            for l in &mut layers {
                let ids: Vec<u32> = (0..4 * k as u32).map(|i| i % 6).collect();
                let weights: Vec<f32> = (0..4 * k).map(|i| 1.0 / (i + 1) as f32).collect();
                l.observe(&ids, &weights, None);
            }
            let stats = CalibrationStats {
                model: "pruned".into(),
                architecture: "olmoe".into(),
                tokens: 4,
                layers,
            };
            let path = std::env::temp_dir()
                .join(format!("moe-plot-routing-{}-k{k}.png", std::process::id()));
            plot(&stats, &path).unwrap();
            assert!(std::fs::metadata(&path).unwrap().len() > 1000);
            std::fs::remove_file(&path).unwrap();
        }
    }
}
