//! Kernel-level yardsticks of the benchmark: plain dense matmuls with the same FLOPs as a
//! layer's expert GEMMs, a plain copy and a plain read. The grouped GEMMs themselves are timed by
//! [`crate::kernels::tune::GroupedRun`], which the autotuner uses too.

use std::cell::Cell;

use crate::error::{Error, Result};
use crate::gpu::{Context, GpuTimer, median};
use crate::kernels::copy::{Copy, CopyMode, DEFAULT_GROUPS};
use crate::kernels::expert_arena::ExpertArena;
use crate::kernels::matmul::{Matmul, MatmulBuffers, Tiling};
use crate::kernels::row_split::{SplitShape, SplitWeights};
use crate::kernels::tune::ExpertGemms;
use crate::synthetic::Rng;

/// The FLOPs of the expert GEMMs `g` on `rows` rows as two plain dense matmuls ([rows,
/// hidden] · gate/upᵀ, then [rows, inter] · downᵀ, one weight matrix each): built once, timed
/// many times.
pub struct DenseRun {
    gate_up: Matmul,
    down: Matmul,
    rows: usize,
}

impl DenseRun {
    /// Builds the two matmuls with random weights in `g`'s format.
    pub fn new(ctx: &Context, g: &ExpertGemms, rows: usize, tiling: Tiling) -> Result<Self> {
        let (h, i) = (g.hidden, g.inter);
        let mut rng = Rng::new(2);
        let [gu_shape, dn_shape] = ExpertArena::weight_shapes(h, i, 1, g.format);
        let gu_shape = SplitShape {
            rows_per_output: g.glu.rows_per_output(),
            ..gu_shape
        };
        let gu_rows = i * g.glu.rows_per_output();
        let w = rng.normals(gu_rows * h, 1.0 / (h as f32).sqrt());
        // With a GLU: the gate rows, then the up rows.
        let blocks: Vec<&[f32]> = w.chunks((i * h).max(1)).collect();
        let w_gu = SplitWeights::from_f32(ctx, "bench dense gate_up", gu_shape, &blocks)?;
        let w = rng.normals(h * i, 1.0 / (i as f32).sqrt());
        let w_dn = SplitWeights::from_f32(ctx, "bench dense down", dn_shape, &[&w])?;
        let bias = ctx.storage("bench dense bias", (gu_rows.max(h) * 4) as u64)?;
        let zero = ctx.storage_with("bench slot 0", &[0u32])?;
        let x = ctx.storage_with("bench dense x", &Rng::new(3).normals(rows * h, 1.0))?;
        let hbuf = ctx.storage("bench dense hidden", (rows * i * 4) as u64)?;
        let y = ctx.storage("bench dense y", (rows * h * 4) as u64)?;
        let buffers = |x, w, out| MatmulBuffers {
            x,
            w,
            bias: &bias,
            slots: &zero,
            tiles: &zero,
            rows: &zero,
            out,
        };
        let gate_up = Matmul::new(
            ctx,
            g.spec(true, tiling, false),
            h,
            i,
            1,
            buffers(&x, &w_gu, &hbuf),
        )?;
        let down = Matmul::new(
            ctx,
            g.spec(false, tiling, false),
            i,
            h,
            1,
            buffers(&hbuf, &w_dn, &y),
        )?;
        Ok(Self {
            gate_up,
            down,
            rows,
        })
    }

    /// Seconds of one run of both matmuls.
    pub fn time(&self, ctx: &Context, timer: &GpuTimer) -> Result<f64> {
        timer.time(ctx, |mut enc| {
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                self.gate_up.encode(ctx, &mut pass, self.rows);
                self.down.encode(ctx, &mut pass, self.rows);
            }
            Ok(enc)
        })
    }
}

/// Grid sizes (workgroups of 64 threads) a [`CopyRun`] tries: many small ones suit a GPU, a
/// few long-running ones a CPU adapter, where each workgroup costs a task switch.
const COPY_GROUPS: [u32; 4] = [64, 256, 1024, DEFAULT_GROUPS];

/// Plain copies (or read-only passes) of `bytes` bytes, built once and timed many times, with
/// the fastest of a few grid sizes (`COPY_GROUPS`). With a pool larger than one copy, successive
/// runs use different buffers, so a run's source is as cold in the caches as a decode step's
/// experts, which also change from step to step. Every copy runs once when built: on lavapipe
/// the first use of a buffer takes about twice as long as later ones, and the weights the
/// copies are compared with were written at upload.
pub struct CopyRun {
    copies: Vec<Copy>,
    next: Cell<usize>,
    /// Bytes read (and, for a copy, as many written) per run.
    pub bytes: u64,
    /// Workgroups of the chosen grid.
    pub groups: u32,
}

impl CopyRun {
    /// Runs of `bytes` bytes (rounded up to 16) cycling through about `pool` bytes of sources
    /// (at most 16 sources, at least one).
    pub fn new(
        ctx: &Context,
        timer: &GpuTimer,
        mode: CopyMode,
        bytes: u64,
        pool: u64,
    ) -> Result<Self> {
        let bytes = bytes.max(16).div_ceil(16) * 16;
        let pairs = (pool / bytes).clamp(1, 16);
        let buffers = (0..pairs)
            .map(|_| {
                let src = ctx.storage("bench copy src", bytes)?;
                let dst = ctx.storage("bench copy dst", bytes)?;
                Ok((src, dst))
            })
            .collect::<Result<Vec<_>>>()?;
        let build = |max_groups: u32| {
            buffers
                .iter()
                .map(|(src, dst)| Copy::new(ctx, mode, src, dst, bytes, max_groups))
                .collect::<Result<Vec<_>>>()
        };
        let mut best: Option<(f64, Self)> = None;
        let mut tried = Vec::new();
        for max_groups in COPY_GROUPS {
            let copies = build(max_groups)?;
            // Small copies clamp several sizes to the same grid: time each grid once.
            let groups = copies[0].groups();
            if tried.contains(&groups) {
                continue;
            }
            tried.push(groups);
            let run = Self {
                copies,
                next: Cell::new(0),
                bytes,
                groups,
            };
            // Every buffer once untimed, then a median of three.
            for _ in 0..pairs {
                run.time(ctx, timer)?;
            }
            let mut t = (0..3)
                .map(|_| run.time(ctx, timer))
                .collect::<Result<Vec<f64>>>()?;
            let secs = median(&mut t);
            if best.as_ref().is_none_or(|(b, _)| secs < *b) {
                best = Some((secs, run));
            }
        }
        best.map(|(_, run)| run)
            .ok_or_else(|| Error::input("no copy grid to try"))
    }

    /// Seconds of one run (the next source of the pool).
    pub fn time(&self, ctx: &Context, timer: &GpuTimer) -> Result<f64> {
        let i = self.next.get();
        self.next.set((i + 1) % self.copies.len());
        timer.time(ctx, |mut enc| {
            {
                let mut pass = enc.begin_compute_pass(&Default::default());
                self.copies[i].encode(&mut pass);
            }
            Ok(enc)
        })
    }
}
