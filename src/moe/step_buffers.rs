//! The buffers one MoE step writes between its input and its output: routing, permutation,
//! expert activations and the shared expert's output. Layers run one after another, so a model
//! allocates one set, sized for its largest MoE layer and `max_tokens`, and every layer binds
//! it; a layer built on its own allocates its own.

use std::sync::OnceLock;

use crate::error::{Error, Result};
use crate::gpu::{Context, Staging, decode, padded};
use crate::kernels::cpu_rows::CpuRowBuffers;
use crate::kernels::permute;
use crate::moe::router::{RouterOutputs, logit_cols};
use crate::spec::layer_spec::MoeLayerSpec;

/// What the step buffers must hold: the largest of each dimension over the layers sharing them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StepShape {
    /// Tokens per step.
    pub max_tokens: usize,
    /// Hidden size.
    pub hidden: usize,
    /// Routed expert width.
    pub inter: usize,
    /// Routed experts.
    pub experts: usize,
    /// Experts per token.
    pub top_k: usize,
    /// Router logit columns: the experts, plus a shared-expert gate column where there is one.
    pub logit_cols: usize,
    /// Widest shared expert of the layers, 0 without one (its buffers are then placeholders).
    pub shared_inter: usize,
}

impl StepShape {
    /// The shape one layer of `spec` needs for steps of up to `max_tokens` tokens.
    pub fn of(spec: &MoeLayerSpec, max_tokens: usize) -> Self {
        Self {
            max_tokens,
            hidden: spec.hidden,
            inter: spec.inter,
            experts: spec.routing.experts,
            top_k: spec.routing.top_k,
            logit_cols: logit_cols(spec),
            shared_inter: spec.shared_inter.unwrap_or(0),
        }
    }

    /// The smallest shape that holds both.
    pub fn union(self, o: Self) -> Self {
        Self {
            max_tokens: self.max_tokens.max(o.max_tokens),
            hidden: self.hidden.max(o.hidden),
            inter: self.inter.max(o.inter),
            experts: self.experts.max(o.experts),
            top_k: self.top_k.max(o.top_k),
            logit_cols: self.logit_cols.max(o.logit_cols),
            shared_inter: self.shared_inter.max(o.shared_inter),
        }
    }

    fn pairs(&self) -> usize {
        self.max_tokens * self.top_k
    }

    /// Bytes of each buffer, by name, in allocation order.
    pub fn buffer_bytes(&self) -> [(&'static str, u64); 12] {
        let (t, e, pairs) = (self.max_tokens, self.experts, self.pairs());
        let words = |n: usize| (n * 4) as u64;
        // The tile list is sized for one-row tiles, the most any tiling produces.
        let tiles = permute::max_tiles(pairs, 1, e) * 4;
        [
            ("expert counts", words(e)),
            ("router logits", words(t * self.logit_cols)),
            ("expert ids", words(pairs)),
            ("expert weights", words(pairs)),
            ("shared gate", words(t)),
            ("expert offsets", words(e + 1)),
            ("expert cursor", words(e)),
            ("gemm tiles", words(tiles)),
            ("gemm dispatch args", words(permute::ARGS_WORDS)),
            ("sorted rows", words(pairs)),
            ("pair positions", words(pairs)),
            ("expert hidden", words(pairs * self.inter)),
        ]
    }

    /// Bytes of the expert outputs, the shared expert's activations and output, and the
    /// router status word.
    fn output_bytes(&self) -> [(&'static str, u64); 4] {
        let shared_rows = if self.shared_inter > 0 {
            self.max_tokens
        } else {
            1
        };
        [
            ("expert output", (self.pairs() * self.hidden * 4) as u64),
            (
                "shared expert hidden",
                (shared_rows * self.shared_inter.max(1) * 4) as u64,
            ),
            (
                "shared expert output",
                (shared_rows * self.hidden * 4) as u64,
            ),
            ("router status", 4),
        ]
    }

    /// Everything the step buffers allocate, in bytes (each buffer padded as created).
    pub fn bytes(&self) -> u64 {
        let outputs = self.output_bytes();
        self.buffer_bytes()
            .iter()
            .chain(outputs.iter())
            .map(|&(_, b)| padded(b))
            .sum()
    }
}

/// The buffers of one MoE step, shared by the layers built on them.
pub struct StepBuffers {
    /// What the buffers were sized for.
    pub shape: StepShape,
    /// `[experts]` tokens per expert, counted by the selection until the scan zeroes them.
    pub counts: wgpu::Buffer,
    /// Logits, ids, weights and shared gate of the last step.
    pub route: RouterOutputs,
    /// `[experts + 1]` segment starts; `[experts]` scatter cursors.
    pub offsets: wgpu::Buffer,
    /// `[experts]` u32 scatter cursors.
    pub cursor: wgpu::Buffer,
    /// `[tiles, 4]` GEMM tiles (full list from the start, tail list from the end).
    pub tiles: wgpu::Buffer,
    /// `[12]` indirect dispatch sizes of the grouped GEMMs (full and tail tile lists).
    pub args: wgpu::Buffer,
    /// `[max_tokens · k]` token of each expert-sorted row.
    pub rows: wgpu::Buffer,
    /// `[max_tokens · k]` expert-sorted row of each (token, slot) pair, `INVALID` if dropped.
    pub pos: wgpu::Buffer,
    /// `[max_tokens · k, inter]` gate/up activations in expert-sorted rows.
    pub hidden: wgpu::Buffer,
    /// `[max_tokens · k, hidden]` expert outputs in expert-sorted rows.
    pub expert_out: wgpu::Buffer,
    /// `[max_tokens, shared_inter]` shared expert activations (a placeholder without one).
    pub shared_hidden: wgpu::Buffer,
    /// `[max_tokens, hidden]` shared expert output (`[1, hidden]` without a shared expert).
    pub shared_out: wgpu::Buffer,
    /// `[1]` u32: 0, or 1 + the decoder layer of the first layer since it was cleared whose
    /// selection read a NaN or infinite router logit (see [`read_checked`]).
    pub status: wgpu::Buffer,
    /// Where the experts a layer computes on the CPU upload their rows: made when a layer
    /// first does ([`Self::cpu_rows`]), so models that never do hold none.
    cpu_rows: OnceLock<CpuRowBuffers>,
}

/// Reads the first `status_at + 4` bytes of `staging`, into which a step copied its output
/// and then, at `status_at`, the router status word; a nonzero word is the error it stands
/// for: the layer it names saw a NaN or infinite router logit.
pub fn read_checked(ctx: &Context, staging: &Staging, status_at: u64) -> Result<Vec<u8>> {
    let bytes = staging.read_bytes(ctx, status_at + 4)?;
    match decode::<u32>(&bytes, status_at, 1)[0] {
        0 => Ok(bytes),
        tag => Err(Error::NonFiniteRouterLogits {
            layer: tag as usize - 1,
        }),
    }
}

impl StepBuffers {
    /// Allocates the buffers for `shape`.
    pub fn new(ctx: &Context, shape: StepShape) -> Result<Self> {
        if shape.max_tokens == 0 || shape.top_k == 0 || shape.experts == 0 {
            return Err(Error::input(format!(
                "step buffers need at least one token, expert and pick: {shape:?}"
            )));
        }
        let [
            counts,
            logits,
            ids,
            weights,
            shared_gate,
            offsets,
            cursor,
            tiles,
            args,
            rows,
            pos,
            hidden,
        ] = shape.buffer_bytes();
        let [expert_out, shared_hidden, shared_out, status] = shape.output_bytes();
        let storage = |(label, bytes): (&str, u64)| ctx.storage(label, bytes);
        Ok(Self {
            shape,
            counts: storage(counts)?,
            route: RouterOutputs {
                logits: storage(logits)?,
                ids: storage(ids)?,
                weights: storage(weights)?,
                shared_gate: storage(shared_gate)?,
            },
            offsets: storage(offsets)?,
            cursor: storage(cursor)?,
            tiles: storage(tiles)?,
            args: ctx.indirect_storage(args.0, args.1)?,
            rows: storage(rows)?,
            pos: storage(pos)?,
            hidden: storage(hidden)?,
            expert_out: storage(expert_out)?,
            shared_hidden: storage(shared_hidden)?,
            shared_out: storage(shared_out)?,
            status: storage(status)?,
            cpu_rows: OnceLock::new(),
        })
    }

    /// The buffers of CPU-computed expert rows: up to every pair of a step, made on first use.
    pub fn cpu_rows(&self, ctx: &Context) -> Result<&CpuRowBuffers> {
        if let Some(b) = self.cpu_rows.get() {
            return Ok(b);
        }
        let s = self.shape;
        let made = CpuRowBuffers::new(ctx, s.max_tokens * s.top_k, s.hidden)?;
        Ok(self.cpu_rows.get_or_init(|| made))
    }

    /// Refuses a layer these buffers are too small for.
    pub fn check_fits(&self, need: StepShape) -> Result<()> {
        if self.shape.union(need) != self.shape {
            return Err(Error::input(format!(
                "step buffers built for {:?} cannot hold a layer that needs {need:?}",
                self.shape
            )));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Qwen3-30B-A3B: hidden 2048, 128 experts of width 768, top-8, no shared expert.
    const QWEN3_30B: StepShape = StepShape {
        max_tokens: 256,
        hidden: 2048,
        inter: 768,
        experts: 128,
        top_k: 8,
        logit_cols: 128,
        shared_inter: 0,
    };

    #[test]
    fn one_set_of_step_buffers_replaces_one_per_layer() {
        let one = QWEN3_30B.bytes();
        // Before, each of the 48 MoE layers allocated the same buffers plus a readback staging
        // buffer of output, logits, ids and weights.
        let s = QWEN3_30B;
        let readback = (s.max_tokens * (s.hidden + s.logit_cols + 2 * s.top_k) * 4) as u64;
        let before = 48 * (one + readback);
        println!(
            "Qwen3-30B-A3B, max_batch 256: step buffers {one} bytes once; \
             before: 48 × ({one} + {readback} readback) = {before} bytes"
        );
        // The two [tokens · k, width] expert activations dominate.
        assert_eq!(one, 23_278_176);
        assert!(before > 1_200_000_000);
    }

    #[test]
    fn the_union_holds_both_shapes() {
        let small = StepShape {
            hidden: 64,
            shared_inter: 96,
            ..QWEN3_30B
        };
        let u = QWEN3_30B.union(small);
        assert_eq!(u.hidden, 2048);
        assert_eq!(u.shared_inter, 96);
        assert!(u.bytes() >= QWEN3_30B.bytes().max(small.bytes()));
    }
}
