//! `shaders/combine.wgsl`: weighted gather of each token's expert rows, plus the shared
//! expert; and `shaders/down_combine.wgsl`, the same sum fused into the decode down projection.

use bytemuck::{Pod, Zeroable};

use crate::error::{Error, Result};
use crate::gpu::{Binding, Context, KernelDef, Override, PipelineKey};
use crate::kernels::matmul::{
    self, Glu, MATMUL_COMMON, MATVEC_COMMON, Matmul, MatmulBuffers, MatmulParams, WeightFormat,
};
use crate::kernels::tiling::MatmulVariant;
use crate::kernels::{Dispatch, WORKGROUP, groups};

/// Add a shared-expert output.
pub const SHARED: Override = Override("SHARED");
/// Scale the shared-expert output by a per-token gate.
pub const SHARED_GATE: Override = Override("SHARED_GATE");

/// The weighted gather of each token's expert rows (`shaders/combine.wgsl`).
pub static COMBINE: KernelDef = KernelDef {
    name: "combine",
    parts: &[include_str!("../../shaders/combine.wgsl")],
    bindings: &[
        Binding::uniform("p"),        // CombineParams
        Binding::read("weights"),     // [tokens, k_max]
        Binding::read("pos"),         // [tokens, k_max] pair -> row
        Binding::read("y"),           // [pairs, y_stride] sorted rows
        Binding::read("shared_out"),  // [tokens, y_stride]
        Binding::read("shared_gate"), // [tokens]
        Binding::read_write("out"),   // [tokens, hidden]
    ],
    overrides: &[SHARED, SHARED_GATE],
};

/// The decode down projection fused with the combine (`shaders/down_combine.wgsl`): the
/// matvec's bindings, with `out` the combined output, then the combine's.
pub static DOWN_COMBINE: KernelDef = KernelDef {
    name: "down_combine",
    parts: &[
        MATMUL_COMMON,
        MATVEC_COMMON,
        include_str!("../../shaders/down_combine.wgsl"),
    ],
    bindings: &[
        Binding::uniform("p"),        // MatmulParams
        Binding::read("x"),           // [pairs, x_stride] expert hidden rows
        Binding::read("w"),           // [slots, w_slot_vecs] down weights
        Binding::read("bias"),        // [slots, bias_slot]
        Binding::read("slots"),       // [experts] expert -> slot
        Binding::read("tiles"),       // [max tiles] (expert, row0, row_end, _)
        Binding::read("rows"),        // [pairs] sorted row -> pair id
        Binding::read_write("out"),   // [tokens, n] combined output
        Binding::read("ids"),         // [tokens, top_k] expert of each pair
        Binding::read("pos"),         // [tokens, top_k] sorted row of each pair
        Binding::read("route_w"),     // [tokens, top_k] routing weights
        Binding::read("shared_out"),  // [tokens, n]
        Binding::read("shared_gate"), // [tokens]
        Binding::read_write("y"),     // [pairs, n] expert outputs, sorted rows
    ],
    overrides: &[
        matmul::GROUPED,
        matmul::TAIL,
        matmul::GATHER,
        matmul::GLU,
        matmul::BIAS,
        matmul::WFMT,
        matmul::X_VEC4,
        matmul::WG_M,
        matmul::WG_N,
        matmul::TM,
        matmul::TN,
        SHARED,
        SHARED_GATE,
    ],
};

/// Mirrors `Params` in `shaders/combine.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct CombineParams {
    pub tokens: u32,
    pub hidden: u32,
    pub k_max: u32,
    pub y_stride: u32,
}

#[derive(Clone, Copy)]
/// The buffers of a [`Combine`].
pub struct CombineBuffers<'a> {
    /// `[tokens, k]` f32 routing weights (0 for dropped slots).
    pub weights: &'a wgpu::Buffer,
    /// `[tokens, k]` u32 sorted row of each (token, slot) pair.
    pub pos: &'a wgpu::Buffer,
    /// `[pairs, hidden]` f32 expert output rows, in sorted order.
    pub y: &'a wgpu::Buffer,
    /// `[tokens, hidden]` f32 shared-expert output (unread without one).
    pub shared_out: &'a wgpu::Buffer,
    /// `[tokens]` f32 shared-expert gate logits (unread without a gate).
    pub shared_gate: &'a wgpu::Buffer,
    /// `[tokens, hidden]` f32 layer output.
    pub out: &'a wgpu::Buffer,
}

/// The weighted gather of each token's expert rows plus the shared expert, bound to its buffers.
pub struct Combine {
    hidden: usize,
    dispatch: Dispatch<CombineParams>,
}

impl Combine {
    /// Builds the combine of `hidden`-wide rows for up to `k_max` experts per token; `shared` adds
    /// the shared-expert output, `shared_gate` scales it by its gate.
    pub fn new(
        ctx: &Context,
        hidden: usize,
        k_max: usize,
        shared: bool,
        shared_gate: bool,
        b: CombineBuffers<'_>,
    ) -> Result<Self> {
        let key = PipelineKey::new(&COMBINE)
            .flag(SHARED, shared)
            .flag(SHARED_GATE, shared_gate);
        let params = CombineParams {
            tokens: 0,
            hidden: hidden as u32,
            k_max: k_max as u32,
            y_stride: hidden as u32,
        };
        let dispatch = Dispatch::new(
            ctx,
            &key,
            params,
            &[b.weights, b.pos, b.y, b.shared_out, b.shared_gate, b.out],
        )?;
        Ok(Self { hidden, dispatch })
    }

    /// Records the combine of the first `tokens` tokens.
    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        self.dispatch.set_params(
            ctx,
            CombineParams {
                tokens: tokens as u32,
                ..self.dispatch.params()
            },
        );
        self.dispatch
            .dispatch(pass, groups(self.hidden, WORKGROUP), tokens as u32);
    }
}

/// The buffers of [`DownCombine`] beyond the down GEMM's own (which it takes from that GEMM's
/// [`MatmulBuffers`]).
pub struct DownCombineBuffers<'a> {
    /// The down GEMM's: x = the expert hidden rows, w = the arena's down weights, …; its `out`
    /// is the expert output rows, still written.
    pub down: MatmulBuffers<'a>,
    /// [tokens, k] expert ids.
    pub ids: &'a wgpu::Buffer,
    /// The combine's buffers (its `y` is unused: the rows come from the down GEMM).
    pub combine: CombineBuffers<'a>,
}

/// The decode down projection fused with the combine (`shaders/down_combine.wgsl`): one
/// dispatch instead of two, with the bits of the unfused pair. Only for GLU-free down weights
/// without per-row scales (every format but int8) in a `Tiling::vector` tiling.
pub struct DownCombine {
    /// One dispatch per part of the down weights, with its column blocks.
    parts: Vec<(Dispatch<MatmulParams>, u32)>,
}

impl DownCombine {
    /// Mirrors `down` (the layer's decode down GEMM, grouped, no gather) and writes the
    /// combined output of `hidden` columns, one dispatch per part of its weights.
    pub fn new(
        ctx: &Context,
        down: &Matmul,
        hidden: usize,
        shared: bool,
        shared_gate: bool,
        b: DownCombineBuffers<'_>,
    ) -> Result<Self> {
        let spec = down.spec;
        if spec.tiling.variant != MatmulVariant::Vector
            || spec.glu != Glu::None
            || spec.gather
            || spec.format == WeightFormat::Int8
        {
            return Err(Error::input(format!(
                "down_combine fuses a gather-free, GLU-free matvec without per-row scales \
                 (not int8), not {spec:?}"
            )));
        }
        let (d, c) = (&b.down, &b.combine);
        let part_params = down.part_params();
        let x_vec4 = part_params.first().is_some_and(|p| p.x_stride % 4 == 0);
        let key = spec
            .key(x_vec4)
            .for_kernel(&DOWN_COMBINE)
            .flag(SHARED, shared)
            .flag(SHARED_GATE, shared_gate);
        let parts = part_params
            .into_iter()
            .zip(&d.w.parts)
            .map(|(params, part)| {
                let params = MatmulParams {
                    m: 0,
                    out_stride: hidden as u32,
                    ..params
                };
                let buffers = [
                    d.x,
                    &part.buffer,
                    d.bias,
                    d.slots,
                    d.tiles,
                    d.rows,
                    c.out,
                    b.ids,
                    c.pos,
                    c.weights,
                    c.shared_out,
                    c.shared_gate,
                    d.out,
                ];
                let dispatch = Dispatch::new(ctx, &key, params, &buffers)?;
                Ok((dispatch, groups(part.cols.len, spec.tiling.block_n())))
            })
            .collect::<Result<_>>()?;
        Ok(Self { parts })
    }

    /// Records `tokens` tokens: one workgroup per (token, column block).
    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, tokens: usize) {
        for (d, cols) in &self.parts {
            let params = MatmulParams {
                m: tokens as u32,
                ..d.params()
            };
            d.set_params(ctx, params);
            d.dispatch(pass, tokens as u32, *cols);
        }
    }
}
