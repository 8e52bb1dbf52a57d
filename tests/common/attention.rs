//! Attention test cases and their checks against `src/reference/attention.rs`.

use std::sync::Arc;

use moe_gpu::kernels::attention::{
    Attention, AttentionBuffers, AttentionSpec, KeySplit, MAX_SPLITS, SplitKv,
};
use moe_gpu::kernels::rows::RowTable;
use moe_gpu::reference::{AttentionInput, attention};
use moe_gpu::synthetic::Rng;

pub const TOL: f32 = 1e-5;

#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub heads: usize,
    pub kv_heads: usize,
    pub qk_dim: usize,
    pub v_dim: usize,
    pub tokens: usize,
    pub pos0: usize,
    pub window: Option<usize>,
    pub sinks: bool,
    /// Keys per pass; None = the loop limit's.
    pub pass_keys: Option<usize>,
}

impl Case {
    pub fn spec(&self) -> AttentionSpec {
        AttentionSpec {
            heads: self.heads,
            kv_heads: self.kv_heads,
            qk_dim: self.qk_dim,
            v_dim: self.v_dim,
            window: self.window,
            sinks: self.sinks,
            scale: 1.3 / (self.qk_dim as f32).sqrt(),
            max_tokens: self.tokens,
            positions: self.pos0 + self.tokens,
            pass_keys: self.pass_keys,
        }
    }

    /// Keys the last query sees.
    pub fn keys(&self) -> usize {
        let last = self.pos0 + self.tokens;
        self.window.map_or(last, |w| w.min(last))
    }
}

/// One case's inputs on the GPU, its kernel and the reference output.
pub struct Setup {
    pub attention: Attention,
    pub out: wgpu::Buffer,
    pub want: Vec<f32>,
}

pub fn setup(rng: &mut Rng, c: Case, policy: SplitKv) -> Setup {
    let ctx = super::ctx();
    let positions = c.pos0 + c.tokens;
    let q = rng.normals(c.tokens * c.heads * c.qk_dim, 1.0);
    let k = rng.normals(positions * c.kv_heads * c.qk_dim, 1.0);
    let v = rng.normals(positions * c.kv_heads * c.v_dim, 1.0);
    let sinks = rng.normals(c.heads, 1.5);
    let spec = c.spec();
    let out = ctx
        .storage("out", (c.tokens * c.heads * c.v_dim * 4) as u64)
        .unwrap();
    let partials = ctx
        .storage("partials", spec.partials_bytes(MAX_SPLITS))
        .unwrap();
    let attention = Attention::new(
        ctx,
        spec,
        policy,
        AttentionBuffers {
            q: &ctx.storage_with("q", &q).unwrap(),
            k: &ctx.storage_with("k", &k).unwrap(),
            v: &ctx.storage_with("v", &v).unwrap(),
            sinks: &ctx.storage_with("sinks", &sinks).unwrap(),
            partials: &partials,
            out: &out,
            rows: &Arc::new(RowTable::new(ctx, c.tokens).unwrap()),
        },
    )
    .unwrap();
    let want = attention_reference(&c, &q, &k, &v, &sinks);
    Setup {
        attention,
        out,
        want,
    }
}

pub fn attention_reference(c: &Case, q: &[f32], k: &[f32], v: &[f32], sinks: &[f32]) -> Vec<f32> {
    attention(&AttentionInput {
        q,
        k,
        v,
        tokens: c.tokens,
        pos0: c.pos0,
        heads: c.heads,
        kv_heads: c.kv_heads,
        qk_dim: c.qk_dim,
        v_dim: c.v_dim,
        scale: c.spec().scale,
        window: c.window,
        sinks: c.sinks.then_some(sinks),
    })
}

/// Runs `split` and returns the output.
pub fn run(s: &Setup, c: &Case, split: KeySplit) -> Vec<f32> {
    let ctx = super::ctx();
    // Stale output from an earlier path must not pass for this one's.
    ctx.queue.write_buffer(
        &s.out,
        0,
        bytemuck::cast_slice(&vec![f32::NAN; s.want.len()]),
    );
    let mut result = Ok(());
    super::run_pass(ctx, |pass| {
        result = s.attention.encode_split(ctx, pass, c.tokens, c.pos0, split)
    });
    result.unwrap();
    ctx.read_back::<f32>(&s.out, s.want.len()).unwrap()
}

pub fn check(s: &Setup, c: &Case, split: KeySplit) {
    assert!(
        s.attention.split_fits(c.tokens, c.pos0, split),
        "{c:?}: {split:?} does not fit"
    );
    let got = run(s, c, split);
    super::assert_close(&format!("{c:?} {split:?}"), &got, &s.want, TOL);
}

/// Every (shape, step, window, sinks) combination of the given lists.
pub fn cases(
    shapes: &[(usize, usize, usize, usize)],
    steps: &[(usize, usize)],
    windows: &[Option<usize>],
) -> Vec<Case> {
    let mut all = Vec::new();
    for &(heads, kv_heads, qk_dim, v_dim) in shapes {
        for &(tokens, pos0) in steps {
            for &window in windows {
                for sinks in [false, true] {
                    all.push(Case {
                        heads,
                        kv_heads,
                        qk_dim,
                        v_dim,
                        tokens,
                        pos0,
                        window,
                        sinks,
                        pass_keys: None,
                    });
                }
            }
        }
    }
    all
}
