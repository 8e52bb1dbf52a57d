//! `moe bench-attention`: one decode step's attention (one query per head) over a KV cache of
//! P positions at real models' attention shapes: split-KV (the default policy's split) against
//! one thread per head over every key, timed alternately in one run.

use std::sync::Arc;

use serde::Serialize;

use crate::error::Result;
use crate::gpu::{Context, GpuTimer, median};
use crate::kernels::attention::{
    Attention, AttentionBuffers, AttentionSpec, KeySplit, MAX_SPLITS, SplitKv,
};
use crate::kernels::rows::RowTable;
use crate::synthetic::Rng;

/// A real model's attention as the decoder runs it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AttentionShape {
    /// Model name.
    pub name: &'static str,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Query/key width per head.
    pub qk_dim: usize,
    /// Value width per head.
    pub v_dim: usize,
    /// Whether the heads have attention sinks (gpt-oss).
    pub sinks: bool,
}

/// From the models' Hugging Face configs; DeepSeek attends over its latent cache
/// (kv_lora_rank 512 + rope 64, one KV head shared by every query head).
pub const ATTENTION_SHAPES: [AttentionShape; 5] = [
    AttentionShape {
        name: "Mixtral-8x7B",
        heads: 32,
        kv_heads: 8,
        qk_dim: 128,
        v_dim: 128,
        sinks: false,
    },
    AttentionShape {
        name: "Qwen3-30B-A3B",
        heads: 32,
        kv_heads: 4,
        qk_dim: 128,
        v_dim: 128,
        sinks: false,
    },
    AttentionShape {
        name: "OLMoE-1B-7B",
        heads: 16,
        kv_heads: 16,
        qk_dim: 128,
        v_dim: 128,
        sinks: false,
    },
    AttentionShape {
        name: "gpt-oss-20b",
        heads: 64,
        kv_heads: 8,
        qk_dim: 64,
        v_dim: 64,
        sinks: true,
    },
    AttentionShape {
        name: "DeepSeek-V2-Lite (latent)",
        heads: 16,
        kv_heads: 1,
        qk_dim: 576,
        v_dim: 512,
        sinks: false,
    },
];

/// One shape at one context length.
#[derive(Debug, Clone, Serialize)]
pub struct AttentionFigure {
    /// Model name.
    pub model: &'static str,
    /// Its attention shape.
    pub shape: AttentionShape,
    /// Keys the query sees (cache positions).
    pub positions: usize,
    /// One thread per head over every key (in passes of at most `pass_keys` keys).
    pub unsplit_ms: f64,
    /// Keys per pass of the unsplit kernel.
    pub pass_keys: usize,
    /// Key splits of the split kernel.
    pub splits: usize,
    /// Keys per split.
    pub chunk: usize,
    /// Time of the split kernel and its merge, in milliseconds.
    pub split_ms: f64,
    /// unsplit_ms / split_ms.
    pub speedup: f64,
}

/// Times one decode step at `positions` keys both ways, `repeats` times each, alternately.
pub fn bench_attention(
    ctx: &Context,
    timer: &GpuTimer,
    shape: &AttentionShape,
    positions: usize,
    repeats: usize,
) -> Result<AttentionFigure> {
    let s = shape;
    let spec = AttentionSpec {
        heads: s.heads,
        kv_heads: s.kv_heads,
        qk_dim: s.qk_dim,
        v_dim: s.v_dim,
        window: None,
        sinks: s.sinks,
        scale: 1.0 / (s.qk_dim as f32).sqrt(),
        max_tokens: 1,
        positions,
        pass_keys: None,
    };
    let mut rng = Rng::new(positions as u64);
    let q = ctx.storage_with("q", &rng.normals(s.heads * s.qk_dim, 1.0))?;
    let k = ctx.storage_with("k", &rng.normals(positions * s.kv_heads * s.qk_dim, 1.0))?;
    let v = ctx.storage_with("v", &rng.normals(positions * s.kv_heads * s.v_dim, 1.0))?;
    let sinks = ctx.storage_with("sinks", &rng.normals(s.heads, 1.0))?;
    let partials = ctx.storage("partials", spec.partials_bytes(MAX_SPLITS))?;
    let out = ctx.storage("out", (s.heads * s.v_dim * 4) as u64)?;
    let rows = Arc::new(RowTable::new(ctx, 1)?);
    let attention = Attention::new(
        ctx,
        spec,
        SplitKv::default(),
        AttentionBuffers {
            q: &q,
            k: &k,
            v: &v,
            sinks: &sinks,
            partials: &partials,
            out: &out,
            rows: &rows,
        },
    )?;
    let pos0 = positions - 1;
    let split = attention.split_for(1, pos0);
    let unsplit = KeySplit::whole(positions);
    let time = |split| {
        timer.time(ctx, |mut encoder| {
            {
                let mut pass = encoder.begin_compute_pass(&Default::default());
                attention.encode_split(ctx, &mut pass, 1, pos0, split)?;
            }
            Ok(encoder)
        })
    };
    // One untimed run of each pays for pipeline compilation and first touches.
    time(unsplit)?;
    time(split)?;
    let (mut a, mut b) = (Vec::new(), Vec::new());
    for _ in 0..repeats.max(1) {
        a.push(time(unsplit)?);
        b.push(time(split)?);
    }
    let (unsplit_ms, split_ms) = (median(&mut a) * 1e3, median(&mut b) * 1e3);
    Ok(AttentionFigure {
        model: s.name,
        shape: *s,
        positions,
        unsplit_ms,
        pass_keys: spec.max_pass_keys(),
        splits: split.splits,
        chunk: split.chunk,
        split_ms,
        speedup: unsplit_ms / split_ms,
    })
}
