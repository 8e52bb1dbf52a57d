//! What recovery fits one pruned layer against: the teacher's routed output on the calibration
//! inputs, every kept expert's output on them, and the loss of a router; and the line search
//! every refit steps with. The first three quarters of the tokens build the least-squares
//! equations; the last quarter only checks a step, which is taken only if it lowers the loss
//! on both, so a fit that memorises its tokens is refused.

use crate::error::Result;
use crate::reference::linear::linear;
use crate::reference::routing::route;
use crate::spec::routing::{DynamicActivation, RoutingSpec};

/// The pruned layer as recovery refits it: every kept expert's output on every calibration
/// token (a router refit only re-weights them) and the teacher's routed output.
pub(crate) struct Fit<'a> {
    pub routing: RoutingSpec,
    pub hidden: usize,
    pub tokens: usize,
    /// Tokens `0..fitted` build the equations; the rest only check a step.
    pub fitted: usize,
    pub x: &'a [f32],
    /// [tokens, hidden] the teacher's routed output, summed as [`Fit::predict`] sums.
    pub target: Vec<f64>,
    /// Per kept expert, [tokens, hidden].
    pub outputs: Vec<Vec<f32>>,
    pub bias: Option<Vec<f32>>,
    pub correction: Option<Vec<f32>>,
    target_energy: f64,
}

impl<'a> Fit<'a> {
    /// The fit of inputs `x` ([tokens, hidden]), the teacher's routed output `target` and each
    /// kept expert's outputs (both [tokens, hidden]), with no router bias or correction.
    pub fn new(
        routing: RoutingSpec,
        hidden: usize,
        x: &'a [f32],
        target: Vec<f64>,
        outputs: Vec<Vec<f32>>,
    ) -> Self {
        let energy = target.iter().map(|v| v * v).sum::<f64>();
        Self {
            routing,
            hidden,
            tokens: x.len() / hidden.max(1),
            fitted: (x.len() / hidden.max(1) * 3).div_ceil(4),
            x,
            target,
            outputs,
            bias: None,
            correction: None,
            target_energy: energy.max(f64::MIN_POSITIVE),
        }
    }
}

impl Fit<'_> {
    /// Calibration input `t`, [hidden].
    pub fn row(&self, t: usize) -> &[f32] {
        &self.x[t * self.hidden..(t + 1) * self.hidden]
    }

    /// Router logits of token `t` under `router` ([kept, hidden]).
    pub fn logits(&self, router: &[f32], t: usize) -> Vec<f32> {
        let h = self.hidden;
        linear(
            self.row(t),
            1,
            h,
            router,
            self.routing.experts,
            self.bias.as_deref(),
        )
    }

    /// Selected experts and weights of logits `z` (one token).
    pub fn route(&self, z: &[f32]) -> (Vec<u32>, Vec<f32>) {
        let (ids, w) = route(
            z,
            1,
            &self.routing,
            self.correction.as_deref(),
            &DynamicActivation::default(),
        );
        ids.iter()
            .zip(&w)
            .filter(|(id, _)| **id != crate::spec::INVALID)
            .map(|(id, w)| (*id, *w))
            .unzip()
    }

    /// target − Σ w_j · expert_j(x) of token `t`.
    pub fn residual(&self, t: usize, ids: &[u32], w: &[f32]) -> Vec<f64> {
        let h = self.hidden;
        let outputs = ids
            .iter()
            .map(|id| &self.outputs[*id as usize][t * h..(t + 1) * h]);
        let y = weighted_sum(h, w, outputs);
        self.target[t * h..(t + 1) * h]
            .iter()
            .zip(&y)
            .map(|(a, b)| a - b)
            .collect()
    }

    /// The relative loss ‖target − student‖² / ‖target‖² under `router`, split into the fitted
    /// and the checking tokens.
    pub fn loss(&self, router: &[f32]) -> Loss {
        let sq = |t: usize| {
            let (ids, w) = self.route(&self.logits(router, t));
            let r = self.residual(t, &ids, &w);
            r.iter().map(|v| v * v).sum::<f64>() / self.target_energy
        };
        Loss {
            fitted: (0..self.fitted).map(sq).sum(),
            checked: (self.fitted..self.tokens).map(sq).sum(),
        }
    }
}

/// Σ_s w_s · outputs_s in f64, from zero in slot order: the teacher's output and the student's
/// are summed alike, so an unpruned layer leaves a residual of exactly zero.
pub(crate) fn weighted_sum<'a>(
    hidden: usize,
    w: &[f32],
    outputs: impl Iterator<Item = &'a [f32]>,
) -> Vec<f64> {
    let mut y = vec![0.0f64; hidden];
    for (wt, e) in w.iter().zip(outputs) {
        for (yc, ec) in y.iter_mut().zip(e) {
            *yc += *wt as f64 * *ec as f64;
        }
    }
    y
}

/// A fit's loss on the tokens that build its equations and on those that only check it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Loss {
    pub fitted: f64,
    pub checked: f64,
}

impl Loss {
    /// Over all calibration tokens.
    pub fn total(self) -> f64 {
        self.fitted + self.checked
    }

    /// Lower on the fitted tokens and not higher on the checking ones.
    fn improves_on(self, other: Loss) -> bool {
        self.fitted < other.fitted && self.checked <= other.checked
    }
}

/// Tries `candidate(α)` for α = 1, ½, ¼, ⅛ and returns the first that improves on `loss`, with
/// its loss.
pub(crate) fn line_search<T>(
    loss: Loss,
    mut candidate: impl FnMut(f32) -> Result<(T, Loss)>,
) -> Result<Option<(T, Loss)>> {
    for alpha in [1.0, 0.5, 0.25, 0.125] {
        let (value, l) = candidate(alpha)?;
        if l.improves_on(loss) {
            return Ok(Some((value, l)));
        }
    }
    Ok(None)
}
