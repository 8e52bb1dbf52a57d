//! Shared test helpers: one GPU context per test binary, tolerances, comparisons.
//!
//! Each of the test binaries (kernels, layer, model, cli, loaders) compiles this module and
//! uses a part of it, so what one binary leaves unused is not dead: every helper here is used
//! by at least one binary.
#![allow(dead_code)]

pub mod attention;
pub mod edit;
pub mod fixtures;
pub mod gguf;
pub mod layer;
pub mod matmul;
pub mod residency;
pub mod text;

use std::sync::OnceLock;

use moe_gpu::Context;

/// The GPU context for this test binary. Fails (never skips) when no adapter exists. Layers
/// use the fixed default tilings: no test depends on what the autotuner picked (each tiling
/// has its own sweep in tests/kernels/matmul_variants.rs).
pub fn ctx() -> &'static Context {
    static CTX: OnceLock<Context> = OnceLock::new();
    CTX.get_or_init(|| match Context::new() {
        Ok(c) => {
            c.set_autotune(false);
            c
        }
        Err(e) => panic!(
            "GPU tests need an adapter and none was found: {e}\n\
             On Debian/Ubuntu: apt-get install -y --no-install-recommends mesa-vulkan-drivers libvulkan1"
        ),
    })
}

/// ‖got − want‖² / ‖want‖², in f64.
pub fn nmse(got: &[f32], want: &[f32]) -> f64 {
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        num += (*g as f64 - *w as f64).powi(2);
        den += (*w as f64).powi(2);
    }
    num / den.max(1e-30)
}

/// Normalised RMS error ‖got − want‖ / ‖want‖.
pub fn nrmse(got: &[f32], want: &[f32]) -> f64 {
    nmse(got, want).sqrt()
}

/// Largest |a - b| / max(1, |b|).
pub fn max_scaled_err(got: &[f32], want: &[f32]) -> f32 {
    assert_eq!(got.len(), want.len(), "length mismatch");
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / w.abs().max(1.0))
        .fold(0.0, f32::max)
}

pub fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    let err = max_scaled_err(got, want);
    assert!(
        err <= tol && got.iter().all(|v| v.is_finite()),
        "{what}: max scaled error {err:e} > {tol:e}"
    );
}

/// Compares top-k as sets per token, then weights matched by id.
pub fn assert_same_routing(
    what: &str,
    k: usize,
    ids: &[u32],
    weights: &[f32],
    want_ids: &[u32],
    want_weights: &[f32],
    tol: f32,
) {
    let tokens = want_ids.len() / k;
    for t in 0..tokens {
        let mut got: Vec<(u32, f32)> = (0..k)
            .map(|j| (ids[t * k + j], weights[t * k + j]))
            .collect();
        let mut want: Vec<(u32, f32)> = (0..k)
            .map(|j| (want_ids[t * k + j], want_weights[t * k + j]))
            .collect();
        got.sort_by_key(|p| p.0);
        want.sort_by_key(|p| p.0);
        let got_ids: Vec<u32> = got.iter().map(|p| p.0).collect();
        let want_ids_t: Vec<u32> = want.iter().map(|p| p.0).collect();
        assert_eq!(got_ids, want_ids_t, "{what}: token {t} expert set");
        for ((id, g), (_, w)) in got.iter().zip(&want) {
            assert!(
                (g - w).abs() <= tol,
                "{what}: token {t} expert {id} weight {g} vs {w}"
            );
        }
    }
}

/// Records one compute pass with `f`, submits it and waits.
pub fn run_pass(ctx: &Context, f: impl FnOnce(&mut wgpu::ComputePass<'_>)) {
    let mut encoder = ctx.device.create_command_encoder(&Default::default());
    {
        let mut pass = encoder.begin_compute_pass(&Default::default());
        f(&mut pass);
    }
    ctx.submit([encoder.finish()]).unwrap();
    ctx.wait().unwrap();
}
