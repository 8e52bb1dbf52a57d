#!/usr/bin/env bash
# Hybrid CPU/GPU experts against llama.cpp's expert offload, on the same GGUF files and the same
# adapter (lavapipe through Vulkan), rounds interleaved. For each file and each expert budget
# (25% and 50% of the routed experts' bytes, the sum of its `*_exps` tensors):
#   moe-gpu    --expert-budget B --cpu-experts never   (missed experts uploaded: upload-only)
#   moe-gpu    --expert-budget B --cpu-experts auto    (missed experts computed on the CPU)
#   llama.cpp  -ncmoe L   (the experts of the first L layers on the CPU, the rest fit B)
# and, once per file, with no budget:
#   moe-gpu    --n-cpu-moe M   (M = its MoE layers: every expert on the CPU)
#   llama.cpp  -ot exps=CPU    (every expert on the CPU, the rest on Vulkan)
# and on CPU_MODEL alone a CPU-only pair: llama.cpp's CPU backend (`-dev none`; the run fails
# if its log shows a tensor on Vulkan0) against `moe generate --cpu-experts always`.
# Each llama.cpp line ends with vulkan0_MiB, its weights on the device: on lavapipe llama.cpp keeps
# OLMoE's expert tensors (136 MiB each, over the 128 MiB storage-buffer range) on the CPU whatever
# -ncmoe says, so there its -ncmoe rows are -ot exps=CPU runs.
# Prefill PROMPT_TOKENS and decode NEW_TOKENS (defaults 32 and 16 for files of 1 GiB or more,
# 128 and 32 below, as scripts/gguf_bench.sh). Prints one line per run, a median markdown table
# and each `auto` row's ratio to the best other row of its file and budget.
#
#   LLAMA_BUILD=/work/llama/build-vk VENV=/work/venv-oracle scripts/hybrid_bench.sh [GGUF ...]
#
# Files default to $OLMOE and /tmp/gguf-bench/qwen3_moe_bench/Q8_0.gguf (made by
# scripts/gguf_bench.sh). OLMOE (/tmp/hybrid-bench/olmoe-1b-7b-Q8_0.gguf), when missing, is made
# once: `moe synth --like olmoe-1b-7b` (random weights, 13.8 GB bf16), llama.cpp's
# convert_hf_to_gguf.py to Q8_0 (7.4 GB; it needs LLAMA_SRC and a tokenizer: the synth has none,
# so the trained-moe fixture's 4096-token BPE goes in, and the converter pads the vocabulary to
# 50304 with unused tokens), then the bf16 checkpoint is deleted. VENV is a Python with the `gguf` package (tensor sizes) and, for that conversion,
# torch and transformers.
# ROUNDS (3), BUDGETS (25 50, percent), THREADS (2: llama.cpp -t and moe --cpu-threads),
# CPU_MODEL, MOE (target/release/moe, a release build), CONVERT
# (../shared/llama-cpp/convert_gguf.py) and MOE_SIDE=0 (llama.cpp rows only) change the run.
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_BUILD:?}" "${VENV:?}"
ROUNDS=${ROUNDS:-3}
BUDGETS=${BUDGETS:-25 50}
THREADS=${THREADS:-2}
MOE_SIDE=${MOE_SIDE:-1}
MOE=${MOE:-target/release/moe}
CPU_MODEL=${CPU_MODEL:-/tmp/gguf-bench/qwen3_moe_bench/Q8_0.gguf}
OLMOE=${OLMOE:-/tmp/hybrid-bench/olmoe-1b-7b-Q8_0.gguf}
CONVERT=${CONVERT:-../shared/llama-cpp/convert_gguf.py}
files=("$@")
[ ${#files[@]} -gt 0 ] || files=("$OLMOE" /tmp/gguf-bench/qwen3_moe_bench/Q8_0.gguf)
if [ "$MOE_SIDE" != 0 ] && [ ! -x "$MOE" ]; then
    echo "no $MOE: cargo build --release --bin moe, or MOE_SIDE=0 for the llama.cpp rows" >&2
    exit 1
fi
mkdir -p /tmp/xdg
export VK_ICD_FILENAMES=/usr/share/vulkan/icd.d/lvp_icd.x86_64.json XDG_RUNTIME_DIR=/tmp/xdg
export MOE_GPU_BACKEND=vulkan GGML_VK_VISIBLE_DEVICES=0
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
results=$work/results.txt
: >"$results"
if [[ " ${files[*]} " == *" $OLMOE "* ]] && [ ! -f "$OLMOE" ]; then
    : "${LLAMA_SRC:?to make $OLMOE}"
    hf=$(dirname "$OLMOE")/olmoe-1b-7b-bf16
    mkdir -p "$hf"
    "$MOE" synth --like olmoe-1b-7b --quiet --out "$hf"
    cp tests/fixtures/trained-moe/tokenizer.json "$hf/"
    LLAMA_CPP_DIR=$LLAMA_SRC "$VENV/bin/python" "$CONVERT" "$hf" --outtype q8_0 \
        --outfile "$OLMOE" >"$work/convert.log" 2>&1 || { tail "$work/convert.log"; exit 1; }
    rm -rf "$hf"
fi

# Per file: "experts_bytes moe_layers bytes vocab" then one "percent budget_bytes ncmoe" per budget,
# ncmoe being the fewest leading layers whose experts must leave for the rest to fit the budget.
sizes() {
    "$VENV/bin/python" - "$1" $BUDGETS <<'PY'
import re, sys
from gguf import GGUFReader
r = GGUFReader(sys.argv[1])
per_block = {}
for t in r.tensors:
    if "_exps" in t.name:
        b = int(re.match(r"blk\.(\d+)\.", t.name).group(1))
        per_block[b] = per_block.get(b, 0) + int(t.n_bytes)
total = sum(per_block.values())
vocab = next(int(t.shape[1]) for t in r.tensors if t.name == "token_embd.weight")
print(total, len(per_block), sum(int(t.n_bytes) for t in r.tensors), vocab)
for pct in sys.argv[2:]:
    budget = total * int(pct) // 100
    blocks = sorted(per_block)
    n = next(i for i in range(len(blocks) + 1) if sum(per_block[b] for b in blocks[i:]) <= budget)
    print(pct, budget, blocks[n - 1] + 1 if n else 0)
PY
}

# llama-bench once; prints "prefill decode - vulkan0_MiB=W" (W: its weights on the Vulkan device,
# from the -v log: llama.cpp keeps on the CPU any tensor Vulkan cannot take, whatever -ncmoe says).
llama_run() {
    local f=$1
    shift
    "$LLAMA_BUILD/bin/llama-bench" -m "$f" -p "$P" -n "$N" -r 1 -t "$THREADS" -fa 0 -o json -v \
        "$@" >"$work/llama.json" 2>"$work/err" || return 1
    python3 - "$work/llama.json" "$work/err" <<'PY'
import json, re, sys
ts = {("prefill" if t["n_prompt"] else "decode"): t["avg_ts"] for t in json.load(open(sys.argv[1]))}
vk = re.findall(r"Vulkan0 model buffer size = +([\d.]+) MiB", open(sys.argv[2], errors="replace").read())
print(f'{ts["prefill"]:.2f} {ts["decode"]:.2f} - vulkan0_MiB={vk[-1] if vk else 0}')
PY
}

# moe generate once; prints "prefill decode hit_rate" from its JSON line and --stats file, then
# each per-layer field of the stats whose name holds "cpu", summed over the layers, as key=value.
moe_run() {
    local f=$1
    shift
    "$MOE" generate --model "$f" --prompt-ids "$ids" --max-new-tokens "$N" --greedy \
        --ignore-eos --quiet --json --stats "$work/stats.json" "$@" \
        >"$work/moe.out" 2>"$work/err" || return 1
    python3 - "$work/moe.out" "$work/stats.json" <<'PY'
import json, sys
s = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])["stats"]
stats = json.load(open(sys.argv[2]))
hit = stats.get("hit_rate")
cpu = {}
for layer in stats.get("per_layer", []):
    for k, v in layer.items():
        if "cpu" in k and isinstance(v, (int, float)) and not isinstance(v, bool):
            cpu[k] = cpu.get(k, 0) + v
print(f'{s["prefill_tokens_per_s"]:.2f} {s["decode_tokens_per_s"]:.2f} {"-" if hit is None else f"{hit:.3f}"}',
      *(f"{k}={v:g}" for k, v in cpu.items()))
PY
}

# One run: "file budget config" then the runner and its arguments; appends one result line.
run() {
    local name=$1 budget=$2 config=$3 out
    shift 3
    if out=$("$@"); then
        echo "$name $budget $config $out" | tee -a "$results"
    else
        echo "$name $budget $config failed: $(grep -m 1 -i error "$work/err" || tail -n 1 "$work/err")"
    fi
}

# The CPU backend must not place any tensor on the Vulkan device.
llama_cpu_only() {
    llama_run "$1" -ngl 0 -dev none || return 1
    if grep -q -E "assigned to device Vulkan|Vulkan0 model buffer" "$work/err"; then
        echo "llama.cpp -dev none used Vulkan" >"$work/err"
        return 1
    fi
}

for f in "${files[@]}"; do
    [ -f "$f" ] || { echo "no $f" >&2; exit 1; }
    sizes "$f" >"$work/sizes.$(basename "$(dirname "$f")")-$(basename "$f")"
done
for r in $(seq "$ROUNDS"); do
    echo "round $r"
    for f in "${files[@]}"; do
        name=$(basename "$(dirname "$f")")-$(basename "$f" .gguf)
        { read -r experts layers bytes vocab; mapfile -t budgets; } <"$work/sizes.$name.gguf"
        [ "$r" = 1 ] && echo "$name: $bytes bytes, experts $experts bytes in $layers MoE layers;" \
            "budgets (percent bytes -ncmoe): ${budgets[*]}"
        if [ "$bytes" -ge $((1 << 30)) ]; then P=${PROMPT_TOKENS:-32} N=${NEW_TOKENS:-16}; else
            P=${PROMPT_TOKENS:-128} N=${NEW_TOKENS:-32}; fi
        ids=$(python3 -c "print(','.join(str(1 + (7 + 13 * i) % ($vocab - 1)) for i in range($P)))")
        run "$name" - llama-ot-exps-cpu llama_run "$f" -ngl 99 -ot exps=CPU
        [ "$MOE_SIDE" = 0 ] ||
            run "$name" - moe-n-cpu-moe-"$layers" moe_run "$f" --n-cpu-moe "$layers" \
                --cpu-threads "$THREADS"
        for line in "${budgets[@]}"; do
            read -r pct budget ncmoe <<<"$line"
            run "$name" "$pct%" llama-ncmoe-"$ncmoe" llama_run "$f" -ngl 99 -ncmoe "$ncmoe"
            [ "$MOE_SIDE" = 0 ] && continue
            run "$name" "$pct%" moe-never moe_run "$f" --expert-budget "$budget" --cpu-experts never
            run "$name" "$pct%" moe-auto moe_run "$f" --expert-budget "$budget" --cpu-experts auto \
                --cpu-threads "$THREADS"
        done
        [ "$f" = "$CPU_MODEL" ] || continue
        run "$name" - llama-cpu-only llama_cpu_only "$f"
        [ "$MOE_SIDE" = 0 ] ||
            run "$name" - moe-cpu-always moe_run "$f" --cpu-experts always --cpu-threads "$THREADS"
    done
done
python3 - "$results" <<'PY'
import statistics, sys
runs, hits = {}, {}
for line in open(sys.argv[1]):
    name, budget, config, prefill, decode, *rest = line.split()
    runs.setdefault((name, budget, config), []).append((float(prefill), float(decode)))
    if rest and rest[0] != "-":
        hits.setdefault((name, budget, config), []).append(float(rest[0]))
if not runs:
    sys.exit()
med = {k: [statistics.median(x[i] for x in v) for i in (0, 1)] for k, v in runs.items()}
print("\n| file | budget | configuration | prefill tok/s | decode tok/s | hit rate | runs |")
print("|---|---|---|---|---|---|---|")
for k, (p, d) in med.items():
    hit = f"{statistics.median(hits[k]):.3f}" if k in hits else "-"
    print(f"| {k[0]} | {k[1]} | {k[2]} | {p:.2f} | {d:.2f} | {hit} | {len(runs[k])} |")
print()
for (name, budget, config), auto in med.items():
    if config != "moe-auto":
        continue
    # Rows without a budget compete at every budget; the CPU-only pair is its own comparison.
    others = {c: v for (n, b, c), v in med.items()
              if n == name and b in (budget, "-") and c not in ("moe-auto", "llama-cpu-only", "moe-cpu-always")}
    for i, phase in enumerate(("prefill", "decode")):
        if others:
            best = max(others, key=lambda c: others[c][i])
            print(f"{name} {budget} {phase}: auto / best other ({best}) = {auto[i] / others[best][i]:.2f}x")
cpu = [(n, med[(n, "-", "moe-cpu-always")], v) for (n, b, c), v in med.items()
       if c == "llama-cpu-only" and (n, "-", "moe-cpu-always") in med]
for name, m, l in cpu:
    print(f"{name} CPU-only: moe always / llama.cpp CPU = prefill {m[0] / l[0]:.2f}x, decode {m[1] / l[1]:.2f}x")
PY
