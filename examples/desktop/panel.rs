//! What the window shows: the prompt box, the streamed text, and the live heatmap of expert
//! use with hit rate and tokens/s.

use egui::{CentralPanel, Panel, RichText, ScrollArea, TextEdit};

use crate::heatmap::Heatmap;
use crate::worker::Event;

/// The window's state between frames.
pub struct Panels {
    prompt: String,
    output: String,
    status: String,
    describe: String,
    heatmap: Heatmap,
    hit_rate: Option<f64>,
    tokens_per_s: f64,
    /// Steps (tokens) of the current generation.
    pub steps: usize,
    /// Whether a prompt is running.
    pub generating: bool,
    loaded: bool,
    /// Whether the last load or generation failed, and why.
    pub failed: Option<String>,
}

impl Panels {
    /// Before the model is loaded, with `prompt` in the prompt box.
    pub fn new(prompt: String) -> Self {
        Self {
            prompt,
            output: String::new(),
            status: "loading the model…".into(),
            describe: String::new(),
            heatmap: Heatmap::default(),
            hit_rate: None,
            tokens_per_s: 0.0,
            steps: 0,
            generating: false,
            loaded: false,
            failed: None,
        }
    }

    /// Takes in what the generation thread sent.
    pub fn on_event(&mut self, event: Event) {
        match event {
            Event::Loaded {
                describe,
                layers,
                experts,
                text,
            } => {
                self.heatmap = Heatmap::new(layers, &experts);
                self.describe = describe;
                self.loaded = true;
                self.status = if text {
                    "ready: type a prompt".into()
                } else {
                    "ready: no tokenizer.json, so the prompt is token ids (e.g. 12, 45, 7)".into()
                };
            }
            Event::Token(step) => {
                self.output.push_str(&step.text);
                self.heatmap.add(&step.counts);
                self.hit_rate = step.hit_rate;
                self.tokens_per_s = step.tokens_per_s;
                self.steps += 1;
            }
            Event::Done(summary) => {
                self.generating = false;
                self.status = format!("done: {summary}");
            }
            Event::Failed(message) => {
                self.generating = false;
                self.status = format!("error: {message}");
                self.failed = Some(message);
            }
        }
    }

    /// Marks a prompt as started.
    pub fn start(&mut self) -> String {
        self.generating = true;
        self.failed = None;
        self.steps = 0;
        self.output.clear();
        self.status = "generating…".into();
        self.prompt.clone()
    }

    /// Whether the window should keep repainting (text streaming or cells still cooling).
    pub fn animating(&self) -> bool {
        self.generating || self.heatmap.is_warm()
    }

    /// Lays out one frame, `dt` seconds after the last; returns the prompt to run when the
    /// button was pressed.
    pub fn show(&mut self, ui: &mut egui::Ui, dt: f32) -> Option<String> {
        self.heatmap.decay(dt);
        let mut run = false;
        Panel::left("prompt").exact_size(360.0).show(ui, |ui| {
            ui.heading("moe-gpu");
            ui.label(RichText::new(&self.describe).small());
            ui.separator();
            ui.label("Prompt");
            ui.add(TextEdit::multiline(&mut self.prompt).desired_rows(3));
            let ready = self.loaded && !self.generating;
            run = ui
                .add_enabled(ready, egui::Button::new("Generate"))
                .clicked();
            ui.label(RichText::new(&self.status).small());
            ui.separator();
            ScrollArea::vertical().stick_to_bottom(true).show(ui, |ui| {
                ui.label(RichText::new(&self.output).monospace());
            });
        });
        CentralPanel::default().show(ui, |ui| {
            ui.heading("Expert use per MoE layer");
            let hit = match self.hit_rate {
                Some(h) => format!("{:.1}%", h * 100.0),
                None => "–".into(),
            };
            ui.label(format!(
                "hit rate {hit} · {:.1} tokens/s · {} tokens · counts halve every 2 s",
                self.tokens_per_s, self.steps
            ));
            ui.separator();
            self.heatmap.show(ui);
        });
        run.then(|| self.start())
    }
}
