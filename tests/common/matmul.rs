//! Dense matmuls on the GPU for the kernel tests, and every tiling they sweep.

use moe_gpu::Context;
use moe_gpu::kernels::matmul::{Matmul, MatmulBuffers, MatmulSpec, Tiling};
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
    let mut packed = Vec::new();
    spec.format
        .pack_into(&mut packed, w, spec.weight_rows(), spec.k);
    let xb = ctx.storage_with("x", x).unwrap();
    let wb = ctx.storage_with("w", &packed).unwrap();
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
