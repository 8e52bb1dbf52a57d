//! `shaders/attention.wgsl`: causal attention of new queries over the KV cache, with GQA, an
//! optional sliding window and optional per-head sinks.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Context, Kernel, PipelineKey};
use crate::kernels::{Dispatch, groups};

/// Mirrors `Params` in `shaders/attention.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub struct AttentionParams {
    pub tokens: u32,
    pub pos0: u32,
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
}

/// Largest value head the kernel accumulates in registers (`MAX_V` in the shader).
pub const MAX_V_DIM: usize = 256;

/// Threads per workgroup of the attention kernel, one per head.
const HEADS_PER_GROUP: u32 = 16;

/// The shape and math of one attention call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AttentionSpec {
    pub heads: usize,
    pub kv_heads: usize,
    pub qk_dim: usize,
    pub v_dim: usize,
    /// Keys within this many positions of the query (itself included); None = all.
    pub window: Option<usize>,
    pub sinks: bool,
    /// Multiplies q · k.
    pub scale: f32,
}

impl AttentionSpec {
    pub fn validate(&self) -> Result<()> {
        if self.heads == 0 || self.kv_heads == 0 || !self.heads.is_multiple_of(self.kv_heads) {
            return Err(Error::input(format!(
                "attention: {} kv heads do not divide {} heads",
                self.kv_heads, self.heads
            )));
        }
        if self.qk_dim == 0 || self.v_dim == 0 || self.v_dim > MAX_V_DIM {
            return Err(Error::config(
                "head_dim",
                format!(
                    "value head dim {} must be in 1..={MAX_V_DIM} (query/key head dim {})",
                    self.v_dim, self.qk_dim
                ),
            ));
        }
        if self.window == Some(0) {
            return Err(Error::config("sliding_window", "must be positive"));
        }
        Ok(())
    }
}

pub struct AttentionBuffers<'a> {
    /// [tokens, heads, qk_dim]
    pub q: &'a wgpu::Buffer,
    /// [positions, kv_heads, qk_dim]
    pub k: &'a wgpu::Buffer,
    /// [positions, kv_heads, v_dim]
    pub v: &'a wgpu::Buffer,
    /// `[heads]` (any buffer without sinks)
    pub sinks: &'a wgpu::Buffer,
    /// [tokens, heads, v_dim]
    pub out: &'a wgpu::Buffer,
}

pub struct Attention {
    spec: AttentionSpec,
    dispatch: Dispatch<AttentionParams>,
}

impl Attention {
    pub fn new(ctx: &Context, spec: AttentionSpec, b: AttentionBuffers<'_>) -> Result<Self> {
        spec.validate()?;
        let s = &spec;
        let params = AttentionParams {
            tokens: 0,
            pos0: 0,
            heads: s.heads as u32,
            group: (s.heads / s.kv_heads) as u32,
            qk_dim: s.qk_dim as u32,
            v_dim: s.v_dim as u32,
            q_stride: (s.heads * s.qk_dim) as u32,
            k_stride: (s.kv_heads * s.qk_dim) as u32,
            v_stride: (s.kv_heads * s.v_dim) as u32,
            out_stride: (s.heads * s.v_dim) as u32,
            window: s.window.unwrap_or(0) as u32,
            scale: s.scale,
        };
        let key = PipelineKey::new(Kernel::Attention).flag("SINKS", s.sinks);
        let dispatch = Dispatch::new(ctx, &key, params, &[b.q, b.k, b.v, b.sinks, b.out])?;
        Ok(Self { spec, dispatch })
    }

    /// Attends `tokens` queries at positions pos0.. over cache rows 0..pos0 + tokens.
    pub fn encode(
        &self,
        ctx: &Context,
        pass: &mut wgpu::ComputePass<'_>,
        tokens: usize,
        pos0: usize,
    ) {
        self.dispatch.set_params(
            ctx,
            AttentionParams {
                tokens: tokens as u32,
                pos0: pos0 as u32,
                ..self.dispatch.params()
            },
        );
        self.dispatch.dispatch(
            pass,
            groups(self.spec.heads, HEADS_PER_GROUP),
            tokens as u32,
        );
    }
}
