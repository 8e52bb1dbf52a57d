//! Causal multi-head attention with GQA, a sliding window and sinks, written out plainly.

/// Inputs of [`attention`]: `q` [tokens, heads, qk_dim] at positions pos0.., `k`
/// [positions, kv_heads, qk_dim] and `v` [positions, kv_heads, v_dim] for positions
/// 0..pos0 + tokens.
pub struct AttentionInput<'a> {
    /// `[tokens, heads, qk_dim]` queries.
    pub q: &'a [f32],
    /// `[positions, kv_heads, qk_dim]` keys.
    pub k: &'a [f32],
    /// `[positions, kv_heads, v_dim]` values.
    pub v: &'a [f32],
    /// Query tokens.
    pub tokens: usize,
    /// Position of the first query token.
    pub pos0: usize,
    /// Query heads.
    pub heads: usize,
    /// Key/value heads.
    pub kv_heads: usize,
    /// Query/key width per head.
    pub qk_dim: usize,
    /// Value width per head.
    pub v_dim: usize,
    /// Factor applied to q · k before the softmax.
    pub scale: f32,
    /// Query position p sees keys p - window + 1 ..= p.
    pub window: Option<usize>,
    /// `[heads]` extra softmax logits that take weight but carry no value (gpt-oss).
    pub sinks: Option<&'a [f32]>,
}

/// [tokens, heads, v_dim] attention output, softmax in f64.
pub fn attention(a: &AttentionInput) -> Vec<f32> {
    let group = a.heads / a.kv_heads;
    let mut out = vec![0.0f32; a.tokens * a.heads * a.v_dim];
    for t in 0..a.tokens {
        let pos = a.pos0 + t;
        let first = a.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        for h in 0..a.heads {
            let kvh = h / group;
            let q = &a.q[(t * a.heads + h) * a.qk_dim..][..a.qk_dim];
            let scores: Vec<f64> = (first..=pos)
                .map(|j| {
                    let k = &a.k[(j * a.kv_heads + kvh) * a.qk_dim..][..a.qk_dim];
                    let dot: f64 = q.iter().zip(k).map(|(x, y)| *x as f64 * *y as f64).sum();
                    dot * a.scale as f64
                })
                .collect();
            let sink = a.sinks.map(|s| s[h] as f64);
            let max = scores
                .iter()
                .copied()
                .chain(sink)
                .fold(f64::NEG_INFINITY, f64::max);
            let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
            let total: f64 = weights.iter().sum::<f64>() + sink.map_or(0.0, |s| (s - max).exp());
            let o = &mut out[(t * a.heads + h) * a.v_dim..][..a.v_dim];
            for (d, o) in o.iter_mut().enumerate() {
                let acc: f64 = (first..=pos)
                    .zip(&weights)
                    .map(|(j, w)| w * a.v[(j * a.kv_heads + kvh) * a.v_dim + d] as f64)
                    .sum();
                *o = (acc / total) as f32;
            }
        }
    }
    out
}
