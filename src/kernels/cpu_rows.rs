//! `shaders/cpu_rows.wgsl`: the expert output rows the CPU computed for a step, put into the
//! expert-sorted rows the GPU's GEMMs write, so that the combine sums each token's slots in slot
//! order wherever each row came from.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Binding, Context, KernelDef, PipelineKey};
use crate::kernels::{Dispatch, WORKGROUP, groups};

/// The placement of CPU rows (`shaders/cpu_rows.wgsl`).
pub static CPU_ROWS: KernelDef = KernelDef {
    name: "cpu_rows",
    parts: &[include_str!("../../shaders/cpu_rows.wgsl")],
    bindings: &[
        Binding::uniform("p"),    // CpuRowsParams
        Binding::read("pairs"),   // [count] token · k + slot of each CPU row
        Binding::read("pos"),     // [tokens, k] pair -> sorted row
        Binding::read("cpu_y"),   // [count, hidden]
        Binding::read_write("y"), // [pairs, hidden] sorted rows
    ],
    overrides: &[],
};

/// Mirrors `Params` in `shaders/cpu_rows.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct CpuRowsParams {
    pub count: u32,
    pub hidden: u32,
    pub _pad0: u32,
    pub _pad1: u32,
}

/// Where a step's CPU rows are uploaded: at most `max_rows` rows of `hidden` f32.
pub struct CpuRowBuffers {
    /// `[max_rows]` u32 pair (token · k + slot) of each row.
    pub pairs: wgpu::Buffer,
    /// `[max_rows, hidden]` f32 rows.
    pub rows: wgpu::Buffer,
    max_rows: usize,
    hidden: usize,
}

impl CpuRowBuffers {
    /// Room for `max_rows` rows of `hidden` values.
    pub fn new(ctx: &Context, max_rows: usize, hidden: usize) -> Result<Self> {
        let rows_bytes = (max_rows.max(1) * hidden * 4) as u64;
        ctx.check_binding("CPU expert rows", rows_bytes)?;
        Ok(Self {
            pairs: ctx.storage("CPU expert row pairs", (max_rows.max(1) * 4) as u64)?,
            rows: ctx.storage("CPU expert rows", rows_bytes)?,
            max_rows,
            hidden,
        })
    }

    /// Queues the upload of `pairs` and their `rows` ([pairs, hidden]).
    pub fn write(&self, ctx: &Context, pairs: &[u32], rows: &[f32]) -> Result<()> {
        if pairs.len() > self.max_rows || rows.len() != pairs.len() * self.hidden {
            return Err(Error::input(format!(
                "{} CPU rows of {} values; the buffers hold {} rows of {}",
                pairs.len(),
                rows.len() / pairs.len().max(1),
                self.max_rows,
                self.hidden
            )));
        }
        if pairs.is_empty() {
            return Ok(());
        }
        ctx.write(&self.pairs, 0, bytemuck::cast_slice(pairs))?;
        ctx.write(&self.rows, 0, bytemuck::cast_slice(rows))
    }
}

/// The placement of a step's CPU rows, bound to its buffers.
pub struct CpuRows {
    hidden: usize,
    dispatch: Dispatch<CpuRowsParams>,
}

impl CpuRows {
    /// Places rows of `b` into `y` ([pairs, hidden] sorted rows) at `pos` ([tokens, k]).
    pub fn new(
        ctx: &Context,
        b: &CpuRowBuffers,
        pos: &wgpu::Buffer,
        y: &wgpu::Buffer,
    ) -> Result<Self> {
        let params = CpuRowsParams {
            count: 0,
            hidden: b.hidden as u32,
            _pad0: 0,
            _pad1: 0,
        };
        let key = PipelineKey::new(&CPU_ROWS);
        let dispatch = Dispatch::new(ctx, &key, params, &[&b.pairs, pos, &b.rows, y])?;
        Ok(Self {
            hidden: b.hidden,
            dispatch,
        })
    }

    /// Records the placement of the first `count` rows (nothing for none).
    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, count: usize) {
        self.dispatch.set_params(
            ctx,
            CpuRowsParams {
                count: count as u32,
                ..self.dispatch.params()
            },
        );
        self.dispatch
            .dispatch(pass, groups(self.hidden, WORKGROUP), count as u32);
    }
}
