//! `shaders/matmul.wgsl`: y = act(x · Wᵀ + b), dense or grouped over experts.

use crate::error::{Error, Result};
use crate::gpu::{BUFFER_ALIGN, Binding, Context, KernelDef, Override, PipelineKey};
use crate::kernels::row_split::SplitWeights;
use crate::kernels::{Dispatch, groups};
use bytemuck::{Pod, Zeroable};

pub use crate::kernels::tiling::{MatmulVariant, Tiling};
pub use crate::spec::{ExpertFormat, Glu, WeightFormat};

/// The matmul family's shared declarations (parameters, bindings, override constants, weight
/// decoding), first in every matmul kernel's source.
pub(crate) const MATMUL_COMMON: &str = include_str!("../../shaders/matmul_common.wgsl");
/// The matvec helpers, after [`MATMUL_COMMON`] in the decode kernels.
pub(crate) const MATVEC_COMMON: &str = include_str!("../../shaders/matvec_common.wgsl");

/// Rows come from the expert tile list rather than 0..m.
pub const GROUPED: Override = Override("GROUPED");
/// Grouped: the tiles are the tail list.
pub const TAIL: Override = Override("TAIL");
/// x rows are gathered through the permutation.
pub const GATHER: Override = Override("GATHER");
/// The fused activation ([`Glu`]'s code).
pub const GLU: Override = Override("GLU");
/// Add the per-slot bias.
pub const BIAS: Override = Override("BIAS");
/// The weight storage (0 f32, 1 f16 pairs, 2 int8, 3 int4).
pub const WFMT: Override = Override("WFMT");
/// x rows are read as aligned vec4s.
pub const X_VEC4: Override = Override("X_VEC4");
/// Threads along rows ([`Tiling::wg_m`]).
pub const WG_M: Override = Override("WG_M");
/// Threads along columns ([`Tiling::wg_n`]).
pub const WG_N: Override = Override("WG_N");
/// Rows per thread ([`Tiling::tm`]).
pub const TM: Override = Override("TM");
/// Columns per thread ([`Tiling::tn`]).
pub const TN: Override = Override("TN");

/// The override constants of every matmul kernel, declared in [`MATMUL_COMMON`].
const OVERRIDES: &[Override] = &[
    GROUPED, TAIL, GATHER, GLU, BIAS, WFMT, X_VEC4, WG_M, WG_N, TM, TN,
];

/// The bindings of every matmul kernel, declared in [`MATMUL_COMMON`].
const BINDINGS: &[Binding] = &[
    Binding::uniform("p"),      // MatmulParams
    Binding::read("x"),         // [m or tokens, x_stride] f32
    Binding::read("w"),         // [slots, w_slot_vecs] words: a part's rows, then scales
    Binding::read("bias"),      // [slots, bias_slot]
    Binding::read("slots"),     // [experts] expert -> slot
    Binding::read("tiles"),     // [max tiles] (expert, row0, row_end, _)
    Binding::read("rows"),      // [pairs] sorted row -> pair id
    Binding::read_write("out"), // [rows, out_stride]
];

/// Register-blocked matmul (`shaders/matmul.wgsl`).
pub static MATMUL: KernelDef = KernelDef {
    name: "matmul",
    parts: &[MATMUL_COMMON, include_str!("../../shaders/matmul.wgsl")],
    bindings: BINDINGS,
    overrides: OVERRIDES,
};

/// Shared-memory tiled matmul (`shaders/matmul_tiled.wgsl`).
pub static MATMUL_TILED: KernelDef = KernelDef {
    name: "matmul_tiled",
    parts: &[
        MATMUL_COMMON,
        include_str!("../../shaders/matmul_tiled.wgsl"),
    ],
    bindings: BINDINGS,
    overrides: OVERRIDES,
};

/// Decode matvec (`shaders/matmul_vec.wgsl`).
pub static MATMUL_VEC: KernelDef = KernelDef {
    name: "matmul_vec",
    parts: &[
        MATMUL_COMMON,
        MATVEC_COMMON,
        include_str!("../../shaders/matmul_vec.wgsl"),
    ],
    bindings: BINDINGS,
    overrides: OVERRIDES,
};

/// Mirrors `Params` in `shaders/matmul.wgsl`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Pod, Zeroable)]
pub(crate) struct MatmulParams {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub w_row_vecs: u32,
    pub w_slot_vecs: u32,
    pub bias_slot: u32,
    pub x_stride: u32,
    pub out_stride: u32,
    pub top_k: u32,
    pub act_limit: f32,
    pub act_alpha: f32,
    pub w_scale_vecs: u32,
    pub col0: u32,
    pub n_total: u32,
    pub _pad: [u32; 2],
}

impl Glu {
    fn code(self) -> f64 {
        match self {
            Glu::None => 0.0,
            Glu::Silu => 1.0,
            Glu::ClampedSwiglu { .. } => 2.0,
        }
    }
}

/// Everything that fixes a matmul pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MatmulSpec {
    /// Output columns.
    pub n: usize,
    /// Input columns (the reduction length).
    pub k: usize,
    /// Gated activation fused into the output (gate and up rows interleaved in the weights).
    pub glu: Glu,
    /// Adds a per-slot bias.
    pub bias: bool,
    /// Storage format of the weights.
    pub format: WeightFormat,
    /// Rows come from the expert tile list rather than 0..m.
    pub grouped: bool,
    /// x rows are gathered through the permutation (token = pair / top_k).
    pub gather: bool,
    /// Grouped: the tiles are the tail list (`TAIL` in `shaders/matmul_common.wgsl`).
    pub tail: bool,
    /// Workgroup shape and register tile.
    pub tiling: Tiling,
}

impl MatmulSpec {
    /// A plain f32 matmul `[m, k]` · `[n, k]`ᵀ with the default prefill tiling.
    pub fn dense(n: usize, k: usize) -> Self {
        Self {
            n,
            k,
            glu: Glu::None,
            bias: false,
            format: WeightFormat::F32,
            grouped: false,
            gather: false,
            tail: false,
            tiling: Tiling::PREFILL,
        }
    }

    /// The pipeline key: kernel variant and override constants. `x_vec4`: x rows are read as
    /// aligned vec4s (x_stride % 4 == 0).
    pub(crate) fn key(&self, x_vec4: bool) -> PipelineKey {
        let t = self.tiling;
        let kernel = match t.variant {
            MatmulVariant::Registers => &MATMUL,
            MatmulVariant::SharedTiles => &MATMUL_TILED,
            MatmulVariant::Vector => &MATMUL_VEC,
        };
        PipelineKey::new(kernel)
            .flag(GROUPED, self.grouped)
            .flag(TAIL, self.tail)
            .flag(GATHER, self.gather)
            .with(GLU, self.glu.code())
            .flag(BIAS, self.bias)
            .with(WFMT, self.format.shader_code())
            .flag(X_VEC4, x_vec4)
            .with(WG_M, t.wg_m as f64)
            .with(WG_N, t.wg_n as f64)
            .with(TM, t.tm as f64)
            .with(TN, t.tn as f64)
    }

    /// The same grouped GEMM over the tail tile list, with the tiling's tail, if it has one.
    pub fn tail_spec(&self) -> Option<MatmulSpec> {
        let tiling = self.tiling.tail().filter(|_| self.grouped)?;
        Some(MatmulSpec {
            tiling,
            tail: true,
            ..*self
        })
    }

    /// Weight rows of one slot.
    pub fn weight_rows(&self) -> usize {
        self.n * self.glu.rows_per_output()
    }

    /// Bytes of one slot's weights.
    pub fn slot_bytes(&self) -> u64 {
        self.format.matrix_bytes(self.weight_rows(), self.k)
    }
}

/// The buffers a matmul reads and writes. Unused ones (bias without BIAS, the tile list in
/// dense mode) may be any small buffer.
#[derive(Clone, Copy)]
pub struct MatmulBuffers<'a> {
    /// `[m or tokens, x_stride]` f32 input rows.
    pub x: &'a wgpu::Buffer,
    /// `[slots, slot words]` packed weights (the rows, then their scales), in one buffer per
    /// run of output columns.
    pub w: &'a SplitWeights,
    /// `[slots, weight rows]` f32 biases.
    pub bias: &'a wgpu::Buffer,
    /// `[experts]` u32 slot of each expert.
    pub slots: &'a wgpu::Buffer,
    /// `[max tiles, 4]` u32 tile list from the permutation.
    pub tiles: &'a wgpu::Buffer,
    /// `[pairs]` u32 pair of each sorted row.
    pub rows: &'a wgpu::Buffer,
    /// `[rows, out_stride]` f32 output.
    pub out: &'a wgpu::Buffer,
}

/// A matmul bound to its buffers: one dispatch per part of the split weights.
pub struct Matmul {
    /// What the pipeline was built for (`n` counts every part's columns).
    pub spec: MatmulSpec,
    parts: Vec<Dispatch<MatmulParams>>,
}

impl Matmul {
    /// `x_stride` and `out_stride` are floats per row; `top_k` is the pair count per token for
    /// gathered rows.
    pub fn new(
        ctx: &Context,
        spec: MatmulSpec,
        x_stride: usize,
        out_stride: usize,
        top_k: usize,
        buffers: MatmulBuffers<'_>,
    ) -> Result<Self> {
        spec.tiling.validate(ctx)?;
        if !buffers.x.size().is_multiple_of(BUFFER_ALIGN) {
            return Err(Error::input(format!(
                "a matmul input buffer has {} bytes, not a multiple of {BUFFER_ALIGN} \
                 (create it with Context::storage)",
                buffers.x.size()
            )));
        }
        let ws = buffers.w.shape;
        if (ws.n, ws.rows_per_output, ws.k, ws.format)
            != (spec.n, spec.glu.rows_per_output(), spec.k, spec.format)
        {
            return Err(Error::input(format!(
                "matmul weights of shape {ws:?} do not match the matmul {spec:?}"
            )));
        }
        let row_vecs = spec.format.row_words(spec.k) / 4;
        let (act_limit, act_alpha) = match spec.glu {
            Glu::ClampedSwiglu { limit, alpha } => (limit, alpha),
            _ => (0.0, 0.0),
        };
        let key = spec.key(x_stride.is_multiple_of(4));
        let b = &buffers;
        let parts =
            b.w.parts
                .iter()
                .map(|part| {
                    let cols = part.cols;
                    let rows = cols.len * spec.glu.rows_per_output();
                    let params = MatmulParams {
                        m: 0,
                        n: cols.len as u32,
                        k: spec.k as u32,
                        w_row_vecs: row_vecs as u32,
                        w_slot_vecs: (ws.slot_bytes(cols.len) / 16) as u32,
                        bias_slot: spec.weight_rows() as u32,
                        x_stride: x_stride as u32,
                        out_stride: out_stride as u32,
                        top_k: top_k.max(1) as u32,
                        act_limit,
                        act_alpha,
                        w_scale_vecs: (rows * row_vecs) as u32,
                        col0: cols.first as u32,
                        n_total: spec.n as u32,
                        _pad: [0; 2],
                    };
                    let all = [b.x, &part.buffer, b.bias, b.slots, b.tiles, b.rows, b.out];
                    Dispatch::new(ctx, &key, params, &all)
                })
                .collect::<Result<_>>()?;
        Ok(Self { spec, parts })
    }

    /// Each part's parameter block (its `m` is the last dense encode's), in part order.
    pub(crate) fn part_params(&self) -> Vec<MatmulParams> {
        self.parts.iter().map(|d| d.params()).collect()
    }

    /// Workgroups along the output columns of the widest part: what an indirect dispatch's
    /// arguments give every part (a narrower part's extra workgroups return at once).
    pub fn col_blocks(&self) -> u32 {
        let widest = self.parts.iter().map(|d| d.params().n).max().unwrap_or(0);
        groups(widest as usize, self.spec.tiling.block_n())
    }

    /// Dense: rows 0..m.
    pub fn encode(&self, ctx: &Context, pass: &mut wgpu::ComputePass<'_>, m: usize) {
        let t = self.spec.tiling;
        for d in &self.parts {
            let params = MatmulParams {
                m: m as u32,
                ..d.params()
            };
            d.set_params(ctx, params);
            d.dispatch(
                pass,
                groups(m, t.block_m()),
                groups(params.n as usize, t.block_n()),
            );
        }
    }

    /// Grouped with a tile list of `tiles` entries already in the tiles buffer (written by the
    /// host rather than by the permutation, as the autotuner and benchmarks do).
    pub fn encode_tiles(&self, pass: &mut wgpu::ComputePass<'_>, tiles: u32) {
        let t = self.spec.tiling;
        for d in &self.parts {
            d.dispatch(pass, tiles, groups(d.params().n as usize, t.block_n()));
        }
    }

    /// Grouped: one workgroup row per tile, sizes read from `args` at `offset` (whose column
    /// blocks are [`Self::col_blocks`]).
    pub fn encode_indirect(
        &self,
        pass: &mut wgpu::ComputePass<'_>,
        args: &wgpu::Buffer,
        offset: u64,
    ) {
        for d in &self.parts {
            d.dispatch_indirect(pass, args, offset);
        }
    }
}
