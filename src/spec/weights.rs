//! Host-side expert weights (f32, `nn.Linear` layout) and where they come from.

use std::sync::Arc;

use crate::error::{Error, Result};
use crate::spec::layer_spec::MoeLayerSpec;
use crate::spec::weight_format::ExpertFormat;

/// One SwiGLU-style MLP in `nn.Linear` layout ([out, in], row-major, f32): a routed expert, a
/// shared expert or a dense MLP layer.
#[derive(Debug, Clone, PartialEq)]
pub struct ExpertWeights {
    /// [inter, hidden]
    pub gate: Vec<f32>,
    /// [inter, hidden]
    pub up: Vec<f32>,
    /// [hidden, inter]
    pub down: Vec<f32>,
    /// `[inter]` each, gpt-oss only.
    pub gate_bias: Option<Vec<f32>>,
    /// `[inter]`, gpt-oss only.
    pub up_bias: Option<Vec<f32>>,
    /// `[hidden]`, gpt-oss only.
    pub down_bias: Option<Vec<f32>>,
}

impl ExpertWeights {
    /// Checks every matrix against `[inter, hidden]` / `[hidden, inter]`.
    pub fn check(&self, what: &str, hidden: usize, inter: usize, bias: bool) -> Result<()> {
        let want = [
            ("gate", self.gate.len(), inter * hidden),
            ("up", self.up.len(), inter * hidden),
            ("down", self.down.len(), hidden * inter),
        ];
        for (name, got, expected) in want {
            if got != expected {
                return Err(Error::tensor(
                    format!("{what}.{name}"),
                    format!(
                        "has {got} values, expected {expected} (hidden {hidden}, intermediate {inter})"
                    ),
                ));
            }
        }
        let biases = [
            ("gate_bias", &self.gate_bias, inter),
            ("up_bias", &self.up_bias, inter),
            ("down_bias", &self.down_bias, hidden),
        ];
        for (name, b, len) in biases {
            match (b, bias) {
                (Some(v), true) if v.len() != len => {
                    return Err(Error::tensor(
                        format!("{what}.{name}"),
                        format!("has {} values, expected {len}", v.len()),
                    ));
                }
                (None, true) => {
                    return Err(Error::tensor(format!("{what}.{name}"), "is missing"));
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// [gate_bias ++ up_bias], zeros where absent.
    pub fn gate_up_bias(&self, inter: usize) -> Vec<f32> {
        let mut out = self.gate_bias.clone().unwrap_or_else(|| vec![0.0; inter]);
        out.extend(self.up_bias.clone().unwrap_or_else(|| vec![0.0; inter]));
        out
    }

    /// [`gate_up_bias`](Self::gate_up_bias) and [`down_bias_or_zero`](Self::down_bias_or_zero),
    /// where the expert has any bias.
    pub fn biases(&self, hidden: usize, inter: usize) -> Option<(Vec<f32>, Vec<f32>)> {
        (self.gate_bias.is_some() || self.up_bias.is_some() || self.down_bias.is_some())
            .then(|| (self.gate_up_bias(inter), self.down_bias_or_zero(hidden)))
    }

    /// The down bias, or `hidden` zeros.
    pub fn down_bias_or_zero(&self, hidden: usize) -> Vec<f32> {
        self.down_bias.clone().unwrap_or_else(|| vec![0.0; hidden])
    }
}

/// An expert's two matrices already in a GPU weight format, laid out as the kernels read them
/// (`kernels::weight_packing`), with its f32 biases: what a source that stores its experts in
/// that format hands over without a trip through f32.
#[derive(Debug, Clone, PartialEq)]
pub struct PackedExpert {
    /// The formats of the gate/up and down matrices.
    pub format: ExpertFormat,
    /// `[2·inter, hidden]`: gate rows, then up rows, then their scale block.
    pub gate_up: Vec<u32>,
    /// `[hidden, inter]`, then its scale block.
    pub down: Vec<u32>,
    /// `[2·inter]` gate then up biases and the `[hidden]` down bias, where the expert has
    /// biases (zeros for any one of them it lacks).
    pub bias: Option<(Vec<f32>, Vec<f32>)>,
}

/// Where a layer's routed experts come from: memory, or a memory-mapped checkpoint that
/// converts one expert at a time.
pub trait ExpertSource: Send + Sync {
    /// Routed experts.
    fn num_experts(&self) -> usize;
    /// The weights of expert `expert` (read and converted now for a checkpoint).
    fn load(&self, expert: usize) -> Result<ExpertWeights>;
    /// Expert `expert` with its gate/up and down matrices in their halves of `format`, where
    /// the source stores them so already (a checkpoint's MXFP4 blocks, copied as they are);
    /// `None` otherwise, and the caller packs [`load`](Self::load)'s f32 weights.
    fn load_packed(&self, expert: usize, format: ExpertFormat) -> Result<Option<PackedExpert>> {
        let _ = (expert, format);
        Ok(None)
    }
}

impl ExpertSource for Vec<ExpertWeights> {
    fn num_experts(&self) -> usize {
        self.len()
    }

    fn load(&self, expert: usize) -> Result<ExpertWeights> {
        self.get(expert)
            .cloned()
            .ok_or_else(|| Error::input(format!("expert {expert} of {}", self.len())))
    }
}

/// A shared expert, gated per token (Qwen2-MoE) or always on (DeepSeek).
#[derive(Debug, Clone)]
pub struct SharedExpert {
    /// The expert's projections.
    pub mlp: ExpertWeights,
    /// `[hidden]` `shared_expert_gate` row: out += sigmoid(gate · x) · mlp(x).
    pub gate: Option<Vec<f32>>,
    /// The projections as the checkpoint stores them (a GGUF file's blocks, repacked without
    /// loss), used where they are in the layer's expert format.
    pub packed: Option<PackedExpert>,
}

/// Everything one MoE layer needs besides its shape.
pub struct MoeWeights {
    /// [experts, hidden]
    pub router: Vec<f32>,
    /// `[experts]`
    pub router_bias: Option<Vec<f32>>,
    /// `[experts]` DeepSeek-V3 `e_score_correction_bias`.
    pub correction: Option<Vec<f32>>,
    /// The shared expert, if the layer has one.
    pub shared: Option<SharedExpert>,
    /// The routed experts.
    pub experts: Arc<dyn ExpertSource>,
}

impl MoeWeights {
    /// Checks the router, biases and shared expert against `spec`.
    pub fn check(&self, spec: &MoeLayerSpec) -> Result<()> {
        let w = self;
        let (h, e) = (spec.hidden, spec.routing.experts);
        let len_check = |name: &str, got: usize, want: usize| {
            if got != want {
                Err(Error::tensor(
                    name,
                    format!("has {got} values, expected {want}"),
                ))
            } else {
                Ok(())
            }
        };
        len_check("router.weight", w.router.len(), e * h)?;
        if w.experts.num_experts() != e {
            return Err(Error::tensor(
                "experts",
                format!(
                    "{} experts in the weights, {e} in the routing spec",
                    w.experts.num_experts()
                ),
            ));
        }
        match (&w.router_bias, spec.routing.router_bias) {
            (Some(b), true) => len_check("router.bias", b.len(), e)?,
            (None, true) => return Err(Error::tensor("router.bias", "is missing")),
            _ => {}
        }
        match (&w.correction, spec.routing.correction_bias) {
            (Some(b), true) => len_check("e_score_correction_bias", b.len(), e)?,
            (None, true) => return Err(Error::tensor("e_score_correction_bias", "is missing")),
            _ => {}
        }
        if spec.routing.shared_gate {
            match w.shared.as_ref().and_then(|s| s.gate.as_ref()) {
                Some(g) => len_check("shared_expert_gate.weight", g.len(), h)?,
                None => return Err(Error::tensor("shared_expert_gate.weight", "is missing")),
            }
        }
        if spec.shared_inter.is_some() != w.shared.is_some() {
            return Err(Error::tensor(
                "shared_expert",
                "the spec and the weights disagree on whether the layer has a shared expert",
            ));
        }
        Ok(())
    }
}
