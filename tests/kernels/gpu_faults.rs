//! GPU faults become errors: an allocation over the device limits or refused by the device
//! names the buffer and its size, a wgpu error that no scope caught does not panic, and a
//! destroyed device makes loading and running a model fail with "device was lost".

use moe_gpu::gpu::Staging;
use moe_gpu::{Context, ContextOptions, Error, Logits, Model};

use crate::common;
use crate::common::fixtures::Fixture;

const ABSURD: u64 = 1 << 40;

fn err_of<T>(r: moe_gpu::Result<T>) -> Error {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e,
    }
}

/// A device created by the test itself (the application's own), on the backend the
/// environment asks for.
fn own_device() -> (wgpu::Device, wgpu::Queue) {
    let backends = ContextOptions::from_env()
        .unwrap()
        .backend
        .unwrap_or(wgpu::Backends::all());
    let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
    desc.backends = backends;
    let instance = wgpu::Instance::new(desc);
    let adapter = pollster::block_on(instance.request_adapter(&Default::default()))
        .expect("GPU tests need an adapter");
    pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
        label: Some("test's own device"),
        required_limits: adapter.limits(),
        ..Default::default()
    }))
    .unwrap()
}

#[test]
fn an_allocation_over_the_device_limits_names_the_buffer_and_its_size() {
    let ctx = common::ctx();
    let err = err_of(Staging::new(ctx, "absurd readback", ABSURD));
    let text = err.to_string();
    assert!(matches!(err, Error::GpuAllocation { .. }), "{err:?}");
    assert!(
        text.contains("absurd readback")
            && text.contains(&ABSURD.to_string())
            && text.contains("max_buffer_size"),
        "{text}"
    );
    let text = err_of(ctx.storage("absurd weights", ABSURD)).to_string();
    assert!(
        text.contains("absurd weights") && text.contains(&ABSURD.to_string()),
        "{text}"
    );
    // The context still works after refusing them.
    let buf = ctx.storage_with("after", &[1.0f32, 2.0]).unwrap();
    assert_eq!(ctx.read_back::<f32>(&buf, 2).unwrap(), vec![1.0, 2.0]);
}

/// With the up-front limit checks fooled, wgpu itself refuses the buffer: the error scope
/// around the creation turns that into the same error.
#[test]
fn an_allocation_the_device_refuses_names_the_buffer_and_its_size() {
    let mut ctx = Context::new().unwrap();
    ctx.limits.max_buffer_size = u64::MAX;
    ctx.limits.max_storage_buffer_binding_size = u64::MAX;
    let err = err_of(ctx.storage("refused", ABSURD));
    let text = err.to_string();
    assert!(matches!(err, Error::GpuAllocation { .. }), "{err:?}");
    assert!(
        text.contains("refused") && text.contains(&ABSURD.to_string()),
        "{text}"
    );
    assert!(!text.contains("over the device limit"), "{text}");
    ctx.check_device().unwrap();
}

#[test]
fn an_uncaptured_wgpu_error_is_an_error_not_a_panic() {
    let ctx = Context::new().unwrap();
    let buf = ctx.storage("small", 16).unwrap();
    // Out of bounds: wgpu's default handler would panic the process.
    ctx.queue.write_buffer(&buf, 1 << 20, &[0u8; 4]);
    let text = err_of(ctx.wait()).to_string();
    assert!(text.contains("uncaptured"), "{text}");
    let text = err_of(ctx.storage("later", 16)).to_string();
    assert!(text.contains("uncaptured"), "{text}");
}

fn assert_lost<T>(what: &str, r: moe_gpu::Result<T>) {
    let err = err_of(r);
    assert!(matches!(err, Error::DeviceLost(_)), "{what}: {err:?}");
    // Reported by the device-lost callback (reason Destroyed), not by a caught panic.
    let text = err.to_string();
    assert!(
        text.contains("device was lost") && text.contains("Destroyed"),
        "{what}: {text}"
    );
}

#[test]
fn a_destroyed_device_makes_loading_and_running_a_model_fail() {
    let fx = Fixture::open("hf-tiny", "olmoe");
    let prompt = fx.ids("input_ids");
    let (device, queue) = own_device();
    let ctx = Context::from_device(device.clone(), queue);
    let mut model = Model::load(&ctx, &fx.model_dir).unwrap();
    model.forward(&ctx, &prompt, Logits::Last).unwrap();
    device.destroy();
    model.reset();
    assert_lost("forward", model.forward(&ctx, &prompt, Logits::Last));
    assert_lost("load", Model::load(&ctx, &fx.model_dir));
    assert_lost("storage", ctx.storage("after loss", 16));
    assert_lost("wait", ctx.wait());
}

#[test]
fn loading_onto_a_destroyed_device_fails() {
    let fx = Fixture::open("hf-tiny", "mixtral");
    let (device, queue) = own_device();
    let ctx = Context::from_device(device.clone(), queue);
    device.destroy();
    assert_lost("load", Model::load(&ctx, &fx.model_dir));
}
