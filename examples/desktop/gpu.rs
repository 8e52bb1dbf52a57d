//! The app's own wgpu device: instance, adapter, device and queue for the window's surface,
//! egui's renderer on it, and the readback of a presented frame for `--screenshot`.

use std::sync::Arc;

use anyhow::{Context as _, Result, anyhow, bail};
use winit::event_loop::OwnedDisplayHandle;
use winit::window::Window;

use crate::readback::{Frame, PendingFrame};

/// The window's surface and the device that draws it (and runs the model).
pub struct Gpu {
    /// The app's device; moe-gpu gets a clone of it.
    pub device: wgpu::Device,
    /// The app's queue; moe-gpu gets a clone of it.
    pub queue: wgpu::Queue,
    surface: wgpu::Surface<'static>,
    config: wgpu::SurfaceConfiguration,
    renderer: egui_wgpu::Renderer,
}

/// What [`Gpu::render`] did.
pub enum Drawn {
    /// The surface had no texture to give (it is reconfigured for the next frame).
    Skipped,
    /// A frame was presented; with its pixels when it was captured.
    Presented(Option<Frame>),
}

/// Optional features the model's kernels use when the adapter has them.
const MODEL_FEATURES: wgpu::Features = wgpu::Features::SHADER_F16
    .union(wgpu::Features::SUBGROUP)
    .union(wgpu::Features::TIMESTAMP_QUERY)
    .union(wgpu::Features::TIMESTAMP_QUERY_INSIDE_ENCODERS);

impl Gpu {
    /// Creates the instance (backends as `MOE_GPU_BACKEND` says, else all), a surface for
    /// `window`, an adapter that can present to it, and one device and queue.
    /// `readable`: configure the surface so frames can be copied out (for `--screenshot`).
    pub fn new(window: Arc<Window>, display: OwnedDisplayHandle, readable: bool) -> Result<Self> {
        let backend = moe_gpu::ContextOptions::from_env()?.backend;
        let mut desc = wgpu::InstanceDescriptor::new_with_display_handle(Box::new(display));
        desc.backends = backend.unwrap_or(wgpu::Backends::all());
        let instance = wgpu::Instance::new(desc);
        let size = window.inner_size();
        let surface = instance
            .create_surface(window)
            .context("creating the window's surface")?;
        let adapter = pollster::block_on(instance.request_adapter(&wgpu::RequestAdapterOptions {
            power_preference: wgpu::PowerPreference::HighPerformance,
            compatible_surface: Some(&surface),
            force_fallback_adapter: false,
            apply_limit_buckets: false,
        }))
        .context("no adapter can present to this window")?;
        // The model uses only what the device was created with: ask for the adapter's own
        // limits (large weights need large bindings) and the features its kernels like.
        let (device, queue) = pollster::block_on(adapter.request_device(&wgpu::DeviceDescriptor {
            label: Some("desktop app"),
            required_features: adapter.features() & MODEL_FEATURES,
            required_limits: adapter.limits(),
            ..Default::default()
        }))
        .context("creating the device")?;
        let mut config = surface
            .get_default_config(&adapter, size.width.max(1), size.height.max(1))
            .ok_or_else(|| anyhow!("the adapter cannot present to this window"))?;
        let caps = surface.get_capabilities(&adapter);
        if let Some(&srgb) = caps.formats.iter().find(|f| f.is_srgb()) {
            config.format = srgb;
        }
        if readable {
            if !caps.usages.contains(wgpu::TextureUsages::COPY_SRC) {
                bail!(
                    "--screenshot: this surface cannot be copied from (its usages are {:?})",
                    caps.usages
                );
            }
            config.usage |= wgpu::TextureUsages::COPY_SRC;
            // No waiting for vertical blanks that a virtual display (Xvfb) may never send.
            config.present_mode = wgpu::PresentMode::AutoNoVsync;
        }
        surface.configure(&device, &config);
        let renderer = egui_wgpu::Renderer::new(
            &device,
            config.format,
            egui_wgpu::RendererOptions::default(),
        );
        Ok(Self {
            device,
            queue,
            surface,
            config,
            renderer,
        })
    }

    /// The largest texture side egui may use.
    pub fn max_texture_side(&self) -> usize {
        self.device.limits().max_texture_dimension_2d as usize
    }

    /// Reconfigures the surface after the window was resized.
    pub fn resize(&mut self, width: u32, height: u32) {
        if width > 0 && height > 0 {
            self.config.width = width;
            self.config.height = height;
            self.surface.configure(&self.device, &self.config);
        }
    }

    /// Draws egui's output into the next surface texture and presents it; with `capture`,
    /// also copies that texture out and returns it once the copy is done.
    pub fn render(
        &mut self,
        egui: &egui::Context,
        mut output: egui::FullOutput,
        capture: bool,
    ) -> Result<Drawn> {
        let mut textures = std::mem::take(&mut output.textures_delta);
        for (id, deltas) in textures.set.drain() {
            for delta in deltas {
                self.renderer
                    .update_texture(&self.device, &self.queue, id, &delta);
            }
        }
        let frame = match self.surface.get_current_texture() {
            wgpu::CurrentSurfaceTexture::Success(f)
            | wgpu::CurrentSurfaceTexture::Suboptimal(f) => f,
            wgpu::CurrentSurfaceTexture::Lost => bail!("the window's surface was lost"),
            _ => {
                self.surface.configure(&self.device, &self.config);
                self.free(textures);
                return Ok(Drawn::Skipped);
            }
        };
        let screen = egui_wgpu::ScreenDescriptor {
            size_in_pixels: [self.config.width, self.config.height],
            pixels_per_point: output.pixels_per_point,
        };
        let jobs = egui.tessellate(output.shapes, output.pixels_per_point);
        let mut encoder = self
            .device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("ui") });
        let mut buffers =
            self.renderer
                .update_buffers(&self.device, &self.queue, &mut encoder, &jobs, &screen);
        let view = frame
            .texture
            .create_view(&wgpu::TextureViewDescriptor::default());
        {
            let pass = encoder.begin_render_pass(&wgpu::RenderPassDescriptor {
                label: Some("ui"),
                color_attachments: &[Some(wgpu::RenderPassColorAttachment {
                    view: &view,
                    resolve_target: None,
                    ops: wgpu::Operations {
                        load: wgpu::LoadOp::Clear(wgpu::Color::BLACK),
                        store: wgpu::StoreOp::Store,
                    },
                    depth_slice: None,
                })],
                depth_stencil_attachment: None,
                timestamp_writes: None,
                occlusion_query_set: None,
                multiview_mask: None,
            });
            self.renderer
                .render(&mut pass.forget_lifetime(), &jobs, &screen);
        }
        let pending =
            capture.then(|| PendingFrame::record(&self.device, &mut encoder, &frame.texture));
        buffers.push(encoder.finish());
        self.queue.submit(buffers);
        self.queue.present(frame);
        self.free(textures);
        let frame = pending
            .transpose()?
            .map(|p| p.read(&self.device))
            .transpose()?;
        Ok(Drawn::Presented(frame))
    }

    /// Frees the textures egui no longer uses (once the frame that last drew them is queued).
    fn free(&mut self, mut textures: egui::TexturesDelta) {
        for id in textures.free.drain() {
            self.renderer.free_texture(&id);
        }
    }
}
