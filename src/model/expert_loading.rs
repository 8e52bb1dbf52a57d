//! MoE layers from a checkpoint: tensor names per architecture, shape checks, and an
//! [`ExpertSource`] that converts one expert at a time from the memory-mapped files (or hands
//! it over in its own encoding: `packed`).

mod formats;
mod packed;

use std::sync::Arc;

use formats::gguf_packed;
pub use formats::{gguf_expert_format, native_expert_formats};

use crate::error::{Error, Result};
use crate::kernels::matmul::ExpertFormat;
use crate::kernels::mxfp4::{e2m1_value, e8m0_value};
use crate::model::checkpoint::Checkpoint;
use crate::model::config::{Arch, ModelConfig};
use crate::model::tensor_spec::ExpectedTensor;
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::weights::{ExpertSource, ExpertWeights, MoeWeights, PackedExpert, SharedExpert};

/// The MoE layer spec shared by every MoE layer of `cfg` (see [`moe_layer_spec_for`] for
/// checkpoints pruned to different expert counts per layer).
pub fn moe_layer_spec(cfg: &ModelConfig, format: ExpertFormat) -> MoeLayerSpec {
    let layer = cfg.moe_layers().first().copied().unwrap_or(0);
    moe_layer_spec_for(cfg, layer, format)
}

/// The spec of MoE layer `layer`.
pub fn moe_layer_spec_for(cfg: &ModelConfig, layer: usize, format: ExpertFormat) -> MoeLayerSpec {
    let m = &cfg.moe;
    MoeLayerSpec {
        hidden: cfg.hidden,
        inter: m.inter,
        routing: cfg.routing_of(layer),
        glu: m.glu,
        expert_bias: m.expert_bias,
        shared_inter: m.shared_inter,
        format,
    }
}

/// Router, shared expert and a lazy expert source for MoE layer `layer`.
pub fn load_moe_weights(
    ckpt: &Arc<Checkpoint>,
    cfg: &ModelConfig,
    layer: usize,
) -> Result<MoeWeights> {
    if layer >= cfg.layers || cfg.mlp_kinds[layer] != crate::model::config::MlpKind::Moe {
        return Err(Error::input(format!(
            "layer {layer} is not an MoE layer; MoE layers: {:?}",
            cfg.moe_layers()
        )));
    }
    let (h, e) = (cfg.hidden, cfg.experts_in(layer));
    let p = cfg.arch.mlp_prefix(layer);
    let router_name = cfg.arch.router_name();
    let router = ckpt.f32(&format!("{p}{router_name}.weight"), &[e, h])?;
    let router_bias = if cfg.moe.routing.router_bias {
        Some(ckpt.f32(&format!("{p}{router_name}.bias"), &[e])?)
    } else {
        None
    };
    let correction = if cfg.moe.routing.correction_bias {
        Some(ckpt.f32(&format!("{p}gate.e_score_correction_bias"), &[e])?)
    } else {
        None
    };
    let shared = match cfg.moe.shared_inter {
        None => None,
        Some(si) => {
            let name = cfg.arch.shared_expert_name();
            let mlp = load_mlp(ckpt, &format!("{p}{name}."), h, si)?;
            let gate = if cfg.moe.routing.shared_gate {
                Some(ckpt.f32(&format!("{p}shared_expert_gate.weight"), &[1, h])?)
            } else {
                None
            };
            let names =
                ["gate_proj", "up_proj", "down_proj"].map(|n| format!("{p}{name}.{n}.weight"));
            let packed = gguf_packed(ckpt, &names, h, si, None)?;
            Some(SharedExpert { mlp, gate, packed })
        }
    };
    let experts = CheckpointExperts::new(ckpt.clone(), cfg, layer)?;
    Ok(MoeWeights {
        router,
        router_bias,
        correction,
        shared,
        experts: Arc::new(experts),
    })
}

/// A SwiGLU MLP stored as `{prefix}{gate,up,down}_proj.weight`.
pub fn load_mlp(
    ckpt: &Checkpoint,
    prefix: &str,
    hidden: usize,
    inter: usize,
) -> Result<ExpertWeights> {
    Ok(ExpertWeights {
        gate: ckpt.f32(&format!("{prefix}gate_proj.weight"), &[inter, hidden])?,
        up: ckpt.f32(&format!("{prefix}up_proj.weight"), &[inter, hidden])?,
        down: ckpt.f32(&format!("{prefix}down_proj.weight"), &[hidden, inter])?,
        gate_bias: None,
        up_bias: None,
        down_bias: None,
    })
}

/// How a layer's experts are laid out in the checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One `[out, in]` matrix per expert and projection, with these three names.
    PerExpert(&'static str, &'static str, &'static str),
    /// As `PerExpert`, each matrix with its bias (`{name}.bias`): gpt-oss from GGUF.
    PerExpertBiased(&'static str, &'static str, &'static str),
    /// gpt-oss: fused `gate_up_proj` [E, H, 2I] (interleaved columns) and `down_proj` [E, I, H].
    FusedInputMajor,
    /// gpt-oss release: MXFP4 `*_blocks` [E, out, in/32, 16] and `*_scales` [E, out, in/32].
    Mxfp4,
}

/// Experts of one layer, converted to f32 one at a time from the mapped checkpoint.
pub struct CheckpointExperts {
    ckpt: Arc<Checkpoint>,
    prefix: String,
    layout: Layout,
    experts: usize,
    hidden: usize,
    inter: usize,
}

impl CheckpointExperts {
    /// Finds the layer's layout and checks every expert tensor's name, shape and dtype.
    pub fn new(ckpt: Arc<Checkpoint>, cfg: &ModelConfig, layer: usize) -> Result<Self> {
        for t in expert_tensors(&ckpt, cfg, layer)? {
            t.check(&ckpt)?;
        }
        Ok(Self {
            prefix: format!("{}experts.", cfg.arch.mlp_prefix(layer)),
            layout: layout(&ckpt, cfg, layer),
            experts: cfg.experts_in(layer),
            hidden: cfg.hidden,
            inter: cfg.moe.inter,
            ckpt,
        })
    }
}

/// How MoE layer `layer`'s experts are laid out in `ckpt`.
fn layout(ckpt: &Checkpoint, cfg: &ModelConfig, layer: usize) -> Layout {
    let prefix = format!("{}experts.", cfg.arch.mlp_prefix(layer));
    match cfg.arch {
        Arch::Mixtral => Layout::PerExpert("w1", "w3", "w2"),
        Arch::GptOss if ckpt.gguf().is_some() => {
            Layout::PerExpertBiased("gate_proj", "up_proj", "down_proj")
        }
        Arch::GptOss if ckpt.contains(&format!("{prefix}gate_up_proj_blocks")) => Layout::Mxfp4,
        Arch::GptOss => Layout::FusedInputMajor,
        _ => Layout::PerExpert("gate_proj", "up_proj", "down_proj"),
    }
}

/// The routed-expert tensors of MoE layer `layer`, in its layout, with their shapes.
pub(crate) fn expert_tensors(
    ckpt: &Checkpoint,
    cfg: &ModelConfig,
    layer: usize,
) -> Result<Vec<ExpectedTensor>> {
    let prefix = format!("{}experts.", cfg.arch.mlp_prefix(layer));
    let (e, h, i) = (cfg.experts_in(layer), cfg.hidden, cfg.moe.inter);
    let f = |name: &str, shape: &[usize]| ExpectedTensor::float(format!("{prefix}{name}"), shape);
    let mut t = Vec::new();
    match layout(ckpt, cfg, layer) {
        Layout::PerExpert(g, u, d) | Layout::PerExpertBiased(g, u, d) => {
            let biased = matches!(layout(ckpt, cfg, layer), Layout::PerExpertBiased(..));
            for x in 0..e {
                for (name, shape) in [(g, [i, h]), (u, [i, h]), (d, [h, i])] {
                    t.push(f(&format!("{x}.{name}.weight"), &shape));
                    if biased {
                        t.push(f(&format!("{x}.{name}.bias"), &shape[..1]));
                    }
                }
            }
        }
        Layout::FusedInputMajor => {
            t.push(f("gate_up_proj", &[e, h, 2 * i]));
            t.push(f("gate_up_proj_bias", &[e, 2 * i]));
            t.push(f("down_proj", &[e, i, h]));
            t.push(f("down_proj_bias", &[e, h]));
        }
        Layout::Mxfp4 => {
            for (name, out, inp) in [("gate_up_proj", 2 * i, h), ("down_proj", h, i)] {
                if inp % 32 != 0 {
                    return Err(Error::tensor(
                        format!("{prefix}{name}_blocks"),
                        format!("MXFP4 needs the input size {inp} to be a multiple of 32"),
                    ));
                }
                let u8 =
                    |n: String, shape: &[usize]| ExpectedTensor::u8(format!("{prefix}{n}"), shape);
                t.push(u8(format!("{name}_blocks"), &[e, out, inp / 32, 16]));
                t.push(u8(format!("{name}_scales"), &[e, out, inp / 32]));
            }
            t.push(f("gate_up_proj_bias", &[e, 2 * i]));
            t.push(f("down_proj_bias", &[e, h]));
        }
    }
    Ok(t)
}

/// Dequantises one expert's MXFP4 matrix to `[out, in]`: value = e2m1(nibble) · 2^(scale − 127)
/// (`kernels::mxfp4`, the values the GPU computes with), the low nibble holding the even
/// element.
pub fn dequant_mxfp4(blocks: &[u8], scales: &[u8], out: usize, inp: usize) -> Vec<f32> {
    let mut w = Vec::with_capacity(out * inp);
    for r in 0..out {
        for b in 0..inp / 32 {
            let scale = e8m0_value(scales[r * (inp / 32) + b]);
            let base = (r * (inp / 32) + b) * 16;
            for byte in &blocks[base..base + 16] {
                w.push(e2m1_value(byte & 0x0f) * scale);
                w.push(e2m1_value(byte >> 4) * scale);
            }
        }
    }
    w
}

impl ExpertSource for CheckpointExperts {
    fn num_experts(&self) -> usize {
        self.experts
    }

    fn load(&self, x: usize) -> Result<ExpertWeights> {
        if x >= self.experts {
            return Err(Error::input(format!("expert {x} of {}", self.experts)));
        }
        let (p, h, i, c) = (&self.prefix, self.hidden, self.inter, &self.ckpt);
        match self.layout {
            Layout::PerExpert(g, u, d) => Ok(ExpertWeights {
                gate: c.f32(&format!("{p}{x}.{g}.weight"), &[i, h])?,
                up: c.f32(&format!("{p}{x}.{u}.weight"), &[i, h])?,
                down: c.f32(&format!("{p}{x}.{d}.weight"), &[h, i])?,
                gate_bias: None,
                up_bias: None,
                down_bias: None,
            }),
            Layout::PerExpertBiased(g, u, d) => self.with_biases(
                c.f32(&format!("{p}{x}.{g}.weight"), &[i, h])?,
                c.f32(&format!("{p}{x}.{u}.weight"), &[i, h])?,
                c.f32(&format!("{p}{x}.{d}.weight"), &[h, i])?,
                x,
            ),
            Layout::FusedInputMajor => {
                let gu = c.f32_slice(&format!("{p}gate_up_proj"), x)?;
                let dn = c.f32_slice(&format!("{p}down_proj"), x)?;
                // [H, 2I] input-major with gate/up interleaved → two [I, H] matrices.
                let mut gate = vec![0.0; i * h];
                let mut up = vec![0.0; i * h];
                for hh in 0..h {
                    for ii in 0..i {
                        gate[ii * h + hh] = gu[hh * 2 * i + 2 * ii];
                        up[ii * h + hh] = gu[hh * 2 * i + 2 * ii + 1];
                    }
                }
                let mut down = vec![0.0; h * i];
                for ii in 0..i {
                    for hh in 0..h {
                        down[hh * i + ii] = dn[ii * h + hh];
                    }
                }
                self.with_biases(gate, up, down, x)
            }
            Layout::Mxfp4 => {
                let gu_scales = self.mxfp4_scales("gate_up_proj", x)?;
                let gu_blocks = c.u8_slice(&format!("{p}gate_up_proj_blocks"), x)?;
                let gu = dequant_mxfp4(gu_blocks, gu_scales, 2 * i, h);
                let dn_scales = self.mxfp4_scales("down_proj", x)?;
                let dn_blocks = c.u8_slice(&format!("{p}down_proj_blocks"), x)?;
                let down = dequant_mxfp4(dn_blocks, dn_scales, h, i);
                // [2I, H] output-major with gate/up rows interleaved.
                let gate = gu.chunks(h).step_by(2).flatten().copied().collect();
                let up = gu.chunks(h).skip(1).step_by(2).flatten().copied().collect();
                self.with_biases(gate, up, down, x)
            }
        }
    }

    fn load_packed(&self, x: usize, format: ExpertFormat) -> Result<Option<PackedExpert>> {
        if x >= self.experts {
            return Err(Error::input(format!("expert {x} of {}", self.experts)));
        }
        self.packed(x, format)
    }
}

impl CheckpointExperts {
    /// Expert `x`'s gate, up and down biases (gate and up interleaved in a gpt-oss release,
    /// one per matrix from GGUF).
    fn biases(&self, x: usize) -> Result<(Vec<f32>, Vec<f32>, Vec<f32>)> {
        let p = &self.prefix;
        if let Layout::PerExpertBiased(g, u, d) = self.layout {
            let bias = |n: &str| self.ckpt.f32_any(&format!("{p}{x}.{n}.bias"));
            return Ok((bias(g)?, bias(u)?, bias(d)?));
        }
        let b = self.ckpt.f32_slice(&format!("{p}gate_up_proj_bias"), x)?;
        Ok((
            b.iter().step_by(2).copied().collect(),
            b.iter().skip(1).step_by(2).copied().collect(),
            self.ckpt.f32_slice(&format!("{p}down_proj_bias"), x)?,
        ))
    }

    fn with_biases(
        &self,
        gate: Vec<f32>,
        up: Vec<f32>,
        down: Vec<f32>,
        x: usize,
    ) -> Result<ExpertWeights> {
        let (gate_bias, up_bias, down_bias) = self.biases(x)?;
        Ok(ExpertWeights {
            gate,
            up,
            down,
            gate_bias: Some(gate_bias),
            up_bias: Some(up_bias),
            down_bias: Some(down_bias),
        })
    }
}
