#!/usr/bin/env bash
# A model at its real size under expert budgets: `moe synth` writes the checkpoint (random
# weights, the real config; OLMoE-1B-7B by default: 16 layers, 64 experts of [2048, 1024],
# 13.8 GB in bf16), then `moe generate` runs it once per budget and this prints one markdown row
# per run: prefill and decode tokens/s, hit rate, bytes uploaded per token, host time per
# upload, load time, GPU bytes, peak RSS (from /usr/bin/time -v; it counts the pages of the
# memory-mapped checkpoint the run touched) and the anonymous and file-backed RSS at exit.
#
#   scripts/real_size_bench.sh [budget ...]        (default: 256M 512M 1G 2G all)
#
# LIKE (olmoe-1b-7b), LAYERS (the real count), DTYPE (the expert format on the GPU, f16),
# PROMPT_TOKENS (32), NEW_TOKENS (16) and DIR (/tmp/moe-synth/$LIKE) change the run. `all`
# means a budget that holds every expert.
set -euo pipefail
cd "$(dirname "$0")/.."

LIKE=${LIKE:-olmoe-1b-7b}
DTYPE=${DTYPE:-f16}
PROMPT_TOKENS=${PROMPT_TOKENS:-32}
NEW_TOKENS=${NEW_TOKENS:-16}
DIR=${DIR:-/tmp/moe-synth/$LIKE${LAYERS:+-$LAYERS}}
budgets=("$@")
[ ${#budgets[@]} -gt 0 ] || budgets=(256M 512M 1G 2G all)

cargo build --release --quiet --bin moe
moe=target/release/moe
if [ ! -f "$DIR/config.json" ]; then
    mkdir -p "$(dirname "$DIR")"
    $moe synth --like "$LIKE" ${LAYERS:+--layers "$LAYERS"} --out "$DIR"
fi
prompt=$(python3 -c "print(','.join(str(7 + 13 * i % 1000) for i in range($PROMPT_TOKENS)))")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "| budget | pool slots | prefill tok/s | decode tok/s | hit rate | MiB uploaded / token | host ms / upload | load s | GPU MiB | peak RSS MiB | anon / file RSS at exit, MiB |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
for budget in "${budgets[@]}"; do
    [ "$budget" = all ] && b=1T || b=$budget
    /usr/bin/time -v -o "$work/time" $moe generate --model "$DIR" --prompt-ids "$prompt" \
        --max-new-tokens "$NEW_TOKENS" --greedy --ignore-eos --json --dtype "$DTYPE" \
        --expert-budget "$b" --stats "$work/stats.json" >"$work/out.json" 2>"$work/err" || {
        echo "| $budget | failed: $(tail -n 1 "$work/err") |"
        continue
    }
    python3 - "$budget" "$work" <<'EOF'
import json, re, sys
budget, work = sys.argv[1], sys.argv[2]
out = json.loads(open(f"{work}/out.json").read().strip().splitlines()[-1])
stats = json.load(open(f"{work}/stats.json"))
rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{work}/time").read()).group(1))
g = out["stats"]
tokens = g["prompt_tokens"] + g["generated_tokens"]
layer = stats["per_layer"][0]
slots = layer["slots"] if layer["mode"] == "pool" else ("all" if layer["mode"] == "resident" else f'{layer["slots"]}/layer')
host = stats.get("upload_host_ms_per_expert")
# All resident: every upload happened at load, none per token.
uploaded = 0 if layer["mode"] == "resident" else stats["bytes_uploaded"]
print(f'| {budget} | {slots} | {g["prefill_tokens_per_s"]:.2f} | {g["decode_tokens_per_s"]:.2f} '
      f'| {stats["hit_rate"]:.3f} | {uploaded / tokens / 2**20:.1f} '
      f'| {"-" if host is None else f"{host:.1f}"} | {g["load_ms"] / 1e3:.1f} '
      f'| {g["gpu_bytes_allocated"] / 2**20:.0f} | {rss / 1024:.0f} '
      f'| {(g.get("host_rss_anon_bytes") or 0) / 2**20:.0f} / {(g.get("host_rss_file_bytes") or 0) / 2**20:.0f} |')
EOF
done
