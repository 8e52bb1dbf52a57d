#!/usr/bin/env bash
# Every figure of BENCHMARKS.md's "A trained MoE" section, on tests/fixtures/trained-moe:
# routing statistics, expert-cache hit rates against Belady's MIN, prefetch, dynamic activation,
# pruning and recovery. Writes JSON under OUT (default target/trained-moe-bench) and prints the
# tables with scripts/trained_moe_tables.py. Needs a release build (cargo build --release).
# Usage: scripts/trained_moe_bench.sh [OUT]
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-target/trained-moe-bench}"
mkdir -p "$out"
moe="target/release/moe --quiet"
m=tests/fixtures/trained-moe
calib=$m/calib.txt
# Evaluation: the first 10 of the 29 held-out chapters (about 11k tokens; the whole file takes
# about 70 s per model on lavapipe). Routing statistics use the whole held-out file.
held="$out/heldout-10.txt"
python3 -c "import sys; print('\n\n'.join(open(sys.argv[1]).read().split('\n\n')[:10]))" \
  $m/heldout.txt > "$held"

# Routing statistics on the held-out text, and calibration statistics for pruning.
$moe calibrate --model $m --data $m/heldout.txt --out "$out/heldout-stats.json" > /dev/null
$moe calibrate --model $m --data $calib --out "$out/calib-stats.json" > /dev/null

# A token-by-token routing trace of held-out text: four passages of about 450 tokens, each
# prefilled one token per step (the context is 512).
python3 - $m/heldout.txt "$out" <<'PY'
import sys
text = open(sys.argv[1]).read().split("\n\n")
parts, cur = [], ""
for ch in text:
    for line in ch.split("\n"):
        if len(cur) + len(line) > 1800:
            parts.append(cur); cur = ""
        cur += line + "\n"
    if len(parts) == 4:
        break
for i, p in enumerate(parts[:4]):
    open(f"{sys.argv[2]}/passage{i}.txt", "w").write(p)
PY
for i in 0 1 2 3; do
  $moe generate --model $m --prompt-file "$out/passage$i.txt" --max-batch 1 --max-new-tokens 1 \
    --max-context 512 --trace-out "$out/trace$i.json" > /dev/null 2>&1
done
python3 - "$out" <<'PY'
import json, sys
d = sys.argv[1]
traces = [json.load(open(f"{d}/trace{i}.json")) for i in range(4)]
merged = dict(traces[0]); merged["steps"] = [s for t in traces for s in t["steps"]]
json.dump(merged, open(f"{d}/trace.json", "w"))
PY
$moe cache-sim --trace "$out/trace.json" --slots 8,16,24 --json > "$out/cache-sim.json"
for slots in 8 16 24; do
  $moe generate --model $m --prompt-file "$out/passage0.txt" --max-batch 1 --max-new-tokens 1 \
    --max-context 512 --expert-slots $slots --stats "$out/prefetch-$slots.json" > /dev/null 2>&1
done

# Dynamic activation: perplexity and experts per token on the held-out text.
ev() { local name=$1; shift; $moe eval --data $held --json "$@" | tail -n 1 > "$out/eval-$name.json"; }
ev base --model $m
for k in 1 2 3; do ev topk$k --model $m --expert-top-k $k; done
ev skip-auto --model $m --skip-threshold auto --calibration "$out/calib-stats.json"
for p in 0.5 0.7 0.9; do ev topp$p --model $m --expert-top-p $p; done

# Pruning to 75% and 50% of the experts, then recovery on the calibration text.
for keep in 0.75 0.5; do
  for method in frequency reap merge adaptive; do
    case $method in
      adaptive) flags=(--method frequency --per-layer adaptive) ;;
      *) flags=(--method $method) ;;
    esac
    for rec in plain recover; do
      dir="$out/pruned-$method-$keep-$rec"
      extra=()
      [ $rec = recover ] && extra=(--recover --data $calib --recover-tokens 8192)
      $moe prune --model $m --stats "$out/calib-stats.json" --keep $keep "${flags[@]}" \
        --out "$dir" "${extra[@]}" > "$out/prune-$method-$keep-$rec.txt"
      ev "prune-$method-$keep-$rec" --model "$dir" --teacher $m
    done
  done
done
python3 scripts/trained_moe_tables.py "$out"
