#!/usr/bin/env bash
# Aggregate decode tokens/s of `moe serve` for 1, 2, 4 and 8 concurrent greedy requests on the
# bench model (`moe demo`'s synthetic OLMoE-shaped checkpoint, with a word-level tokenizer
# added by scripts/serve_model.py). Each request is an 8-word prompt and TOKENS (64) new
# tokens; a level's rate is the sum of the completion tokens over the wall time from the first
# request sent to the last answer (so it includes the prompts' prefill). Prints a markdown table.
#
#   scripts/serve_bench.sh
#
# MOE is the binary (default: target/release/moe, built here; MOE=target/debug/moe for a quick
# look). WORK (target/serve-bench) holds the checkpoint and the server's log.
set -euo pipefail
cd "$(dirname "$0")/.."

MOE=${MOE:-target/release/moe}
WORK=${WORK:-target/serve-bench}
TOKENS=${TOKENS:-64}
LEVELS=${LEVELS:-1 2 4 8}
if [ "$MOE" = target/release/moe ]; then cargo build --quiet --release --bin moe; fi

mkdir -p "$WORK"
[ -f "$WORK/demo/config.json" ] || "$MOE" --quiet demo --decode-steps 1 --save-model "$WORK/demo" >/dev/null
python3 scripts/serve_model.py "$WORK/demo" "$WORK/model"
source scripts/serve_common.sh
start_server "$WORK/model" "$WORK/server.log" --max-queue 16
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
python3 - "$BASE" "$TOKENS" $LEVELS <<'PY'
import json, sys, threading, time, urllib.request

base, tokens, levels = sys.argv[1], int(sys.argv[2]), [int(n) for n in sys.argv[3:]]
model = json.load(urllib.request.urlopen(f"{base}/v1/models"))["data"][0]["id"]

def complete(i, out):
    words = " ".join(f"w{1 + (i * 97 + j * 31) % 4000}" for j in range(8))
    body = json.dumps({"model": model, "prompt": words, "max_tokens": tokens, "temperature": 0})
    req = urllib.request.Request(f"{base}/v1/completions", body.encode(),
                                 {"Content-Type": "application/json"})
    out[i] = json.load(urllib.request.urlopen(req, timeout=3600))["usage"]["completion_tokens"]

complete(0, [0])  # warm-up: kernels compiled and tuned
print("| concurrent requests | completion tokens | wall s | aggregate tokens/s | vs 1 |")
print("|---|---|---|---|---|")
single = None
for n in levels:
    out = [0] * n
    threads = [threading.Thread(target=complete, args=(i, out)) for i in range(n)]
    start = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.time() - start
    rate = sum(out) / wall
    single = single or rate
    print(f"| {n} | {sum(out)} | {wall:.2f} | {rate:.1f} | {rate / single:.2f}x |")
PY
stop_server
