//! Every routing family as data. The select kernel reads a [`RoutingSpec`] as override
//! constants and a [`DynamicActivation`] as parameters; `src/reference/routing.rs` is its CPU twin.

use crate::error::{Error, Result};

/// How router logits become selection keys and weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scoring {
    /// p = softmax(logits); select on p; weights are p (Mixtral, Qwen-MoE, OLMoE, DeepSeek-V2).
    Softmax,
    /// s = sigmoid(logits); select on s (+ correction bias); weights are s (DeepSeek-V3).
    Sigmoid,
    /// Select on raw logits; weights = softmax over the selected logits (gpt-oss).
    TopKThenSoftmax,
}

/// How a group of experts is scored for group-limited routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupScore {
    /// No groups: every expert competes.
    None,
    /// A group scores its best expert (DeepSeek-V2 `group_limited_greedy`).
    Max,
    /// A group scores the sum of its best two experts (DeepSeek-V3 `noaux_tc`).
    TopTwoSum,
}

/// The routing math of one MoE layer.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingSpec {
    /// Routed experts.
    pub experts: usize,
    /// Experts per token (k).
    pub top_k: usize,
    /// How router logits become scores.
    pub scoring: Scoring,
    /// How a group of experts is scored for group-limited routing.
    pub group: GroupScore,
    /// Expert groups (`n_group`; 1 without groups).
    pub n_group: usize,
    /// Groups a token may pick experts from (`topk_group`).
    pub topk_group: usize,
    /// Add `e_score_correction_bias` to the selection key only.
    pub correction_bias: bool,
    /// Divide the selected weights by their sum (+ `renorm_eps`).
    pub renormalize: bool,
    /// Added to the sum of the selected weights when renormalising.
    pub renorm_eps: f32,
    /// Multiply every selected weight by this (DeepSeek `routed_scaling_factor`).
    pub scale: f32,
    /// The router has a bias (gpt-oss).
    pub router_bias: bool,
    /// A shared expert scaled by sigmoid(shared_expert_gate · x) (Qwen2-MoE).
    pub shared_gate: bool,
}

/// The largest group count the select kernel's bit mask holds.
pub const MAX_GROUPS: usize = 32;

impl RoutingSpec {
    /// Plain softmax → top-k routing, renormalised or not.
    pub fn softmax(experts: usize, top_k: usize, renormalize: bool) -> Self {
        Self {
            experts,
            top_k,
            scoring: Scoring::Softmax,
            group: GroupScore::None,
            n_group: 1,
            topk_group: 1,
            correction_bias: false,
            renormalize,
            renorm_eps: 0.0,
            scale: 1.0,
            router_bias: false,
            shared_gate: false,
        }
    }

    /// Checks that the numbers describe a routing the kernel can run.
    pub fn validate(&self) -> Result<()> {
        if self.experts == 0 {
            return Err(Error::config("num_experts", "must be at least 1"));
        }
        if self.top_k == 0 || self.top_k > self.experts {
            return Err(Error::config(
                "num_experts_per_tok",
                format!(
                    "k = {} must be between 1 and the expert count {}",
                    self.top_k, self.experts
                ),
            ));
        }
        if self.group != GroupScore::None {
            if self.n_group == 0 || !self.experts.is_multiple_of(self.n_group) {
                return Err(Error::config(
                    "n_group",
                    format!(
                        "{} groups do not divide {} experts evenly",
                        self.n_group, self.experts
                    ),
                ));
            }
            if self.n_group > MAX_GROUPS {
                return Err(Error::config(
                    "n_group",
                    format!(
                        "{} groups; at most {MAX_GROUPS} are supported",
                        self.n_group
                    ),
                ));
            }
            if self.topk_group == 0 || self.topk_group > self.n_group {
                return Err(Error::config(
                    "topk_group",
                    format!(
                        "{} must be between 1 and n_group = {}",
                        self.topk_group, self.n_group
                    ),
                ));
            }
            let candidates = self.topk_group * (self.experts / self.n_group);
            if candidates < self.top_k {
                return Err(Error::config(
                    "topk_group",
                    format!(
                        "the {} kept groups hold {candidates} experts, fewer than k = {}",
                        self.topk_group, self.top_k
                    ),
                ));
            }
            if self.group == GroupScore::TopTwoSum && self.experts / self.n_group < 2 {
                return Err(Error::config(
                    "n_group",
                    "groups scored by their top two experts need at least 2 experts each",
                ));
            }
        }
        if !self.scale.is_finite() || !self.renorm_eps.is_finite() {
            return Err(Error::config(
                "routed_scaling_factor",
                "must be a finite number",
            ));
        }
        Ok(())
    }
}

/// Runtime choices that change how many experts a token activates, without new pipelines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DynamicActivation {
    /// Use this many experts instead of the checkpoint's k (must be ≤ k).
    pub top_k: Option<usize>,
    /// Drop pick j > 0 whose weight is below `skip_beta` × the first pick's weight.
    pub skip_beta: f32,
    /// Keep picks until their routing probability mass reaches `top_p` (1 = keep all k).
    pub top_p: f32,
}

impl Default for DynamicActivation {
    fn default() -> Self {
        Self {
            top_k: None,
            skip_beta: 0.0,
            top_p: 1.0,
        }
    }
}

impl DynamicActivation {
    /// The k actually used with a layer whose checkpoint k is `k_max`.
    pub fn effective_k(&self, k_max: usize) -> Result<usize> {
        match self.top_k {
            None => Ok(k_max),
            Some(k) if k >= 1 && k <= k_max => Ok(k),
            Some(k) => Err(Error::input(format!(
                "expert top-k {k} must be between 1 and the model's k = {k_max} \
                 (--expert-top-k; --top-k of moe block)"
            ))),
        }
    }

    /// Checks `skip_beta` is in `[0, 1]` and `top_p` in `(0, 1]`.
    pub fn validate(&self) -> Result<()> {
        if !(self.skip_beta >= 0.0 && self.skip_beta <= 1.0) {
            return Err(Error::input(format!(
                "skip threshold {} must be in [0, 1]",
                self.skip_beta
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::input(format!(
                "expert top-p {} must be in (0, 1]",
                self.top_p
            )));
        }
        Ok(())
    }
}

impl RoutingSpec {
    /// One line describing the routing, e.g. `softmax → top-2 of 8 → renormalise`.
    pub fn describe(&self) -> String {
        let mut s = match self.scoring {
            Scoring::Softmax => "softmax".to_string(),
            Scoring::Sigmoid => "sigmoid".to_string(),
            Scoring::TopKThenSoftmax => "logits".to_string(),
        };
        if self.router_bias {
            s = format!("{s} (router bias)");
        }
        if self.correction_bias {
            s.push_str(" + correction bias");
        }
        match self.group {
            GroupScore::None => {}
            GroupScore::Max => s.push_str(&format!(
                " → best {} of {} groups (group max)",
                self.topk_group, self.n_group
            )),
            GroupScore::TopTwoSum => s.push_str(&format!(
                " → best {} of {} groups (sum of top 2)",
                self.topk_group, self.n_group
            )),
        }
        s.push_str(&format!(" → top-{} of {}", self.top_k, self.experts));
        if self.scoring == Scoring::TopKThenSoftmax {
            s.push_str(" → softmax over the k");
        } else if self.renormalize {
            s.push_str(" → renormalise");
        }
        if self.scale != 1.0 {
            s.push_str(&format!(" → ×{}", self.scale));
        }
        if self.shared_gate {
            s.push_str("; shared expert × sigmoid gate");
        }
        s
    }
}
