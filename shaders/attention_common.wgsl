// Shared part of the attention kernels; the host prefixes it to each of
//   attention.wgsl          one invocation per (token, head, key split);
//   attention_combine.wgsl  the fixed-order merge of the splits' partial softmax results.
// Causal attention of `tokens` queries over the KV cache; query t sits at rows[t] (its
// sequence's first cache row and its position), so a step may hold several sequences:
//   GQA: head h reads KV head h / group.
//   Sliding window (window > 0): query position q sees keys q − window + 1 ..= q, as HF's
//   `kv_idx > q_idx - sliding_window`.
//   Sinks (gpt-oss): one extra logit per head joins the softmax and is then dropped.
// Scores are (q · k) · scale; v_dim may differ from qk_dim, and k and v may share cache rows
// (DeepSeek MLA's latent cache: v is the first v_dim columns of each k row).

struct Params {
    tokens: u32,
    heads: u32,
    group: u32,     // query heads per KV head
    qk_dim: u32,
    v_dim: u32,
    q_stride: u32,  // floats per token of q
    k_stride: u32,  // floats per cache row of k
    v_stride: u32,  // floats per cache row of v
    out_stride: u32,
    window: u32,    // 0 = full causal attention
    scale: f32,
    splits: u32,     // key splits per (token, head) of this step (the most any query takes)
    chunk: u32,      // attention.wgsl: keys per split, at least (see row_chunk)
    max_splits: u32, // attention.wgsl: splits per query, at most (see row_chunk)
    min_keys: u32,   // attention.wgsl: a query splits its keys once it sees this many
    pass_start: u32, // attention.wgsl: first key of this pass within each split (0 = first pass)
    pass_keys: u32,  // attention.wgsl: keys per pass
    direct: u32,     // attention.wgsl: 1 = one split, one pass: normalise and write `out`
    _pad0: u32,
    _pad1: u32,
}

override SINKS: bool = false;

// Start of the running max: finite, so that exp(m − m_new) is 0 rather than NaN.
const NO_SCORE: f32 = -3.0e38;

@group(0) @binding(0) var<uniform> p: Params;

// First key a query at position `pos` sees.
fn first_key(pos: u32) -> u32 {
    if (p.window > 0u && pos + 1u > p.window) {
        return pos + 1u - p.window;
    }
    return 0u;
}
