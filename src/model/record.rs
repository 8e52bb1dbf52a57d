//! A command recorder that keeps one compute pass open across kernels and layers, ending it
//! only for copies and for the host syncs an expert cache asks for.

use crate::gpu::{Context, Staging};

pub struct Recorder<'a> {
    ctx: &'a Context,
    encoder: Option<wgpu::CommandEncoder>,
    pass: Option<wgpu::ComputePass<'static>>,
}

impl<'a> Recorder<'a> {
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

    /// Takes the encoder (with any open pass ended) to hand to code that submits it, such as
    /// an expert cache's sync; give the encoder to continue with back with [`Self::resume`].
    pub fn take_encoder(&mut self) -> wgpu::CommandEncoder {
        self.pass = None;
        let ctx = self.ctx;
        self.encoder
            .take()
            .unwrap_or_else(|| ctx.device.create_command_encoder(&Default::default()))
    }

    pub fn resume(&mut self, encoder: wgpu::CommandEncoder) {
        self.pass = None;
        self.encoder = Some(encoder);
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

    /// Submits everything recorded so far.
    pub fn submit(&mut self) {
        self.pass = None;
        if let Some(encoder) = self.encoder.take() {
            self.ctx.submit([encoder.finish()]);
        }
    }
}
