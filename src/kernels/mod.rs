//! One module per WGSL kernel: its `#[repr(C)]` parameter struct (mirrored in the shader), its
//! [`KernelDef`] (source, bindings, the override constants it is specialised with), and how it
//! is dispatched.

pub mod attention;
pub mod combine;
pub mod copy;
pub mod cpu_rows;
pub mod dense;
pub mod expert_arena;
pub mod gguf_formats;
mod gguf_quantize;
pub(crate) mod gguf_unpack;
pub mod grouped_matmul;
pub mod matmul;
pub mod mxfp4;
pub mod norm;
pub mod permute;
pub mod rope;
pub mod row_split;
pub mod rows;
pub mod select;
pub mod tiling;
pub mod tune;
mod weight_decode;
pub mod weight_packing;

use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytemuck::Pod;

use crate::error::Result;
use crate::gpu::{Context, KernelDef, Pipeline, PipelineKey};

/// Every kernel of moe-gpu (tests/kernel_bindings.rs checks each against its WGSL).
pub static ALL_KERNELS: [&KernelDef; 14] = [
    &matmul::MATMUL,
    &matmul::MATMUL_TILED,
    &matmul::MATMUL_VEC,
    &combine::DOWN_COMBINE,
    &copy::COPY,
    &select::SELECT,
    &permute::SCAN,
    &permute::SCATTER,
    &combine::COMBINE,
    &cpu_rows::CPU_ROWS,
    &norm::RMS_NORM,
    &rope::ROPE,
    &attention::ATTENTION,
    &attention::ATTENTION_COMBINE,
];

/// Threads per workgroup of the one-dimensional kernels.
pub const WORKGROUP: u32 = 64;

pub use crate::spec::INVALID;

/// A pipeline bound to its buffers and parameter block: built once, encoded every step.
pub(crate) struct Dispatch<P: Pod + PartialEq> {
    pipeline: Arc<Pipeline>,
    bind: wgpu::BindGroup,
    params_buffer: wgpu::Buffer,
    params: Cell<P>,
    /// The context's recording epoch, and its value when this was last recorded: a recorded
    /// dispatch reads its parameter block when its submission runs, so the block must not
    /// change before then.
    epoch: Arc<AtomicU64>,
    recorded_in: Cell<Option<u64>>,
}

impl<P: Pod + PartialEq> Dispatch<P> {
    pub fn new(
        ctx: &Context,
        key: &PipelineKey,
        params: P,
        buffers: &[&wgpu::Buffer],
    ) -> Result<Self> {
        let pipeline = ctx.pipeline(key)?;
        let params_buffer = ctx.uniform(pipeline.kernel.name, &params)?;
        let mut all: Vec<&wgpu::Buffer> = vec![&params_buffer];
        all.extend_from_slice(buffers);
        let bind = pipeline.bind(&ctx.device, &all)?;
        Ok(Self {
            pipeline,
            bind,
            params_buffer,
            params: Cell::new(params),
            epoch: ctx.epoch_counter(),
            recorded_in: Cell::new(None),
        })
    }

    pub fn params(&self) -> P {
        self.params.get()
    }

    /// Updates the parameter block; written to the GPU only when it changed. A dispatch
    /// recorded since the last submission would read the new block, so changing it then is a
    /// bug of the caller (one layer recorded twice per submission with different shapes).
    pub fn set_params(&self, ctx: &Context, params: P) {
        if params != self.params.get() {
            debug_assert!(
                self.recorded_in.get() != Some(self.epoch.load(Ordering::Relaxed)),
                "kernel `{}`: parameters changed after a dispatch was recorded for the same submission",
                self.pipeline.kernel.name
            );
            ctx.queue
                .write_buffer(&self.params_buffer, 0, bytemuck::bytes_of(&params));
            self.params.set(params);
        }
    }

    fn recorded(&self) {
        self.recorded_in
            .set(Some(self.epoch.load(Ordering::Relaxed)));
    }

    pub fn dispatch(&self, pass: &mut wgpu::ComputePass<'_>, x: u32, y: u32) {
        if x == 0 || y == 0 {
            return;
        }
        self.recorded();
        pass.set_pipeline(&self.pipeline.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups(x, y, 1);
    }

    pub fn dispatch_indirect(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        args: &wgpu::Buffer,
        offset: u64,
    ) {
        self.recorded();
        pass.set_pipeline(&self.pipeline.pipeline);
        pass.set_bind_group(0, &self.bind, &[]);
        pass.dispatch_workgroups_indirect(args, offset);
    }
}

/// Workgroups needed to cover `n` items with `per` items each.
pub fn groups(n: usize, per: u32) -> u32 {
    n.div_ceil(per as usize) as u32
}
