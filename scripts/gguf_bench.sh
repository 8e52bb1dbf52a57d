#!/usr/bin/env bash
# moe generate against llama.cpp's llama-bench on the same GGUF files, the same adapter
# (lavapipe through Vulkan), in one run: the Qwen3-MoE bench shape (hidden 512, 4 layers, 32
# experts of 256, top-4) at Q8_0 and Q4_K_M, prefill 128 and decode 32 tokens, rounds
# interleaved. Needs what scripts/gguf_oracle.sh needs (LLAMA_SRC, LLAMA_BUILD, VENV) and a
# release build (cargo build --release). Prints one line per run and a median table.
#   LLAMA_SRC=... LLAMA_BUILD=... VENV=... scripts/gguf_bench.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_SRC:?}" "${LLAMA_BUILD:?}" "${VENV:?}"
rounds=${1:-3}
out=${GGUF_BENCH_DIR:-/tmp/gguf-bench}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
if [ ! -f "$out/qwen3_moe_bench/Q4_K_M.gguf" ]; then
    gcc -O2 -o "$work/llama_logits" scripts/llama_logits.c -I"$LLAMA_SRC/include" \
        -I"$LLAMA_SRC/ggml/include" -L"$LLAMA_BUILD/bin" -lllama -Wl,-rpath,"$LLAMA_BUILD/bin"
    VK_ICD_FILENAMES=/nonexistent.json "$VENV/bin/python" scripts/gguf_oracle.py --out "$out" \
        --work "$work" --llama-dir "$LLAMA_SRC" --llama-bin "$LLAMA_BUILD/bin" \
        --logits-bin "$work/llama_logits" --text tests/fixtures/trained-moe/calib.txt \
        --arch qwen3_moe_bench >/dev/null 2>&1
fi
mkdir -p /tmp/xdg
export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json XDG_RUNTIME_DIR=/tmp/xdg
export MOE_GPU_BACKEND=vulkan GGML_VK_VISIBLE_DEVICES=0
ids=$(seq -s, 1 128)
results=$work/results.txt
for r in $(seq "$rounds"); do
    for ty in Q8_0 Q4_K_M; do
        f=$out/qwen3_moe_bench/$ty.gguf
        "$LLAMA_BUILD/bin/llama-bench" -m "$f" -p 128 -n 32 -r 1 -t 2 -ngl 99 -fa 0 -o json \
            2>/dev/null | python3 -c '
import json, sys
for t in json.load(sys.stdin):
    kind = "prefill" if t["n_prompt"] else "decode"
    print("llama.cpp", sys.argv[1], kind, round(t["avg_ts"], 2))' "$ty" | tee -a "$results"
        target/release/moe generate --model "$f" --prompt-ids "$ids" --max-new-tokens 32 \
            --ignore-eos --quiet --json 2>/dev/null | tail -1 | python3 -c '
import json, sys
s = json.load(sys.stdin)["stats"]
print("moe-gpu", sys.argv[1], "prefill", round(s["prefill_tokens_per_s"], 2))
print("moe-gpu", sys.argv[1], "decode", round(s["decode_tokens_per_s"], 2))' "$ty" | tee -a "$results"
    done
done
python3 - "$results" <<'PY'
import statistics, sys
runs = {}
for line in open(sys.argv[1]):
    who, ty, kind, v = line.split()
    runs.setdefault((who, ty, kind), []).append(float(v))
print("| file | phase | llama.cpp Vulkan tok/s | moe-gpu tok/s | ratio |")
print("|---|---|---|---|---|")
for ty in ["Q8_0", "Q4_K_M"]:
    for kind in ["prefill", "decode"]:
        l = statistics.median(runs[("llama.cpp", ty, kind)])
        m = statistics.median(runs[("moe-gpu", ty, kind)])
        print(f"| {ty} | {kind} | {l:.1f} | {m:.1f} | {m / l:.2f}x |")
PY
