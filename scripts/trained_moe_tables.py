#!/usr/bin/env python3
"""Prints BENCHMARKS.md's tables for the trained MoE from scripts/trained_moe_bench.sh's output.

Routing statistics, from the held-out calibration statistics and the token-by-token trace:
- load skew: the busiest expert's share of routed tokens against the uniform 1/E, the idlest's,
  and the effective number of experts exp(entropy of the load);
- co-activation: the lift P(a and b) / (P(a) P(b)) of the pair routed together most often,
  and the share of all co-activations held by the top 5% of pairs (5% if uniform);
- layer L predicting layer L+1: fit co-occurrence counts C[a][b] (a in L's experts, b in L+1's)
  on the first half of the trace, predict L+1's k experts on the second half as the top k of
  sum over a of C[a][b], and report precision; the baseline predicts L+1's k most used experts;
- step to step: the share of a token's experts in a layer that the previous token also used.
Usage: python3 scripts/trained_moe_tables.py OUT
"""
import json
import math
import sys
from pathlib import Path

out = Path(sys.argv[1])
load = lambda name: json.loads((out / name).read_text())


def routing_table():
    stats = load("heldout-stats.json")
    trace = load("trace.json")
    k, e = trace["top_k"], trace["experts"]
    steps = [s["experts"] for s in trace["steps"]]
    half = len(steps) // 2
    print(f"Held-out text: {stats['tokens']} tokens; trace: {len(steps)} tokens, one per step.\n")
    print("| layer | experts used | busiest / uniform | idlest / uniform | effective experts "
          "| most common pair's lift | top 5% pairs hold | L→L+1 precision (baseline) | kept from previous token |")
    print("|---|---|---|---|---|---|---|---|---|")
    for li, s in enumerate(stats["layers"]):
        count = s["count"]
        total = sum(count)
        p = [c / total for c in count]
        ent = -sum(x * math.log(x) for x in p if x > 0)
        co = s["coactivation"]
        n = s["tokens"]
        pairs = [(co[a][b], a, b) for a in range(e) for b in range(a + 1, e)]
        pair_total = sum(c for c, _, _ in pairs)
        c, a, b = max(pairs)
        lift = c * n / (count[a] * count[b])
        top = sorted((c for c, _, _ in pairs), reverse=True)[:max(1, len(pairs) // 20)]
        if li + 1 < len(stats["layers"]):
            cnt = [[0] * e for _ in range(e)]
            freq = [0] * e
            for st in steps[:half]:
                for a in st[li]:
                    for b in st[li + 1]:
                        cnt[a][b] += 1
                for b in st[li + 1]:
                    freq[b] += 1
            base_pick = set(sorted(range(e), key=lambda b: -freq[b])[:k])
            hit = base = 0
            for st in steps[half:]:
                score = [sum(cnt[a][b] for a in st[li]) for b in range(e)]
                pick = set(sorted(range(e), key=lambda b: -score[b])[:k])
                hit += len(pick & set(st[li + 1]))
                base += len(base_pick & set(st[li + 1]))
            m = k * (len(steps) - half)
            pred = f"{hit / m:.2f} ({base / m:.2f})"
        else:
            pred = "–"
        kept = sum(len(set(a[li]) & set(b[li])) for a, b in zip(steps, steps[1:]))
        kept /= k * (len(steps) - 1)
        print(f"| {s['layer']} | {sum(1 for c in count if c)}/{e} | {max(p) * e:.2f}× "
              f"| {min(p) * e:.2f}× | {math.exp(ent):.1f} of {e} | {lift:.1f} "
              f"| {sum(top) / pair_total * 100:.0f}% | {pred} | {kept:.2f} |")
    print(f"\nUniform routing would give 1.00×, {e} effective experts, lift 1, 5%, "
          f"precision {k / e:.2f} and {k / e:.2f} kept.\n")


def cache_table():
    print("| slots per layer | LRU hit rate | LFU hit rate | Belady MIN | runtime: LRU + prefetch "
          "| prefetch precision | prefetch recall | prefetched uploads used |")
    print("|---|---|---|---|---|---|---|---|")
    for r in load("cache-sim.json"):
        pol = {p["policy"]: p["hit_rate"] for p in r["policies"]}
        lru = next(v for name, v in pol.items() if name.startswith("lru"))
        lfu = next(v for name, v in pol.items() if name.startswith("lfu"))
        pf = load(f"prefetch-{r['slots']}.json")
        prec, rec = pf.get("prefetch_precision"), pf.get("prefetch_recall")
        fmt = lambda v: "–" if v is None else f"{v:.2f}"
        used = pf["prefetch_hits"] / max(1, pf["prefetch_uploads"])
        print(f"| {r['slots']} of 32 | {lru:.3f} | {lfu:.3f} | {r['optimal']['hit_rate']:.3f} "
              f"| {pf['hit_rate']:.3f} | {fmt(prec)} | {fmt(rec)} | {used:.2f} |")
    print()


EXPERT_BYTES = 3 * 256 * 64 * 4  # one f32 expert of the trained model
MOE_LAYERS = 4


def activation_table():
    print("| activation | held-out perplexity | experts per token per layer |")
    print("|---|---|---|")
    rows = [("top-4 (the checkpoint)", "base")] + [(f"--expert-top-k {k}", f"topk{k}")
                                                   for k in (3, 2, 1)]
    rows += [("--skip-threshold auto", "skip-auto")]
    rows += [(f"--expert-top-p {p}", f"topp{p}") for p in ("0.9", "0.7", "0.5")]
    for label, name in rows:
        r = load(f"eval-{name}.json")
        per = r["expert_bytes_per_token"] / EXPERT_BYTES / MOE_LAYERS
        print(f"| {label} | {r['perplexity']:.3f} | {per:.2f} |")
    print()


def pruning_table():
    base = load("eval-base.json")["perplexity"]
    print(f"Unpruned held-out perplexity: {base:.3f}.\n")
    print("| keep | method | perplexity | KL (nats/token) | top-1 agreement "
          "| perplexity after --recover | KL after | top-1 after | gap closed |")
    print("|---|---|---|---|---|---|---|---|---|")
    for keep in ("0.75", "0.5"):
        for method in ("frequency", "reap", "merge", "adaptive"):
            p = load(f"eval-prune-{method}-{keep}-plain.json")
            r = load(f"eval-prune-{method}-{keep}-recover.json")
            closed = (p["perplexity"] - r["perplexity"]) / (p["perplexity"] - base)
            print(f"| {float(keep):.0%} | {method} | {p['perplexity']:.3f} "
                  f"| {p['kl_per_token']:.4f} | {p['top1_agreement']:.3f} "
                  f"| {r['perplexity']:.3f} | {r['kl_per_token']:.4f} "
                  f"| {r['top1_agreement']:.3f} | {closed:.0%} |")
    print()


routing_table()
cache_table()
activation_table()
pruning_table()
