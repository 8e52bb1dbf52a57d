//! A whole decoder on the GPU: host embedding lookup, then per layer input norm → attention →
//! post-attention norm → dense MLP or MoE, then the final norm and the LM head. Everything is
//! built once at load; a forward step writes T embedding rows, records every kernel into one
//! compute pass, submits once (unless an expert cache asks for a sync between routing and the
//! experts) and reads back the requested logits through a preallocated staging buffer.

use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::gpu::{Context, Staging, decode};
use crate::kernels::matmul::Glu;
use crate::kernels::norm::{NormBuffers, NormShape, RmsNorm};
use crate::model::attention::{AttentionBlock, AttentionInit};
use crate::model::checkpoint::Checkpoint;
use crate::model::config::{MlpKind, ModelConfig};
use crate::model::experts::{load_mlp, load_moe_weights, moe_layer_spec_for};
use crate::model::linear::LmHead;
use crate::model::options::{ModelOptions, Resolved};
use crate::model::record::Recorder;
use crate::model::scratch::Scratch;
use crate::model::trace::Trace;
use crate::moe::layer::{LayerBuild, MoeLayer};
use crate::moe::mlp::DenseMlp;
use crate::moe::routing::DynamicActivation;
use crate::moe::stats::ResidencyStats;

/// Which rows of logits a forward call returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Logits {
    /// The last token's `[vocab]` logits (what generation needs).
    Last,
    /// [tokens, vocab] logits of every token of the call (at most `max_logit_rows` tokens).
    All,
}

/// A layer's MLP.
pub enum Mlp {
    Dense(Box<DenseMlp>),
    Moe(Box<MoeLayer>),
}

struct Layer {
    /// Layer 0: norm of the embeddings; later layers first add the previous MLP output.
    input_norm: RmsNorm,
    attention: AttentionBlock,
    /// Adds the attention output to the residual stream, then normalises.
    post_norm: RmsNorm,
    mlp: Mlp,
}

/// A Hugging Face MoE checkpoint loaded onto the GPU, with its KV cache.
///
/// ```no_run
/// use moe_gpu::{Context, GenerateOptions, Model, Sampling};
///
/// let ctx = Context::new()?;
/// let mut model = Model::load(&ctx, "path/to/OLMoE-1B-7B".as_ref())?;
/// let options = GenerateOptions {
///     max_new_tokens: 32,
///     sampling: Sampling::Greedy,
///     ..GenerateOptions::for_model(&model)
/// };
/// let mut generator = model.generate(&ctx, &[1, 412, 2119], options)?;
/// while let Some(token) = generator.next_token()? {
///     println!("{token}");
/// }
/// # Ok::<(), moe_gpu::Error>(())
/// ```
pub struct Model {
    pub config: ModelConfig,
    pub limits: Resolved,
    ckpt: Arc<Checkpoint>,
    embed_name: String,
    scratch: Scratch,
    layers: Vec<Layer>,
    final_norm: RmsNorm,
    /// [max_logit_rows, hidden] final norm output.
    final_out: wgpu::Buffer,
    lm_head: LmHead,
    logits: Staging,
    /// [MoE layers, max_batch, k] expert ids, with `ModelOptions::routing_stats`.
    routing: Option<Staging>,
    /// Tokens in the KV cache.
    position: usize,
}

impl Model {
    /// Loads `dir` (config.json + safetensors) with default [`ModelOptions`].
    pub fn load(ctx: &Context, dir: &Path) -> Result<Self> {
        Self::load_with(ctx, dir, &ModelOptions::default())
    }

    pub fn load_with(ctx: &Context, dir: &Path, options: &ModelOptions) -> Result<Self> {
        let config = ModelConfig::load(dir)?;
        let limits = options.resolve(&config)?;
        let ckpt = Arc::new(Checkpoint::open(dir)?);
        let cfg = &config;
        let (h, vocab) = (cfg.hidden, cfg.vocab);
        let embed_name = "model.embed_tokens.weight".to_string();
        ckpt.expect(&embed_name, &[vocab, h])?;
        let scratch = Scratch::new(ctx, cfg, limits.batch, limits.context)?;
        let s = &scratch;
        let eps = cfg.rms_eps as f32;
        let norm = |name: &str, add: bool, delta: &wgpu::Buffer, out: &wgpu::Buffer| {
            let w = ckpt.f32(name, &[h])?;
            let weight = ctx.storage_with(name, &w)?;
            RmsNorm::new(
                ctx,
                NormShape::rows(h),
                eps,
                add,
                NormBuffers {
                    delta,
                    x: &s.h,
                    weight: &weight,
                    out,
                },
            )
        };
        let mut layers = Vec::with_capacity(cfg.layers);
        let moe_count = cfg.moe_layers().len();
        let residency = &options.residency;
        let mut first_moe = true;
        for l in 0..cfg.layers {
            let p = format!("model.layers.{l}.");
            let input_norm = if l == 0 {
                norm(&format!("{p}input_layernorm.weight"), false, &s.zeros, &s.x)?
            } else {
                norm(
                    &format!("{p}input_layernorm.weight"),
                    true,
                    &s.mlp_out,
                    &s.x,
                )?
            };
            let attention = AttentionBlock::new(&AttentionInit {
                ctx,
                ckpt: &ckpt,
                cfg,
                layer: l,
                format: options.dense_format,
                scratch: s,
                positions: limits.context,
            })?;
            let post_norm = norm(
                &format!("{p}post_attention_layernorm.weight"),
                true,
                &s.attn_out,
                &s.x,
            )?;
            let mlp = match cfg.mlp_kinds[l] {
                MlpKind::Dense => {
                    let w = load_mlp(&ckpt, &cfg.arch.mlp_prefix(l), h, cfg.dense_inter)?;
                    Mlp::Dense(Box::new(DenseMlp::new(
                        ctx,
                        &w,
                        h,
                        cfg.dense_inter,
                        Glu::Silu,
                        options.dense_format,
                        limits.batch,
                        &s.x,
                        &s.mlp_out,
                    )?))
                }
                MlpKind::Moe => {
                    let spec = moe_layer_spec_for(cfg, l, options.expert_format);
                    let slots = residency.slots_per_layer(ctx, &spec, moe_count)?;
                    let weights = load_moe_weights(&ckpt, cfg, l)?;
                    let build = LayerBuild {
                        max_tokens: limits.batch,
                        io: Some((s.x.clone(), s.mlp_out.clone())),
                        slots,
                        residency,
                        layer: l,
                    };
                    let mut layer = MoeLayer::build(ctx, spec, &weights, build)?;
                    // The previous MoE layer routes on its post-attention norm output, which
                    // is in `x` then: this layer's router predicts its experts from it.
                    if residency.prefetch && !first_moe {
                        layer.attach_predictor(ctx, &s.x)?;
                    }
                    first_moe = false;
                    Mlp::Moe(Box::new(layer))
                }
            };
            layers.push(Layer {
                input_norm,
                attention,
                post_norm,
                mlp,
            });
        }
        let final_out = ctx.storage("final norm", (limits.logit_rows * h * 4) as u64)?;
        let final_norm = norm("model.norm.weight", true, &s.mlp_out, &final_out)?;
        let head_name = if cfg.tie_embeddings {
            embed_name.clone()
        } else {
            "lm_head.weight".to_string()
        };
        let head_w = ckpt.f32(&head_name, &[vocab, h])?;
        let lm_head = LmHead::new(
            ctx,
            &head_name,
            &head_w,
            vocab,
            h,
            options.dense_format,
            &final_out,
            limits.logit_rows,
        )?;
        let logits = Staging::new(ctx, "logits", (limits.logit_rows * vocab * 4) as u64);
        let routing = options.routing_stats.then(|| {
            let pairs: usize = layers
                .iter()
                .filter_map(|l| match &l.mlp {
                    Mlp::Moe(m) => Some(limits.batch * m.top_k()),
                    Mlp::Dense(_) => None,
                })
                .sum();
            Staging::new(ctx, "expert ids", (pairs * 4) as u64)
        });
        Ok(Self {
            config,
            limits,
            ckpt,
            embed_name,
            scratch,
            layers,
            final_norm,
            final_out,
            lm_head,
            logits,
            routing,
            position: 0,
        })
    }

    /// Tokens currently in the KV cache.
    pub fn position(&self) -> usize {
        self.position
    }

    /// Empties the KV cache (the next forward starts at position 0).
    pub fn reset(&mut self) {
        self.position = 0;
    }

    /// Expert residency statistics of every MoE layer so far: hits, misses, bytes uploaded and
    /// per-layer histograms (resident layers count only what [`MoeLayer::observe_routing`] is
    /// given, since they read nothing back).
    pub fn residency_stats(&self) -> ResidencyStats {
        ResidencyStats::from_layers(self.moe_layers().map(|(_, m)| m.stats()).collect())
    }

    /// The MoE layers, by decoder layer index.
    pub fn moe_layers(&self) -> impl Iterator<Item = (usize, &MoeLayer)> {
        self.layers
            .iter()
            .enumerate()
            .filter_map(|(i, l)| match &l.mlp {
                Mlp::Moe(m) => Some((i, m.as_ref())),
                Mlp::Dense(_) => None,
            })
    }

    /// Checks that `ids` can be appended to the cache.
    fn check_ids(&self, ids: &[u32]) -> Result<()> {
        if ids.is_empty() {
            return Err(Error::input("no tokens to process (empty prompt)"));
        }
        if let Some((i, id)) = ids
            .iter()
            .enumerate()
            .find(|(_, id)| **id as usize >= self.config.vocab)
        {
            return Err(Error::input(format!(
                "token id {id} at index {i} is out of range: the vocabulary has {} tokens",
                self.config.vocab
            )));
        }
        let end = self.position + ids.len();
        if end > self.limits.context {
            return Err(Error::input(format!(
                "{} tokens after the {} already in the cache exceed the context of {} tokens \
                 (max_position_embeddings = {}; ModelOptions::max_context)",
                ids.len(),
                self.position,
                self.limits.context,
                self.config.max_positions
            )));
        }
        Ok(())
    }

    /// Embedding rows of `ids`, converted on the host from the memory-mapped checkpoint.
    fn embed(&self, ids: &[u32]) -> Result<Vec<f32>> {
        let mut x = Vec::with_capacity(ids.len() * self.config.hidden);
        for id in ids {
            x.extend(self.ckpt.f32_slice(&self.embed_name, *id as usize)?);
        }
        Ok(x)
    }

    /// Appends `ids` to the KV cache and returns their logits: `[vocab]` for [`Logits::Last`],
    /// [tokens, vocab] for [`Logits::All`]. Prompts longer than `max_batch` are processed in
    /// several steps (one submit each).
    pub fn forward(&mut self, ctx: &Context, ids: &[u32], which: Logits) -> Result<Vec<f32>> {
        self.check_ids(ids)?;
        let rows = match which {
            Logits::Last => 1,
            Logits::All => ids.len(),
        };
        if rows > self.limits.logit_rows {
            return Err(Error::input(format!(
                "asked for logits of {rows} tokens; the model was built for at most {} \
                 (ModelOptions::max_logit_rows)",
                self.limits.logit_rows
            )));
        }
        let chunks: Vec<&[u32]> = ids.chunks(self.limits.batch).collect();
        let last = chunks.len() - 1;
        for (i, chunk) in chunks.into_iter().enumerate() {
            let logit_rows = if i == last { rows } else { 0 };
            self.step(ctx, chunk, logit_rows, None)?;
        }
        let vocab = self.config.vocab;
        self.logits.read(ctx, rows * vocab)
    }

    /// Runs `ids` from an empty cache and returns HF-named intermediate tensors
    /// (`embed.output`, `layers.L.attn.output`, `layers.L.mlp.output`, `layers.L.output`,
    /// `final_norm.output`, `logits`), for debugging against a reference implementation.
    pub fn trace(&mut self, ctx: &Context, ids: &[u32]) -> Result<Trace> {
        self.reset();
        self.check_ids(ids)?;
        let t = ids.len();
        if t > self.limits.batch.min(self.limits.logit_rows) {
            return Err(Error::input(format!(
                "a trace runs in one step: {t} tokens exceed max_batch = {} or \
                 max_logit_rows = {}",
                self.limits.batch, self.limits.logit_rows
            )));
        }
        let mut trace = Trace::new(
            ctx,
            t,
            self.config.hidden,
            self.config.layers,
            self.config.vocab,
        );
        self.step(ctx, ids, t, Some(&mut trace))?;
        trace.finish(ctx, &self.logits)?;
        Ok(trace)
    }

    /// One forward step of `ids` at the current position, with logits of the last
    /// `logit_rows` tokens copied to the staging buffer.
    fn step(
        &mut self,
        ctx: &Context,
        ids: &[u32],
        logit_rows: usize,
        mut trace: Option<&mut Trace>,
    ) -> Result<()> {
        let t = ids.len();
        let pos0 = self.position;
        let s = &self.scratch;
        ctx.queue
            .write_buffer(&s.h, 0, bytemuck::cast_slice(&self.embed(ids)?));
        let mut rec = Recorder::new(ctx);
        if let Some(tr) = trace.as_deref_mut() {
            tr.capture(&mut rec, "embed.output", &s.h);
        }
        let activation = DynamicActivation::default();
        let moe: Vec<&MoeLayer> = self.moe_layers().map(|(_, m)| m).collect();
        let mut moe_index = 0;
        for (l, layer) in self.layers.iter().enumerate() {
            layer.input_norm.encode(ctx, rec.pass(), t);
            if l > 0
                && let Some(tr) = trace.as_deref_mut()
            {
                tr.capture(&mut rec, &format!("layers.{}.output", l - 1), &s.h);
            }
            layer.attention.encode(ctx, rec.pass(), t, pos0);
            layer.post_norm.encode(ctx, rec.pass(), t);
            if let Some(tr) = trace.as_deref_mut() {
                tr.capture(&mut rec, &format!("layers.{l}.attn.output"), &s.attn_out);
            }
            match &layer.mlp {
                Mlp::Dense(mlp) => mlp.encode(ctx, rec.pass(), t),
                Mlp::Moe(layer) => {
                    moe_index += 1;
                    let next = moe.get(moe_index).copied();
                    layer.encode_route(ctx, rec.pass(), t, &activation)?;
                    if let Some(next) = next {
                        next.encode_prediction(ctx, rec.pass(), t, &activation)?;
                    }
                    if layer.needs_sync() {
                        let encoder = layer.sync(ctx, rec.take_encoder(), t, next)?;
                        rec.resume(encoder);
                    }
                    layer.encode_experts(ctx, rec.pass(), t);
                }
            }
            if let Some(tr) = trace.as_deref_mut() {
                tr.capture(&mut rec, &format!("layers.{l}.mlp.output"), &s.mlp_out);
            }
        }
        if logit_rows > 0 {
            self.final_norm
                .encode_range(ctx, rec.pass(), t - logit_rows, logit_rows);
            if let Some(tr) = trace {
                let last = self.config.layers - 1;
                tr.capture(&mut rec, &format!("layers.{last}.output"), &s.h);
                tr.capture(&mut rec, "final_norm.output", &self.final_out);
            }
            self.lm_head.encode(ctx, rec.pass(), logit_rows);
            self.lm_head
                .copy_out(rec.encoder(), &self.logits, logit_rows);
        }
        let ids_bytes = |layer: &MoeLayer| (t * layer.top_k() * 4) as u64;
        if let Some(staging) = &self.routing {
            let mut offset = 0;
            for layer in &moe {
                rec.copy(layer.ids_buffer(), 0, staging, offset, ids_bytes(layer));
                offset += ids_bytes(layer);
            }
        }
        rec.submit();
        if let Some(staging) = &self.routing {
            let total: u64 = moe.iter().map(|l| ids_bytes(l)).sum();
            let raw = staging.read_bytes(ctx, total)?;
            let mut offset = 0;
            for layer in &moe {
                let ids: Vec<u32> = decode(&raw, offset, t * layer.top_k());
                layer.observe_routing(t, &ids);
                offset += ids_bytes(layer);
            }
        }
        self.position += t;
        Ok(())
    }
}
