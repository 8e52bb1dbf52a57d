//! The device seam: adapter choice honours the environment, and an app's device is adopted.

use moe_gpu::gpu::parse_backend;
use moe_gpu::{Context, ContextOptions};

use crate::common;

#[test]
fn adapter_matches_requested_backend() {
    let ctx = common::ctx();
    if let Ok(name) = std::env::var("MOE_GPU_BACKEND") {
        let want = parse_backend(&name).unwrap();
        assert!(
            want.contains(ctx.info.backend.into()),
            "MOE_GPU_BACKEND={name} but the adapter is {}",
            ctx.describe()
        );
    }
    assert!(
        ctx.max_binding() >= 128 << 20,
        "binding limit {}",
        ctx.max_binding()
    );
}

#[test]
fn unknown_backend_name_is_a_clear_error() {
    let err = parse_backend("vulcan").unwrap_err().to_string();
    assert!(
        err.contains("vulcan") && err.contains("vulkan, gl, metal or dx12"),
        "{err}"
    );
}

#[test]
fn adapter_name_that_matches_nothing_lists_the_adapters() {
    let opts = ContextOptions {
        adapter_name: Some("no-such-gpu-xyz".into()),
        ..Default::default()
    };
    let err = Context::with_options(&opts)
        .err()
        .expect("no adapter has that name")
        .to_string();
    assert!(
        err.contains("no-such-gpu-xyz") && err.contains("found"),
        "{err}"
    );
}

#[test]
fn context_adopts_an_application_device() {
    let own = common::ctx();
    let ctx = Context::from_device(own.device.clone(), own.queue.clone());
    assert_eq!(ctx.info.name, own.info.name);
    let buf = ctx.storage_with("adopted", &[1.0f32, 2.0, 3.0]).unwrap();
    assert_eq!(ctx.read_back::<f32>(&buf, 3).unwrap(), vec![1.0, 2.0, 3.0]);
}

#[test]
fn a_pipeline_that_fails_validation_is_an_error_naming_the_kernel() {
    use moe_gpu::gpu::{Override, PipelineKey};
    use moe_gpu::kernels::matmul::MATMUL;
    let ctx = common::ctx();
    let key = PipelineKey::new(&MATMUL).with(Override("NO_SUCH_CONSTANT"), 1.0);
    let err = ctx
        .pipeline(&key)
        .err()
        .expect("unknown override must fail")
        .to_string();
    assert!(err.contains("kernel `matmul"), "{err}");
}
