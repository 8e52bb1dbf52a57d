//! Expert use per MoE layer as decaying counts, drawn as a layers × experts grid.

use egui::{Color32, Pos2, Rect, Sense, Ui, Vec2};

/// Seconds after which a count has lost half its weight.
const HALF_LIFE_S: f32 = 2.0;

/// Decaying tokens-per-expert counts of each MoE layer.
#[derive(Default)]
pub struct Heatmap {
    /// Decoder layer index of each row.
    layers: Vec<usize>,
    /// [row][expert] decayed count.
    heat: Vec<Vec<f32>>,
}

impl Heatmap {
    /// An empty grid: one row per MoE layer, `experts[i]` cells in row i.
    pub fn new(layers: Vec<usize>, experts: &[usize]) -> Self {
        let heat = experts.iter().map(|&e| vec![0.0; e]).collect();
        Self { layers, heat }
    }

    /// Adds one step's counts (same shape as the grid; extra rows or cells are ignored).
    pub fn add(&mut self, counts: &[Vec<u64>]) {
        for (row, step) in self.heat.iter_mut().zip(counts) {
            for (cell, &n) in row.iter_mut().zip(step) {
                *cell += n as f32;
            }
        }
    }

    /// Lets `dt` seconds of decay pass.
    pub fn decay(&mut self, dt: f32) {
        let factor = 0.5f32.powf(dt / HALF_LIFE_S);
        self.heat.iter_mut().flatten().for_each(|c| *c *= factor);
    }

    /// Whether any cell is still visibly warm (so the window keeps repainting).
    pub fn is_warm(&self) -> bool {
        self.heat.iter().flatten().any(|&c| c > 1e-3)
    }

    /// Draws the grid into the rest of `ui`: a row per MoE layer, a column per expert, the
    /// colour of each cell its count relative to the warmest cell.
    pub fn show(&self, ui: &mut Ui) {
        let columns = self.heat.iter().map(Vec::len).max().unwrap_or(0);
        if columns == 0 {
            ui.label("no MoE layers");
            return;
        }
        let (response, painter) = ui.allocate_painter(ui.available_size(), Sense::hover());
        let area = response.rect;
        let label_w = 48.0;
        let cell = Vec2::new(
            (area.width() - label_w) / columns as f32,
            area.height() / self.heat.len() as f32,
        );
        let max = self.heat.iter().flatten().fold(0.0f32, |m, &c| m.max(c));
        let text = ui.visuals().text_color();
        for (r, (row, layer)) in self.heat.iter().zip(&self.layers).enumerate() {
            let top = area.top() + r as f32 * cell.y;
            painter.text(
                Pos2::new(area.left(), top + cell.y / 2.0),
                egui::Align2::LEFT_CENTER,
                format!("L{layer}"),
                egui::FontId::monospace(12.0),
                text,
            );
            for (e, &c) in row.iter().enumerate() {
                let min = Pos2::new(area.left() + label_w + e as f32 * cell.x, top);
                let rect = Rect::from_min_size(min, cell).shrink(1.0);
                let t = if max > 1e-3 { c / max } else { 0.0 };
                painter.rect_filled(rect, 0.0, ramp(t));
            }
        }
    }
}

/// A perceptual dark-blue → teal → yellow ramp (viridis' ends and middle), t in [0, 1].
fn ramp(t: f32) -> Color32 {
    const STOPS: [[f32; 3]; 5] = [
        [68.0, 1.0, 84.0],
        [59.0, 82.0, 139.0],
        [33.0, 145.0, 140.0],
        [94.0, 201.0, 98.0],
        [253.0, 231.0, 37.0],
    ];
    let x = t.clamp(0.0, 1.0) * (STOPS.len() - 1) as f32;
    let i = (x.floor() as usize).min(STOPS.len() - 2);
    let f = x - i as f32;
    let [a, b] = [STOPS[i], STOPS[i + 1]];
    let mix = |k: usize| (a[k] + (b[k] - a[k]) * f).round() as u8;
    Color32::from_rgb(mix(0), mix(1), mix(2))
}
