//! Attention over several sequences in one step: one query per sequence, each over its own
//! region of a shared KV cache and at its own position, against `src/reference/attention.rs`;
//! and each query's result is bit for bit what it gets alone, whatever else shares its step
//! (split-KV on, with positions on both sides of the split threshold, windows and sinks).

use std::sync::Arc;

use moe_gpu::kernels::attention::{Attention, AttentionBuffers, AttentionSpec, SplitKv};
use moe_gpu::kernels::rows::{RowPlace, RowTable};
use moe_gpu::reference::{AttentionInput, attention};
use moe_gpu::synthetic::Rng;

use crate::common;
use crate::common::attention::TOL;

/// Cache positions per sequence.
const POSITIONS: usize = 600;

struct Sequences {
    attention: Attention,
    rows: Arc<RowTable>,
    out: wgpu::Buffer,
    /// [sequences, heads, qk_dim] what a step's queries read, row t for query t.
    q_step: wgpu::Buffer,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
    sinks: Vec<f32>,
    spec: AttentionSpec,
}

fn setup(rng: &mut Rng, spec: AttentionSpec, sequences: usize) -> Sequences {
    let ctx = common::ctx();
    let (h, kvh) = (spec.heads, spec.kv_heads);
    let q = rng.normals(sequences * h * spec.qk_dim, 1.0);
    let k = rng.normals(sequences * POSITIONS * kvh * spec.qk_dim, 1.0);
    let v = rng.normals(sequences * POSITIONS * kvh * spec.v_dim, 1.0);
    let sinks = rng.normals(h, 1.5);
    let out = ctx
        .storage("out", (sequences * h * spec.v_dim * 4) as u64)
        .unwrap();
    let policy = SplitKv {
        min_keys: 64,
        min_chunk: 16,
        max_tokens: sequences,
    };
    let partials = ctx
        .storage("partials", spec.partials_bytes(policy.states()))
        .unwrap();
    let rows = Arc::new(RowTable::new(ctx, sequences).unwrap());
    let q_step = ctx.storage_with("q", &q).unwrap();
    let attention = Attention::new(
        ctx,
        spec,
        policy,
        AttentionBuffers {
            q: &q_step,
            k: &ctx.storage_with("k", &k).unwrap(),
            v: &ctx.storage_with("v", &v).unwrap(),
            sinks: &ctx.storage_with("sinks", &sinks).unwrap(),
            partials: &partials,
            out: &out,
            rows: &rows,
        },
    )
    .unwrap();
    Sequences {
        attention,
        rows,
        out,
        q_step,
        q,
        k,
        v,
        sinks,
        spec,
    }
}

impl Sequences {
    /// Runs one step of `(query row, sequence, position)` and returns each query's output.
    fn run(&self, queries: &[(usize, usize, usize)]) -> Vec<Vec<f32>> {
        let ctx = common::ctx();
        let s = &self.spec;
        let width = s.heads * s.v_dim;
        // Each query reads q row `i`: copy the wanted q rows into place.
        let q: Vec<f32> = queries
            .iter()
            .flat_map(|&(row, _, _)| {
                self.q[row * s.heads * s.qk_dim..(row + 1) * s.heads * s.qk_dim].to_vec()
            })
            .collect();
        let places: Vec<RowPlace> = queries
            .iter()
            .map(|&(_, seq, pos)| RowPlace {
                cache_row0: (seq * POSITIONS) as u32,
                position: pos as u32,
            })
            .collect();
        ctx.queue
            .write_buffer(&self.q_step, 0, bytemuck::cast_slice(&q));
        self.rows.set(ctx, &places).unwrap();
        let mut result = Ok(());
        common::run_pass(ctx, |pass| {
            result = self.attention.encode_rows(ctx, pass, &places);
        });
        result.unwrap();
        let got = ctx
            .read_back::<f32>(&self.out, queries.len() * width)
            .unwrap();
        got.chunks(width).map(<[f32]>::to_vec).collect()
    }

    /// The reference output of q row `row` at `pos` of sequence `seq`.
    fn reference(&self, row: usize, seq: usize, pos: usize) -> Vec<f32> {
        let s = &self.spec;
        let (kw, vw) = (s.kv_heads * s.qk_dim, s.kv_heads * s.v_dim);
        let base = seq * POSITIONS;
        attention(&AttentionInput {
            q: &self.q[row * s.heads * s.qk_dim..(row + 1) * s.heads * s.qk_dim],
            k: &self.k[base * kw..(base + pos + 1) * kw],
            v: &self.v[base * vw..(base + pos + 1) * vw],
            tokens: 1,
            pos0: pos,
            heads: s.heads,
            kv_heads: s.kv_heads,
            qk_dim: s.qk_dim,
            v_dim: s.v_dim,
            scale: s.scale,
            window: s.window,
            sinks: s.sinks.then_some(&self.sinks),
        })
    }
}

#[test]
fn each_sequence_attends_its_own_cache_and_alone_gives_the_same_bits() {
    let mut rng = Rng::new(21);
    let sequences = 5;
    for (window, sinks) in [(None, false), (Some(100), true), (None, true)] {
        let spec = AttentionSpec {
            heads: 4,
            kv_heads: 2,
            qk_dim: 20,
            v_dim: 12,
            window,
            sinks,
            scale: 0.3,
            max_tokens: sequences,
            positions: POSITIONS,
            pass_keys: Some(50),
        };
        let s = setup(&mut rng, spec, sequences);
        // Positions below the split threshold, just above it, and long.
        let positions = [0, 30, 64, 333, POSITIONS - 1];
        let step: Vec<(usize, usize, usize)> = (0..sequences)
            .map(|i| (i, sequences - 1 - i, positions[i]))
            .collect();
        let together = s.run(&step);
        for (&(row, seq, pos), got) in step.iter().zip(&together) {
            let what = format!("window {window:?} sinks {sinks}: sequence {seq} at {pos}");
            common::assert_close(&what, got, &s.reference(row, seq, pos), TOL);
            let alone = &s.run(&[(row, seq, pos)])[0];
            assert!(alone == got, "{what}: alone differs from together");
        }
        // Another subset, in another order.
        let pair = [step[3], step[1]];
        for (q, got) in pair.iter().zip(s.run(&pair)) {
            assert!(
                got == together[q.0],
                "{window:?}: a pair differs from all five"
            );
        }
    }
}

#[test]
fn queries_outside_their_cache_are_refused() {
    let mut rng = Rng::new(22);
    let spec = AttentionSpec {
        heads: 2,
        kv_heads: 1,
        qk_dim: 8,
        v_dim: 8,
        window: None,
        sinks: false,
        scale: 1.0,
        max_tokens: 2,
        positions: POSITIONS,
        pass_keys: None,
    };
    let s = setup(&mut rng, spec, 2);
    let ctx = common::ctx();
    for place in [
        RowPlace {
            cache_row0: 0,
            position: POSITIONS as u32,
        },
        RowPlace {
            cache_row0: (2 * POSITIONS) as u32,
            position: 0,
        },
    ] {
        let mut result = Ok(());
        common::run_pass(ctx, |pass| {
            result = s.attention.encode_rows(ctx, pass, &[place]);
        });
        let err = result.err().unwrap().to_string();
        assert!(err.contains("cache rows"), "{err}");
    }
}
