//! Dense projections of the decoder on the GPU: y = x · Wᵀ (+ b) with prefill, few-rows and
//! decode tilings, and the LM head split over vocabulary chunks that each fit one storage binding.

use crate::error::{Error, Result};
use crate::gpu::{Context, Staging};
use crate::kernels::matmul::{Matmul, MatmulBuffers, MatmulSpec, Tiling, WeightFormat};
use crate::kernels::row_split::{SplitShape, SplitWeights};
use crate::model::checkpoint::Checkpoint;

/// Rows up to which a step (a batched decode step of several sequences, a short prompt) runs
/// [`FEW_ROWS_TILING`]; one row runs the matvec, more the 4 × 4 register blocks.
const FEW_ROWS: usize = 8;

/// Eight rows per thread, so that each weight is read once for a decode step of up to eight
/// sequences, where the matvec reads it once per row (measured in BENCHMARKS.md).
const FEW_ROWS_TILING: Tiling = Tiling::registers(1, 64, 8, 4);

/// Where a projection reads and writes: `x` [tokens, x_stride], `out` [tokens, out_stride].
pub struct LinearIo<'a> {
    /// Input rows.
    pub x: &'a wgpu::Buffer,
    /// Floats between input rows.
    pub x_stride: usize,
    /// Output rows.
    pub out: &'a wgpu::Buffer,
    /// Floats between output rows.
    pub out_stride: usize,
}

/// One `nn.Linear` on the GPU, built once and encoded every step.
pub struct Linear {
    /// Prefill tiling, decode tiling, few-rows tiling: the same bits for any row
    /// (tests/kernels/kernel_matmul.rs).
    variants: [Matmul; 3],
}

impl Linear {
    /// Uploads `w` ([n, k] row-major) and `bias` (`[n]`) and binds them to `io`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &Context,
        name: &str,
        w: &[f32],
        bias: Option<&[f32]>,
        n: usize,
        k: usize,
        format: WeightFormat,
        io: LinearIo<'_>,
    ) -> Result<Self> {
        if w.len() != n * k {
            return Err(Error::tensor(
                name,
                format!("has {} values, expected [{n}, {k}]", w.len()),
            ));
        }
        let shape = SplitShape {
            n,
            rows_per_output: 1,
            k,
            format,
            slots: 1,
        };
        let wbuf = SplitWeights::from_f32(ctx, name, shape, &[w])?;
        let bbuf = ctx.storage_with(&format!("{name} bias"), bias.unwrap_or(&[0.0]))?;
        let unused = ctx.storage_with("unused", &[0u32])?;
        let build = |tiling| {
            Matmul::new(
                ctx,
                MatmulSpec {
                    bias: bias.is_some(),
                    format,
                    tiling,
                    ..MatmulSpec::dense(n, k)
                },
                io.x_stride,
                io.out_stride,
                1,
                MatmulBuffers {
                    x: io.x,
                    w: &wbuf,
                    bias: &bbuf,
                    slots: &unused,
                    tiles: &unused,
                    rows: &unused,
                    out: io.out,
                },
            )
        };
        Ok(Self {
            variants: [
                build(Tiling::PREFILL)?,
                build(Tiling::DECODE)?,
                build(FEW_ROWS_TILING)?,
            ],
        })
    }

    /// Loads `{prefix}.weight` (and `{prefix}.bias` when the checkpoint has it) of shape [n, k].
    #[allow(clippy::too_many_arguments)]
    pub fn load(
        ctx: &Context,
        ckpt: &Checkpoint,
        prefix: &str,
        n: usize,
        k: usize,
        format: WeightFormat,
        io: LinearIo<'_>,
    ) -> Result<Self> {
        let name = format!("{prefix}.weight");
        let w = ckpt.f32(&name, &[n, k])?;
        let bias_name = format!("{prefix}.bias");
        let bias = if ckpt.contains(&bias_name) {
            Some(ckpt.f32(&bias_name, &[n])?)
        } else {
            None
        };
        Self::new(ctx, &name, &w, bias.as_deref(), n, k, format, io)
    }

    /// Projects rows 0..m.
    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, m: usize) {
        let v = match m {
            0 | 1 => 1,
            _ if m <= FEW_ROWS => 2,
            _ => 0,
        };
        self.variants[v].encode(ctx, pass, m);
    }
}

/// One vocabulary chunk of the LM head: columns `first..first + len` of the logits.
pub struct HeadChunk {
    /// First vocabulary column of the chunk.
    pub first: usize,
    /// Columns in the chunk.
    pub len: usize,
    /// [rows, len] logits of this chunk.
    pub out: wgpu::Buffer,
    linear: Linear,
}

/// The LM head, split into as few vocabulary chunks as the binding limit allows.
pub struct LmHead {
    /// Vocabulary size (logit columns).
    pub vocab: usize,
    /// The chunks, in vocabulary order.
    pub chunks: Vec<HeadChunk>,
}

impl LmHead {
    /// `w` is [vocab, hidden]; `x` holds up to `rows` normalised hidden states. Chunks are as
    /// large as the device's storage binding limit allows.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &Context,
        name: &str,
        w: &[f32],
        vocab: usize,
        hidden: usize,
        format: WeightFormat,
        x: &wgpu::Buffer,
        rows: usize,
    ) -> Result<Self> {
        let limit = ctx.max_binding();
        Self::with_binding_limit(ctx, name, w, vocab, hidden, format, x, rows, limit)
    }

    /// As [`Self::new`], with chunks (weights and logits) of at most `limit` bytes each.
    #[allow(clippy::too_many_arguments)]
    pub fn with_binding_limit(
        ctx: &Context,
        name: &str,
        w: &[f32],
        vocab: usize,
        hidden: usize,
        format: WeightFormat,
        x: &wgpu::Buffer,
        rows: usize,
        limit: u64,
    ) -> Result<Self> {
        if w.len() != vocab * hidden {
            return Err(Error::tensor(
                name,
                format!("has {} values, expected [{vocab}, {hidden}]", w.len()),
            ));
        }
        let row_bytes = format.matrix_bytes(1, hidden);
        let per_chunk = (limit / row_bytes) as usize;
        let out_limit = (limit / (rows.max(1) as u64 * 4)) as usize;
        let per_chunk = per_chunk.min(out_limit);
        if per_chunk == 0 {
            return Err(Error::DeviceLimit {
                what: format!("one row of {name} ({hidden} values)"),
                needed: row_bytes,
                limit_name: "max_storage_buffer_binding_size",
                limit,
            });
        }
        let mut chunks = Vec::new();
        for first in (0..vocab).step_by(per_chunk) {
            let len = per_chunk.min(vocab - first);
            let out = ctx.storage(
                &format!("logits {first}..{}", first + len),
                (rows * len * 4) as u64,
            )?;
            let linear = Linear::new(
                ctx,
                &format!("{name} rows {first}..{}", first + len),
                &w[first * hidden..(first + len) * hidden],
                None,
                len,
                hidden,
                format,
                LinearIo {
                    x,
                    x_stride: hidden,
                    out: &out,
                    out_stride: len,
                },
            )?;
            chunks.push(HeadChunk {
                first,
                len,
                out,
                linear,
            });
        }
        Ok(Self { vocab, chunks })
    }

    /// Logits of rows 0..m, each chunk into its own buffer.
    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, m: usize) {
        for c in &self.chunks {
            c.linear.encode(ctx, pass, m);
        }
    }

    /// Copies rows 0..m of every chunk into `staging` as contiguous [m, vocab] f32 logits.
    pub fn copy_out(&self, encoder: &mut wgpu::CommandEncoder, staging: &Staging, m: usize) {
        for c in &self.chunks {
            for r in 0..m {
                staging.copy_from(
                    encoder,
                    &c.out,
                    (r * c.len * 4) as u64,
                    ((r * self.vocab + c.first) * 4) as u64,
                    (c.len * 4) as u64,
                );
            }
        }
    }
}
