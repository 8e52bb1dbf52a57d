//! The attention kernel's dispatches: one parameter block per pass of a step, chosen by a
//! dynamic uniform offset, so a step walks its keys in several passes within one compute pass.

use std::cell::Cell;
use std::sync::Arc;

use bytemuck::{Pod, Zeroable};

use crate::error::Result;
use crate::gpu::{Context, Pipeline, PipelineKey};
use crate::kernels::rows::RowTable;

/// Mirrors `Params` in `shaders/attention_common.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct AttentionParams {
    pub tokens: u32,
    pub heads: u32,
    pub group: u32,
    pub qk_dim: u32,
    pub v_dim: u32,
    pub q_stride: u32,
    pub k_stride: u32,
    pub v_stride: u32,
    pub out_stride: u32,
    pub window: u32,
    pub scale: f32,
    pub splits: u32,
    pub chunk: u32,
    pub max_splits: u32,
    pub min_keys: u32,
    pub pass_start: u32,
    pub pass_keys: u32,
    pub direct: u32,
    pub _pad: [u32; 2],
}

/// The buffers of an [`super::Attention`].
pub struct AttentionBuffers<'a> {
    /// [tokens, heads, qk_dim]
    pub q: &'a wgpu::Buffer,
    /// [positions, kv_heads, qk_dim]
    pub k: &'a wgpu::Buffer,
    /// [positions, kv_heads, v_dim]
    pub v: &'a wgpu::Buffer,
    /// `[heads]` (any buffer without sinks)
    pub sinks: &'a wgpu::Buffer,
    /// [slots, heads, 2 + v_dim] per-split running softmax state (size it with
    /// [`super::AttentionSpec::partials_bytes`]); its size sets how many (token, split) slots a step
    /// may use, at least [`super::AttentionSpec::min_partial_slots`].
    pub partials: &'a wgpu::Buffer,
    /// [tokens, heads, v_dim]
    pub out: &'a wgpu::Buffer,
    /// Each query's sequence and position.
    pub rows: &'a Arc<RowTable>,
}

/// The attention kernel with one parameter block per pass, chosen by a dynamic offset.
pub(super) struct Passes {
    pipeline: Arc<Pipeline>,
    bind: wgpu::BindGroup,
    params: wgpu::Buffer,
    /// Bytes between parameter blocks (the device's uniform offset alignment).
    stride: u64,
    /// What each block holds, so unchanged blocks are not rewritten.
    written: Vec<Cell<AttentionParams>>,
    /// The submission each block was last recorded for: it must not change before then.
    recorded_in: Vec<Cell<Option<u64>>>,
}

impl Passes {
    pub(super) fn new(
        ctx: &Context,
        key: &PipelineKey,
        max_passes: usize,
        b: &AttentionBuffers<'_>,
    ) -> Result<Self> {
        let pipeline = ctx.pipeline(key)?;
        let size = std::mem::size_of::<AttentionParams>() as u64;
        let stride = size.next_multiple_of(ctx.limits.min_uniform_buffer_offset_alignment as u64);
        let count = max_passes.max(1);
        let params = ctx.create_buffer(
            "attention pass parameters",
            stride * count as u64,
            wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
        )?;
        let uniform = wgpu::BufferBinding {
            buffer: &params,
            offset: 0,
            size: wgpu::BufferSize::new(size),
        };
        let storage = [b.q, b.k, b.v, b.sinks, b.partials, b.out, b.rows.buffer()];
        let mut resources = vec![wgpu::BindingResource::Buffer(uniform)];
        resources.extend(storage.iter().map(|buf| buf.as_entire_binding()));
        let bind = pipeline.bind_resources(&ctx.device, &resources)?;
        let never = AttentionParams::zeroed();
        Ok(Self {
            pipeline,
            bind,
            params,
            stride,
            written: (0..count).map(|_| Cell::new(never)).collect(),
            recorded_in: (0..count).map(|_| Cell::new(None)).collect(),
        })
    }

    /// Parameter blocks: the most passes a step may take.
    pub(super) fn len(&self) -> usize {
        self.written.len()
    }

    /// Records pass `i` with `params` (written to its block if they changed).
    pub(super) fn dispatch(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        i: usize,
        params: AttentionParams,
        x: u32,
        y: u32,
    ) {
        let offset = self.stride * i as u64;
        let submission = ctx.epoch();
        if self.written[i].get() != params {
            debug_assert!(
                self.recorded_in[i].get() != Some(submission),
                "attention pass {i}: parameters changed after it was recorded for the same submission"
            );
            ctx.queue
                .write_buffer(&self.params, offset, bytemuck::bytes_of(&params));
            self.written[i].set(params);
        }
        if x == 0 || y == 0 {
            return;
        }
        self.recorded_in[i].set(Some(submission));
        pass.set_pipeline(&self.pipeline.pipeline);
        pass.set_bind_group(0, &self.bind, &[offset as u32]);
        pass.dispatch_workgroups(x, y, 1);
    }
}
