//! Every matmul tiling at a long k. llvmpipe (lavapipe, and GL's llvmpipe) ends an
//! invocation's loops after 65535 iterations in all, so a kernel whose k loop runs a
//! per-column loop each word came out wrong at real widths (Mixtral's down projection,
//! k = 14336) while every small-shape sweep passed.

use moe_gpu::kernels::matmul::{Glu, WeightFormat};

use crate::common;
use crate::common::matmul::all_tilings;
use crate::matmul_variants::{Case, run_dense, run_grouped};

/// Every tiling the tuner may pick, at Mixtral's k of 14 336 in f32 and f16; the failures are
/// listed.
#[test]
fn every_tiling_matches_the_reference_at_a_long_k() {
    let ctx = common::ctx();
    let long = |format, k| Case {
        n: 9,
        k,
        glu: Glu::Silu,
        bias: false,
        format,
        x_stride: k,
    };
    let mut failed = Vec::new();
    for tiling in all_tilings() {
        for c in [
            long(WeightFormat::F32, 14_336),
            long(WeightFormat::F16, 14_336),
        ] {
            let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                run_dense(ctx, tiling, &c, 8, 11);
                run_grouped(ctx, tiling, &c, 2, 1, &[1; 8], None, 12);
            }));
            if run.is_err() {
                failed.push(format!("{tiling:?} {:?}", c.format));
            }
        }
    }
    assert!(failed.is_empty(), "wrong at k = 14336: {failed:#?}");
}
