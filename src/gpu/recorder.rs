//! A command recorder that keeps one compute pass open across kernels and layers, ending it
//! only for copies and for the submits an expert cache makes in the middle of a step.

use crate::error::Result;
use crate::gpu::buffer::Staging;
use crate::gpu::context::Context;

/// Records kernels into one command encoder, keeping a compute pass open between them; see the
/// crate docs for recording a [`crate::MoeLayer`] step.
pub struct Recorder<'a> {
    ctx: &'a Context,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
}

impl<'a> Recorder<'a> {
    /// An empty recorder; nothing is encoded until the first pass or copy.
    pub fn new(ctx: &'a Context) -> Self {
        Self {
            ctx,
            encoder: None,
            pass: None,
        }
    }

    /// The open compute pass (begun if needed).
    pub fn pass(&mut self) -> &mut wgpu::ComputePass<'static> {
        let ctx = self.ctx;
        let encoder = &mut self.encoder;
        self.pass.get_or_insert_with(|| {
            encoder
                .get_or_insert_with(|| ctx.device.create_command_encoder(&Default::default()))
                .begin_compute_pass(&Default::default())
                .forget_lifetime()
        })
    }

    /// The encoder, with any open pass ended.
    pub fn encoder(&mut self) -> &mut wgpu::CommandEncoder {
        self.pass = None;
        let ctx = self.ctx;
        self.encoder
            .get_or_insert_with(|| ctx.device.create_command_encoder(&Default::default()))
    }

    /// The encoder holding what was recorded and not yet submitted (with any open pass
    /// ended), to finish or submit by the caller.
    pub fn into_encoder(mut self) -> wgpu::CommandEncoder {
        self.pass = None;
        let ctx = self.ctx;
        self.encoder
            .take()
            .unwrap_or_else(|| ctx.device.create_command_encoder(&Default::default()))
    }

    /// A recorder that continues `encoder` (for timers that write timestamps around a step).
    pub fn with_encoder(ctx: &'a Context, encoder: wgpu::CommandEncoder) -> Self {
        Self {
            ctx,
            encoder: Some(encoder),
            pass: None,
        }
    }

    /// Records a copy of `bytes` bytes of `src` (from `src_offset`) into `staging` at `dst_offset`.
    pub fn copy(
        &mut self,
        src: &wgpu::Buffer,
        src_offset: u64,
        staging: &Staging,
        dst_offset: u64,
        bytes: u64,
    ) {
        staging.copy_from(self.encoder(), src, src_offset, dst_offset, bytes);
    }

    /// Submits everything recorded so far (nothing once the device is lost: then an error).
    pub fn submit(&mut self) -> Result<()> {
        self.pass = None;
        if let Some(encoder) = self.encoder.take() {
            self.ctx.submit([encoder.finish()])?;
        }
        Ok(())
    }
}
