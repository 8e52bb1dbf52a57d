//! The host-facing API: upload every expert, upload tokens, run the layer in chunks of at
//! most `max_tokens`, read back the output (and, on request, the routing).

use crate::error::{Error, Result};
use crate::gpu::{Context, Recorder, Staging, decode};
use crate::kernels::expert_arena::ExpertArena;
use crate::moe::layer::state::MoeLayer;
use crate::moe::layer::step::MoeStep;
use crate::moe::router::logit_cols;
use crate::moe::step_buffers::read_checked;
use crate::spec::routing::DynamicActivation;
use crate::spec::weights::MoeWeights;

/// What a forward step returns.
#[derive(Debug, Clone, Default)]
pub struct MoeOutput {
    /// [tokens, hidden]
    pub output: Vec<f32>,
    /// [tokens, experts], when routing capture was asked for.
    pub router_logits: Option<Vec<f32>>,
    /// [tokens, k]; dropped slots hold `u32::MAX`.
    pub topk_ids: Option<Vec<u32>>,
    /// [tokens, k]; dropped slots hold 0.
    pub topk_weights: Option<Vec<f32>>,
}

/// Options of one forward call.
#[derive(Debug, Clone, Copy, Default)]
pub struct ForwardOptions {
    /// Also read back router logits, expert ids and weights.
    pub capture_routing: bool,
    /// Expert count overrides and skipping.
    pub activation: DynamicActivation,
}

impl MoeLayer {
    /// Uploads every expert into the slot of the same number (the arena must hold them all).
    pub fn upload_all(&self, ctx: &Context, weights: &MoeWeights) -> Result<()> {
        let e = self.spec.routing.experts;
        if self.arena.slots < e {
            return Err(Error::input(format!(
                "{} slots cannot hold all {e} experts",
                self.arena.slots
            )));
        }
        for expert in 0..e {
            let start = std::time::Instant::now();
            let bias = self.spec.expert_bias;
            self.arena
                .upload_from(ctx, expert, weights.experts.as_ref(), expert, bias)?;
            self.stats
                .borrow_mut()
                .uploaded(expert, false, start.elapsed());
        }
        let table: Vec<u32> = (0..e as u32).collect();
        ExpertArena::write_table(ctx, &self.table, &table);
        self.stats.borrow_mut().note_resident(e);
        Ok(())
    }

    /// Runs the layer on `x` ([tokens, hidden], row-major) and returns [tokens, hidden].
    pub fn forward(&self, ctx: &Context, x: &[f32]) -> Result<Vec<f32>> {
        Ok(self
            .forward_with(ctx, x, &ForwardOptions::default())?
            .output)
    }

    /// Runs the layer, in chunks of at most `max_tokens` tokens, one submit per chunk.
    pub fn forward_with(
        &self,
        ctx: &Context,
        x: &[f32],
        options: &ForwardOptions,
    ) -> Result<MoeOutput> {
        let h = self.spec.hidden;
        check_input(x, h)?;
        options.activation.validate()?;
        let tokens = x.len() / h;
        let mut result = MoeOutput::default();
        let capture = options.capture_routing;
        if capture {
            result.router_logits = Some(Vec::with_capacity(tokens * self.experts()));
            result.topk_ids = Some(Vec::with_capacity(tokens * self.top_k()));
            result.topk_weights = Some(Vec::with_capacity(tokens * self.top_k()));
        }
        for chunk in x.chunks(self.max_tokens * h) {
            let part = self.forward_chunk(ctx, chunk, options)?;
            result.output.extend(part.output);
            if capture {
                extend(&mut result.router_logits, part.router_logits);
                extend(&mut result.topk_ids, part.topk_ids);
                extend(&mut result.topk_weights, part.topk_weights);
            }
        }
        Ok(result)
    }

    fn forward_chunk(
        &self,
        ctx: &Context,
        x: &[f32],
        options: &ForwardOptions,
    ) -> Result<MoeOutput> {
        let (h, e, k) = (self.spec.hidden, self.experts(), self.top_k());
        let tokens = x.len() / h;
        let logit_cols = logit_cols(&self.spec);
        ctx.queue.write_buffer(&self.x, 0, bytemuck::cast_slice(x));
        self.clear_status(ctx)?;
        let mut rec = Recorder::new(ctx);
        self.record(ctx, &mut rec, &MoeStep::new(tokens, &options.activation))?;

        let out_bytes = (tokens * h * 4) as u64;
        let logit_bytes = (tokens * logit_cols * 4) as u64;
        let pair_bytes = (tokens * k * 4) as u64;
        let capture = options.capture_routing;
        // The router status word follows the output (and the captured routing).
        let status_at = out_bytes
            + if capture {
                logit_bytes + 2 * pair_bytes
            } else {
                0
            };
        let staging = match self.readback.get() {
            Some(staging) => staging,
            None => {
                let bytes = (self.max_tokens * (h + logit_cols + 2 * k) * 4 + 4) as u64;
                let staging = Staging::new(ctx, "moe readback", bytes)?;
                self.readback.get_or_init(|| staging)
            }
        };
        let route = &self.buffers.route;
        rec.copy(&self.out, 0, staging, 0, out_bytes);
        if capture {
            rec.copy(&route.logits, 0, staging, out_bytes, logit_bytes);
            let ids_at = out_bytes + logit_bytes;
            rec.copy(&route.ids, 0, staging, ids_at, pair_bytes);
            rec.copy(&route.weights, 0, staging, ids_at + pair_bytes, pair_bytes);
        }
        rec.copy(self.status_buffer(), 0, staging, status_at, 4);
        rec.submit()?;
        let bytes = read_checked(ctx, staging, status_at)?;
        let mut result = MoeOutput {
            output: decode(&bytes, 0, tokens * h),
            ..Default::default()
        };
        if capture {
            let logits: Vec<f32> = decode(&bytes, out_bytes, tokens * logit_cols);
            result.router_logits = Some(
                logits
                    .chunks(logit_cols)
                    .flat_map(|row| row[..e].iter().copied())
                    .collect(),
            );
            let ids: Vec<u32> = decode(&bytes, out_bytes + logit_bytes, tokens * k);
            self.observe_routing(tokens, &ids);
            result.topk_ids = Some(ids);
            result.topk_weights = Some(decode(
                &bytes,
                out_bytes + logit_bytes + pair_bytes,
                tokens * k,
            ));
        }
        Ok(result)
    }
}

fn extend<T>(into: &mut Option<Vec<T>>, part: Option<Vec<T>>) {
    if let (Some(all), Some(p)) = (into.as_mut(), part) {
        all.extend(p);
    }
}

/// The largest input magnitude an MoE block accepts. The router and each expert's gate and up
/// projections are dot products over the hidden size, and SwiGLU multiplies two of them, so an
/// input bound B gives |gate·up| ≤ (h·B·w)² and a down projection ≤ i·w·(h·B·w)² for hidden
/// size h, expert width i and weights |w| ≤ w. With B = 1e9, h and i up to 65 536 and |w| ≤ 10
/// that is below 3e35, and summing 64 experts stays below 2e37, inside f32 (3.4e38), while
/// real hidden states stay far below it (massive activations reach ~1e4). 1e15 would not be
/// safe: the square alone overflows. Weights larger than that can still overflow; the
/// output is checked by callers that write it (`moe block`).
pub const MAX_INPUT_MAGNITUDE: f32 = 1e9;

/// Rejects empty, ragged, non-finite input and values above [`MAX_INPUT_MAGNITUDE`].
pub fn check_input(x: &[f32], hidden: usize) -> Result<()> {
    if x.is_empty() || !x.len().is_multiple_of(hidden) {
        return Err(Error::input(format!(
            "input has {} values, not a positive multiple of hidden size {hidden}",
            x.len()
        )));
    }
    if let Some(at) = x.iter().position(|v| !v.is_finite()) {
        return Err(Error::input(format!(
            "input value at token {}, column {} is {} (NaN or infinite)",
            at / hidden,
            at % hidden,
            x[at]
        )));
    }
    if let Some(at) = x.iter().position(|v| v.abs() > MAX_INPUT_MAGNITUDE) {
        return Err(Error::input(format!(
            "input value at token {}, column {} is {:e}, above the {MAX_INPUT_MAGNITUDE:e} an \
             MoE block accepts without overflowing f32",
            at / hidden,
            at % hidden,
            x[at]
        )));
    }
    Ok(())
}
