//! A desktop app that shares its wgpu device with moe-gpu: a winit window drawn with egui,
//! whose own device and queue also run the model (`Context::from_device`; there is no
//! second device). A prompt runs on a background thread; tokens stream into the window, and
//! a heatmap shows which experts each MoE layer used, decaying over time.
//!
//! ```text
//! cargo run --release --example desktop -- --model DIR
//! cargo run --example desktop -- --screenshot shot.png --frames 30
//! ```

#[path = "desktop/gpu.rs"]
mod gpu;
#[path = "desktop/heatmap.rs"]
mod heatmap;
#[path = "desktop/panel.rs"]
mod panel;
#[path = "desktop/readback.rs"]
mod readback;
#[path = "desktop/worker.rs"]
mod worker;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::mpsc::Sender;
use std::time::{Duration, Instant};

use anyhow::{Context as _, Result, anyhow, bail};
use clap::Parser;
use moe_gpu::Context;
use moe_gpu::moe::ExpertBudget;
use winit::application::ApplicationHandler;
use winit::dpi::PhysicalSize;
use winit::event::WindowEvent;
use winit::event_loop::{ActiveEventLoop, ControlFlow, EventLoop, EventLoopProxy};
use winit::window::{Window, WindowId};

use crate::gpu::{Drawn, Gpu};
use crate::panel::Panels;
use crate::worker::{Event, Request};

/// moe-gpu in a desktop window that shares its wgpu device.
#[derive(Parser)]
struct Args {
    /// Hugging Face model directory [default: the repository's tiny OLMoE fixture].
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// The prompt in the prompt box (token ids, comma-separated, for a model without
    /// tokenizer.json) [default: a short built-in one].
    #[arg(long)]
    prompt: Option<String>,
    /// New tokens per prompt at most.
    #[arg(long, default_value_t = 64)]
    max_new_tokens: usize,
    /// Expert slots per MoE layer on the GPU, the rest uploaded on a miss [default: every
    /// expert resident when they fit in half the adapter's largest buffer].
    #[arg(long, value_name = "N")]
    expert_slots: Option<usize>,
    /// Window size in pixels, WIDTHxHEIGHT.
    #[arg(long, default_value = "1024x640", value_parser = parse_size)]
    size: (u32, u32),
    /// Run the prompt at once, render --frames frames, write the last one (read back from the
    /// window's own surface) to this PNG and exit.
    #[arg(long, value_name = "FILE.png")]
    screenshot: Option<PathBuf>,
    /// Frames to render before the screenshot (more if no token has arrived by then).
    #[arg(long, default_value_t = 30, requires = "screenshot")]
    frames: u64,
}

/// Tokens a screenshot waits for, so that the heatmap has data.
const SCREENSHOT_TOKENS: usize = 4;

fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let size = s
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)));
    match size {
        Some((w, h)) if w >= 200 && h >= 150 && w <= 8192 && h <= 8192 => Ok((w, h)),
        _ => Err(format!(
            "{s:?} is not WIDTHxHEIGHT in pixels (200x150 to 8192x8192)"
        )),
    }
}

/// The window, its device, and the generation thread once started.
struct Running {
    window: Arc<Window>,
    gpu: Gpu,
    egui: egui::Context,
    input: egui_winit::State,
    requests: Sender<Request>,
}

struct App {
    args: Args,
    model: PathBuf,
    proxy: EventLoopProxy<Event>,
    running: Option<Running>,
    panels: Panels,
    frames: u64,
    last_frame: Instant,
    next_repaint: Option<Instant>,
    error: Option<anyhow::Error>,
    screenshot_written: bool,
    worker: Option<std::thread::JoinHandle<()>>,
}

impl App {
    /// Opens the window, creates the device, and hands clones of the device and queue to
    /// moe-gpu for the generation thread.
    fn start(&mut self, event_loop: &ActiveEventLoop) -> Result<()> {
        let (w, h) = self.args.size;
        let attributes = Window::default_attributes()
            .with_title("moe-gpu")
            .with_inner_size(PhysicalSize::new(w, h));
        let window = Arc::new(event_loop.create_window(attributes)?);
        let readable = self.args.screenshot.is_some();
        let gpu = Gpu::new(window.clone(), event_loop.owned_display_handle(), readable)?;
        // The handoff: moe-gpu adopts the app's device and queue; the app keeps drawing with
        // them (wgpu devices and queues are cheap, shared handles).
        let ctx = Arc::new(Context::from_device(gpu.device.clone(), gpu.queue.clone()));
        let budget = self
            .args
            .expert_slots
            .map_or(ExpertBudget::Auto, ExpertBudget::SlotsPerLayer);
        let (requests, thread) = worker::spawn(ctx, self.model.clone(), budget, self.proxy.clone());
        let egui = egui::Context::default();
        let input = egui_winit::State::new(
            egui.clone(),
            egui::ViewportId::ROOT,
            &window,
            Some(window.scale_factor() as f32),
            window.theme(),
            Some(gpu.max_texture_side()),
        );
        window.request_redraw();
        self.worker = Some(thread);
        self.running = Some(Running {
            window,
            gpu,
            egui,
            input,
            requests,
        });
        Ok(())
    }

    /// Sends `prompt` to the generation thread.
    fn run_prompt(&mut self, prompt: String) -> Result<()> {
        let running = self.running.as_ref().context("no window")?;
        let request = Request {
            prompt,
            max_new_tokens: self.args.max_new_tokens,
            ignore_eos: self.args.screenshot.is_some(),
        };
        running
            .requests
            .send(request)
            .map_err(|_| anyhow!("the generation thread has stopped"))
    }

    /// Lays out and draws one frame; with --screenshot, writes the last one and exits.
    fn redraw(&mut self, event_loop: &ActiveEventLoop) -> Result<()> {
        let capture = self.screenshot_due()?;
        let Some(running) = self.running.as_mut() else {
            return Ok(());
        };
        let dt = self.last_frame.elapsed().as_secs_f32();
        self.last_frame = Instant::now();
        let raw = running.input.take_egui_input(&running.window);
        let mut prompt = None;
        let output = running
            .egui
            .run_ui(raw, |ui| prompt = self.panels.show(ui, dt));
        running
            .input
            .handle_platform_output(&running.window, output.platform_output.clone());
        let delay = output
            .viewport_output
            .get(&egui::ViewportId::ROOT)
            .map_or(Duration::MAX, |v| v.repaint_delay);
        let drawn = running
            .gpu
            .render(&running.egui, output, capture.is_some())?;
        let frame = match drawn {
            Drawn::Skipped => None,
            Drawn::Presented(frame) => {
                self.frames += 1;
                frame
            }
        };
        match (capture, frame) {
            (Some(path), Some(frame)) => {
                frame.write_png(&path)?;
                eprintln!(
                    "wrote {} ({}x{})",
                    path.display(),
                    frame.width,
                    frame.height
                );
                self.screenshot_written = true;
                event_loop.exit();
            }
            _ => self.schedule(delay),
        }
        if let Some(prompt) = prompt {
            self.run_prompt(prompt)?;
        }
        Ok(())
    }

    /// The screenshot's path when this frame is the one to capture.
    fn screenshot_due(&self) -> Result<Option<PathBuf>> {
        let Some(path) = &self.args.screenshot else {
            return Ok(None);
        };
        if let Some(message) = &self.panels.failed {
            bail!("{message}");
        }
        let data = self.panels.steps >= SCREENSHOT_TOKENS || !self.panels.generating;
        Ok(
            (self.frames + 1 >= self.args.frames && data && self.panels.steps > 0)
                .then(|| path.clone()),
        )
    }

    /// When to draw the next frame: at once for a screenshot or while animating, else when
    /// egui asks.
    fn schedule(&mut self, egui_delay: Duration) {
        let delay = if self.args.screenshot.is_some() {
            Duration::ZERO
        } else if self.panels.animating() {
            egui_delay.min(Duration::from_millis(33))
        } else {
            egui_delay
        };
        self.next_repaint = Instant::now().checked_add(delay);
    }
}

impl ApplicationHandler<Event> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.running.is_none()
            && let Err(e) = self.start(event_loop)
        {
            self.fail(event_loop, e);
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        let Some(running) = self.running.as_mut() else {
            return;
        };
        let response = running.input.on_window_event(&running.window, &event);
        let result = match event {
            WindowEvent::CloseRequested => {
                event_loop.exit();
                Ok(())
            }
            WindowEvent::Resized(size) => {
                running.gpu.resize(size.width, size.height);
                running.window.request_redraw();
                Ok(())
            }
            WindowEvent::RedrawRequested => self.redraw(event_loop),
            _ => {
                if response.repaint {
                    running.window.request_redraw();
                }
                Ok(())
            }
        };
        if let Err(e) = result {
            self.fail(event_loop, e);
        }
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, event: Event) {
        let loaded = matches!(event, Event::Loaded { .. });
        self.panels.on_event(event);
        if loaded && self.args.screenshot.is_some() {
            let prompt = self.panels.start();
            if let Err(e) = self.run_prompt(prompt) {
                self.fail(event_loop, e);
            }
        }
        if let Some(running) = &self.running {
            running.window.request_redraw();
        }
    }

    fn about_to_wait(&mut self, event_loop: &ActiveEventLoop) {
        match self.next_repaint {
            Some(at) if at <= Instant::now() => {
                self.next_repaint = None;
                if let Some(running) = &self.running {
                    running.window.request_redraw();
                }
                event_loop.set_control_flow(ControlFlow::Wait);
            }
            Some(at) => event_loop.set_control_flow(ControlFlow::WaitUntil(at)),
            None => event_loop.set_control_flow(ControlFlow::Wait),
        }
    }
}

impl App {
    fn fail(&mut self, event_loop: &ActiveEventLoop, error: anyhow::Error) {
        self.error.get_or_insert(error);
        event_loop.exit();
    }
}

/// A short prompt for the model: text with a tokenizer, token ids without one.
fn default_prompt(model: &std::path::Path) -> String {
    if model.join("tokenizer.json").is_file() {
        "The mixture of experts model routes each token to".into()
    } else {
        "12, 45, 7, 88, 3, 150, 21, 9".into()
    }
}

fn run(args: Args) -> Result<()> {
    let model = args.model.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/hf-tiny/olmoe/model")
    });
    if !model.join("config.json").is_file() {
        bail!("--model {}: no config.json there", model.display());
    }
    let prompt = args
        .prompt
        .clone()
        .unwrap_or_else(|| default_prompt(&model));
    let event_loop = EventLoop::<Event>::with_user_event()
        .build()
        .context("opening the X11 display (is DISPLAY set?)")?;
    let mut app = App {
        proxy: event_loop.create_proxy(),
        args,
        model,
        running: None,
        panels: Panels::new(prompt),
        frames: 0,
        last_frame: Instant::now(),
        next_repaint: None,
        error: None,
        screenshot_written: false,
        worker: None,
    };
    event_loop.run_app(&mut app)?;
    // Let the generation thread see the window gone and stop before the device goes.
    app.running = None;
    if let Some(thread) = app.worker.take() {
        thread
            .join()
            .map_err(|_| anyhow!("the generation thread panicked"))?;
    }
    if let Some(e) = app.error {
        return Err(e);
    }
    if app.args.screenshot.is_some() && !app.screenshot_written {
        bail!("the window closed before the screenshot was taken");
    }
    Ok(())
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
