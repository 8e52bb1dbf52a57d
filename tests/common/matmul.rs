//! Dense matmuls on the GPU for the kernel tests, and every tiling they sweep.

use moe_gpu::Context;
use moe_gpu::kernels::matmul::{Matmul, MatmulBuffers, MatmulSpec, Tiling};
use moe_gpu::kernels::row_split::{SplitShape, SplitWeights, pack_columns};
use moe_gpu::kernels::tiling::TileKind;

/// The default prefill and decode tilings, then every other candidate the autotuner may pick.
pub fn all_tilings() -> Vec<Tiling> {
    let mut t = vec![Tiling::PREFILL, Tiling::DECODE];
    for kind in [TileKind::Prefill, TileKind::Decode] {
        for c in Tiling::candidates(kind) {
            if !t.contains(&c) {
                t.push(c);
            }
        }
    }
    t
}

/// Runs a dense matmul over `m` rows: `w` ([weight_rows, k] f32) packed in `spec.format`,
/// `bias` read only where `spec.bias` is set.
pub fn gpu_dense(spec: MatmulSpec, x: &[f32], m: usize, w: &[f32], bias: &[f32]) -> Vec<f32> {
    run_dense(spec, x, m, w, bias, |ctx, buffers, pass| {
        let mm = Matmul::new(ctx, spec, spec.k, spec.n, 1, buffers).unwrap();
        mm.encode(ctx, pass, m);
    })
}

/// Uploads a dense matmul's input, weights (packed in `spec.format`) and bias, lets `record`
/// build a kernel on them and record it for `m` rows, and reads back `[m, n]`.
pub fn run_dense(
    spec: MatmulSpec,
    x: &[f32],
    m: usize,
    w: &[f32],
    bias: &[f32],
    record: impl FnOnce(&Context, MatmulBuffers<'_>, &mut wgpu::ComputePass<'_>),
) -> Vec<f32> {
    let ctx = super::ctx();
    let xb = ctx.storage_with("x", x).unwrap();
    let wb = split_weights(ctx, &spec, &[w], u64::MAX);
    let bb = ctx.storage_with("b", bias).unwrap();
    let zero = ctx.storage_with("zero", &[0u32]).unwrap();
    let out = ctx.storage("out", (m * spec.n * 4) as u64).unwrap();
    let buffers = MatmulBuffers {
        x: &xb,
        w: &wb,
        bias: &bb,
        slots: &zero,
        tiles: &zero,
        rows: &zero,
        out: &out,
    };
    super::run_pass(ctx, |pass| record(ctx, buffers, pass));
    ctx.read_back(&out, m * spec.n).unwrap()
}

/// Uploads per-slot `[n · rows_per_output, k]` f32 matrices (with a GLU the gate rows, then the
/// up rows) for `spec`, split by output rows under a binding limit of `limit` bytes.
pub fn split_weights(
    ctx: &Context,
    spec: &MatmulSpec,
    slots: &[&[f32]],
    limit: u64,
) -> SplitWeights {
    let shape = split_shape(spec, slots.len());
    let weights = SplitWeights::new_within(ctx, "w", shape, limit).unwrap();
    for (s, m) in slots.iter().enumerate() {
        let blocks: Vec<&[f32]> = m.chunks((spec.n * spec.k).max(1)).collect();
        weights
            .write_slot(ctx, s, |cols| {
                pack_columns(spec.format, &blocks, spec.k, cols)
            })
            .unwrap();
    }
    weights
}

/// The split shape of `slots` slots of `spec`'s weights.
pub fn split_shape(spec: &MatmulSpec, slots: usize) -> SplitShape {
    SplitShape {
        n: spec.n,
        rows_per_output: spec.glu.rows_per_output(),
        k: spec.k,
        format: spec.format,
        slots,
    }
}

/// A binding limit that splits `slots` slots of `spec`'s weights into `parts` parts (fewer
/// when n is smaller).
pub fn limit_for_parts(spec: &MatmulSpec, slots: usize, parts: usize) -> u64 {
    let shape = split_shape(spec, slots);
    shape.slot_bytes(spec.n.div_ceil(parts).max(1)) * slots.max(1) as u64
}
