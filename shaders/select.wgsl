// Expert selection for every routing family, one thread per token. The family is chosen by
// override constants; runtime top-k, skip threshold and top-p are parameters.
//   SCORE 0: softmax over all experts, weights are the probabilities (Mixtral, Qwen, OLMoE, DS-V2)
//   SCORE 1: sigmoid scores, weights are the scores (DeepSeek-V3)
//   SCORE 2: top-k on raw logits, weights = softmax over the k selected (gpt-oss)
//   CORRECTION: the selection key adds a per-expert bias that the weights do not see (DS-V3)
//   GROUP 1/2: experts form n_group groups scored by their max / sum of top two keys; only the
//              best topk_group groups compete (DeepSeek group-limited routing)
//   RENORM: weights /= (sum + renorm_eps); every weight is then multiplied by scale.
// Picks are made in descending key order, ties to the lower expert id; a NaN key never wins.
// Slots that runtime top-k, top-p or the skip threshold drop get id INVALID and weight 0.
// With COUNT each kept pick also adds one to its expert's count (the permutation's histogram),
// so the layer needs no separate count kernel. With `permute` set (COUNT on, a single
// workgroup: at most 64 tokens) the workgroup then builds the whole permutation of the step,
// as scan.wgsl does (permute_common.wgsl, prefixed), which saves the scan's dispatch.
// A thread whose token has a NaN or infinite logit (the exponent bits all set: WGSL has no
// isnan, and x != x may be folded away) writes status_tag into status[0] unless an earlier
// layer's tag is already there; no other thread touches the flag.

struct Params {
    tokens: u32,
    experts: u32,
    k: u32,            // experts to pick per token (runtime top-k, ≤ k_max)
    k_max: u32,        // row stride of ids and weights
    logit_stride: u32, // floats per row of logits (experts, +1 with a shared-expert gate)
    n_group: u32,
    topk_group: u32,
    renorm_eps: f32,
    scale: f32,        // routed scaling factor
    skip_beta: f32,    // drop pick j > 0 whose weight < skip_beta · weight of pick 0
    top_p: f32,        // keep picks until their routing probability mass reaches top_p
    permute: u32,      // 1: this one workgroup also builds the permutation (permute_common)
    block_m: u32,      // permute: rows per GEMM tile
    col_blocks_a: u32, // permute: column blocks of the first grouped GEMM
    col_blocks_b: u32, // permute: column blocks of the second grouped GEMM
    tail_m: u32,       // permute: an expert's last tile of at most this many rows is a tail tile
    status_tag: u32,   // written to status[0] on a non-finite logit (decoder layer + 1); 0: never
}

override SCORE: u32 = 0u;
override CORRECTION: bool = false;
override GROUP: u32 = 0u;
override RENORM: bool = false;
override SHARED_GATE: bool = false;
override COUNT: bool = false;

const INVALID: u32 = 0xffffffffu;
const NEG_INF: f32 = -3.4028235e38;

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> logits: array<f32>;        // [tokens, logit_stride]
@group(0) @binding(2) var<storage, read> correction: array<f32>;    // [experts]
@group(0) @binding(3) var<storage, read_write> ids: array<u32>;     // [tokens, k_max]
@group(0) @binding(4) var<storage, read_write> weights: array<f32>; // [tokens, k_max]
@group(0) @binding(5) var<storage, read_write> shared_gate: array<f32>; // [tokens]
@group(0) @binding(6) var<storage, read_write> counts: array<atomic<u32>>; // [experts] COUNT: += picks
@group(0) @binding(7) var<storage, read_write> offsets: array<u32>;    // [experts + 1] permute
@group(0) @binding(8) var<storage, read_write> cursor: array<atomic<u32>>; // [experts] permute
@group(0) @binding(9) var<storage, read_write> tiles: array<vec4<u32>>; // [max tiles] permute
@group(0) @binding(10) var<storage, read_write> args: array<u32>;      // [12] permute
@group(0) @binding(11) var<storage, read_write> rows: array<u32>;      // [tokens · k_max] permute
@group(0) @binding(12) var<storage, read_write> pos: array<u32>;       // [tokens · k_max] permute
@group(0) @binding(13) var<storage, read_write> status: array<u32>;    // [1] 0, or the first tag

fn is_finite(v: f32) -> bool {
    return (bitcast<u32>(v) & 0x7f800000u) != 0x7f800000u;
}

fn sigmoid(v: f32) -> f32 {
    return 1.0 / (1.0 + exp(-v));
}

// The value the router compares. Softmax is monotone, so softmax routers compare logits.
fn key(base: u32, e: u32) -> f32 {
    let l = logits[base + e];
    var v = l;
    if (SCORE == 1u) {
        v = sigmoid(l);
        if (CORRECTION) {
            v += correction[e];
        }
    }
    return select(NEG_INF, v, v == v);
}

// Is (a, ia) ahead of (b, ib): larger value first, then lower index.
fn ahead(a: f32, ia: u32, b: f32, ib: u32) -> bool {
    return a > b || (a == b && ia < ib);
}

fn group_score(base: u32, g: u32, size: u32) -> f32 {
    var first = NEG_INF;
    var second = NEG_INF;
    for (var e = g * size; e < (g + 1u) * size; e++) {
        let v = key(base, e);
        if (v > first) {
            second = first;
            first = v;
        } else if (v > second) {
            second = v;
        }
    }
    if (GROUP == 2u) {
        return first + second;
    }
    return first;
}

// Bit g set = group g may be chosen. Groups are picked best first, like experts.
fn group_mask(base: u32) -> u32 {
    if (GROUP == 0u) {
        return 0xffffffffu;
    }
    let size = p.experts / p.n_group;
    var mask = 0u;
    var prev = 3.4028235e38;
    var prev_g = INVALID;
    for (var pick = 0u; pick < p.topk_group; pick++) {
        var best = NEG_INF;
        var best_g = INVALID;
        for (var g = 0u; g < p.n_group; g++) {
            let s = group_score(base, g, size);
            let after_prev = prev_g == INVALID || ahead(prev, prev_g, s, g);
            if (after_prev && (best_g == INVALID || ahead(s, g, best, best_g))) {
                best = s;
                best_g = g;
            }
        }
        mask |= 1u << best_g;
        prev = best;
        prev_g = best_g;
    }
    return mask;
}

@compute @workgroup_size(64)
fn main(
    @builtin(global_invocation_id) gid: vec3<u32>,
    @builtin(local_invocation_index) lid: u32,
) {
    if (gid.x < p.tokens) {
        select_token(gid.x);
    }
    if (p.permute != 0u) {
        // Every token's ids and counts are written before the permutation reads them.
        storageBarrier();
        let pairs = p.tokens * p.k_max;
        permute(lid, p.experts, p.block_m, p.tail_m, p.col_blocks_a, p.col_blocks_b, pairs);
    }
}

// Picks, weights and shared gate of token t.
fn select_token(t: u32) {
    let base = t * p.logit_stride;
    let out = t * p.k_max;
    let mask = group_mask(base);
    let group_size = select(p.experts, p.experts / max(p.n_group, 1u), GROUP != 0u);

    // Normaliser of the routing probabilities (softmax, or sigmoid mass for top-p).
    var max_logit = NEG_INF;
    for (var e = 0u; e < p.experts; e++) {
        max_logit = max(max_logit, key(base, e));
    }
    var mass = 0.0;
    var finite = true;
    for (var e = 0u; e < p.experts; e++) {
        let l = logits[base + e];
        finite = finite & is_finite(l);
        if (SCORE == 1u) {
            mass += sigmoid(l);
        } else {
            mass += exp(l - max_logit);
        }
    }
    if (SHARED_GATE) {
        finite = finite & is_finite(logits[base + p.experts]);
    }
    if (!finite && p.status_tag != 0u && status[0] == 0u) {
        status[0] = p.status_tag;
    }

    // Picks in descending key order; each pass takes the best expert behind the previous pick.
    var prev = 3.4028235e38;
    var prev_e = INVALID;
    var kept = 0u;
    var cum = 0.0;
    var first_prob = 0.0;
    for (var j = 0u; j < p.k; j++) {
        var best = NEG_INF;
        var best_e = INVALID;
        for (var e = 0u; e < p.experts; e++) {
            var v = key(base, e);
            if ((mask & (1u << (e / group_size))) == 0u) {
                v = NEG_INF;
            }
            let after_prev = prev_e == INVALID || ahead(prev, prev_e, v, e);
            if (after_prev && (best_e == INVALID || ahead(v, e, best, best_e))) {
                best = v;
                best_e = e;
            }
        }
        prev = best;
        prev_e = best_e;
        let l = logits[base + best_e];
        var prob = exp(l - max_logit) / mass;
        if (SCORE == 1u) {
            prob = sigmoid(l) / mass;
        }
        if (j == 0u) {
            first_prob = prob;
        } else {
            if (p.top_p < 1.0 && cum >= p.top_p) {
                break;
            }
            if (prob < p.skip_beta * first_prob) {
                continue;
            }
        }
        cum += prob;
        ids[out + kept] = best_e;
        kept += 1u;
        if (COUNT && best_e < p.experts) {
            atomicAdd(&counts[best_e], 1u);
        }
    }

    // Weights of the kept picks.
    var total = 0.0;
    let l0 = logits[base + ids[out]];
    for (var j = 0u; j < kept; j++) {
        let l = logits[base + ids[out + j]];
        var wt: f32;
        if (SCORE == 0u) {
            wt = exp(l - max_logit) / mass;
        } else if (SCORE == 1u) {
            wt = sigmoid(l);
        } else {
            wt = exp(l - l0);
        }
        weights[out + j] = wt;
        total += wt;
    }
    for (var j = 0u; j < kept; j++) {
        var wt = weights[out + j];
        if (SCORE == 2u) {
            wt = wt / total;
        } else if (RENORM) {
            wt = wt / (total + p.renorm_eps);
        }
        weights[out + j] = wt * p.scale;
    }
    for (var j = kept; j < p.k_max; j++) {
        ids[out + j] = INVALID;
        weights[out + j] = 0.0;
    }
    if (SHARED_GATE) {
        shared_gate[t] = sigmoid(logits[base + p.experts]);
    }
}
