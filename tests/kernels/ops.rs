//! One op harness, like ggml's test-backend-ops: every kernel × a shape list × every weight
//! format against `moe_gpu::reference`, each op with its own metric and limit, one line per
//! case and a summary; the test fails listing every failing case rather than the first.
//!
//! The limits are the ones the per-kernel sweeps state for the same op and format: 1e-5 of
//! max(1, |ref|) for a kernel against a reference that uses the weights as the format stores
//! them (tests/kernels/matmul_variants.rs, quant_error.rs, kernel_decoder.rs,
//! kernel_attention.rs); exact ids and 1e-5 on routing weights (kernel_select.rs); exact
//! permutations (kernel_permute.rs); and for the whole layer against the f32 reference, 1e-4
//! of max(1, |ref|) in f32 (tests/layer/moe_layer.rs) and normalised RMS errors of 1e-3 (f16,
//! f16_error.rs), 2e-2 (int8) and 2.5e-1 (int4) (quant_error.rs).
//!
//! Shapes: edge cases (1 token, fewer tokens than a tile, odd sizes, every token on one
//! expert, empty experts) and the benchmark's real models (`moe_gpu::bench::shapes::MODELS`)
//! with hidden and intermediate sizes divided by [`SCALE`].
//!
//! GGUF's eight formats share one decode path (`load_meta` and `weights` in
//! shaders/matmul_common.wgsl), so to keep CI short each runs every [`GGUF_STRIDE`]-th case of
//! an op's list, offset by its place in `WeightFormat::GGUF`: together they run every case.

mod combine;
mod decoder;
mod layer;
mod matmul;
mod routing;

use std::panic::{AssertUnwindSafe, catch_unwind};

use moe_gpu::bench::shapes::{MODELS, RealModel};
use moe_gpu::kernels::matmul::WeightFormat;

/// What the real models' hidden and intermediate sizes are divided by: Mixtral-8x7B becomes
/// hidden 64, intermediate 224; Qwen3-30B-A3B hidden 32 with 128 experts.
pub const SCALE: usize = 64;

/// Limit of a kernel against a reference on the weights as stored.
pub const KERNEL_TOL: f64 = 1e-5;

/// One case's measurement: `value` must be at most `limit` (and finite), and `note`, where
/// given, says why the case failed regardless (ids or a permutation differ).
pub struct Measured {
    pub metric: &'static str,
    pub value: f64,
    pub limit: f64,
    pub note: Option<String>,
}

impl Measured {
    pub fn new(metric: &'static str, value: f64, limit: f64) -> Self {
        Self {
            metric,
            value,
            limit,
            note: None,
        }
    }

    /// Largest |got − want| / max(1, |want|); infinite where got is not finite.
    pub fn max_scaled(got: &[f32], want: &[f32], limit: f64) -> Self {
        Self::new("max_scaled", scaled_err(got, want), limit)
    }

    /// An exact comparison: `mismatches` differing elements, none allowed.
    pub fn exact(mismatches: usize) -> Self {
        Self::new("mismatches", mismatches as f64, 0.0)
    }

    fn passed(&self) -> bool {
        self.note.is_none() && self.value <= self.limit
    }
}

pub fn scaled_err(got: &[f32], want: &[f32]) -> f64 {
    if got.len() != want.len() || got.iter().any(|v| !v.is_finite()) {
        return f64::INFINITY;
    }
    crate::common::max_scaled_err(got, want) as f64
}

/// The harness's table: one row per case.
/// A GGUF format runs every `GGUF_STRIDE`-th case of an op (see the module doc).
pub const GGUF_STRIDE: usize = 4;

#[derive(Default)]
pub struct Table {
    rows: Vec<String>,
    failed: Vec<String>,
    /// Cases offered so far per (op, format), run or not.
    offered: std::collections::HashMap<(String, String), usize>,
}

impl Table {
    /// Runs one case; a panic inside it (a helper's assertion, a kernel refusing its shape)
    /// fails that case only.
    pub fn case(&mut self, op: &str, shape: &str, format: &str, f: impl FnOnce() -> Measured) {
        let offered = self.offered.entry((op.into(), format.into())).or_default();
        let i = *offered;
        *offered += 1;
        let gguf = WeightFormat::GGUF.iter().position(|f| f.name() == format);
        if gguf.is_some_and(|p| !(i + p).is_multiple_of(GGUF_STRIDE)) {
            return;
        }
        let line = match catch_unwind(AssertUnwindSafe(f)) {
            Ok(m) => {
                let mut line = format!(
                    "{op:<14} {shape:<48} {format:<5} {:<10} {:>10.3e} <= {:.1e}",
                    m.metric, m.value, m.limit
                );
                if let Some(note) = &m.note {
                    line += &format!("  ({note})");
                }
                (m.passed(), line)
            }
            Err(e) => {
                let msg = e
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_default();
                let line = format!("{op:<14} {shape:<48} {format:<5} panicked: {msg}");
                (false, line)
            }
        };
        let (ok, line) = line;
        let line = format!("{} {line}", if ok { "ok  " } else { "FAIL" });
        println!("{line}");
        if !ok {
            self.failed.push(line.clone());
        }
        self.rows.push(line);
    }
}

/// The benchmark's models at [`SCALE`].
pub fn real_models() -> impl Iterator<Item = RealModel> {
    MODELS.iter().copied()
}

/// `model/scale`, the shape column's name for a real model.
pub fn model_label(m: &RealModel) -> String {
    format!("{}/{SCALE}", m.name)
}

/// One op's cases, added to the table.
type Section = fn(&mut Table);

#[test]
fn every_op_matches_the_reference_over_shapes_and_formats() {
    crate::common::ctx();
    let start = std::time::Instant::now();
    let mut table = Table::default();
    let sections: [(&str, Section); 11] = [
        ("dense", matmul::dense),
        ("matvec", matmul::matvec),
        ("grouped", matmul::grouped),
        ("select", routing::select),
        ("permute", routing::permute),
        ("combine", combine::combine),
        ("down_combine", combine::down_combine),
        ("rms_norm", decoder::rms_norm),
        ("rope", decoder::rope),
        ("attention", decoder::attention),
        ("layer", layer::layer),
    ];
    let mut times = Vec::new();
    for (name, section) in sections {
        let t0 = std::time::Instant::now();
        section(&mut table);
        times.push(format!("{name} {:.1} s", t0.elapsed().as_secs_f64()));
    }
    println!("time per op: {}", times.join(", "));
    let (n, m) = (table.rows.len() - table.failed.len(), table.failed.len());
    println!(
        "{n} passed, {m} failed ({} cases, {:.1} s)",
        table.rows.len(),
        start.elapsed().as_secs_f64()
    );
    assert!(
        table.failed.is_empty(),
        "{m} of {} op cases failed:\n{}",
        table.rows.len(),
        table.failed.join("\n")
    );
}
