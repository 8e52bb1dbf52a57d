#!/usr/bin/env bash
# Correctness at real dimensions: every `moe synth` preset, cut to 2 decoder layers (full
# width, every expert), against transformers. Per preset and expert format it runs `moe block`
# on the last layer and greedy `moe generate` (8 prompt tokens, 8 new ones), and prints one
# markdown row: the block's relative error, greedy tokens equal to transformers', the worst
# logit deficit of a differing token (0 when all agree), the smallest top-1/top-2 logit gap of
# the reference (how near the ties are), and pass/FAIL. It exits 1 if any row fails.
#
#   scripts/check_real_dims.sh [preset ...]        (default: all seven)
#
# The first run makes a venv with transformers 5.23 and torch 2.15 (the fixture oracle's
# pins, about 6 GB) at VENV (target/venv-oracle). DTYPES ("f32 f16") are the expert formats on
# the GPU; gpt-oss-20b also runs its native mxfp4. WORK (/tmp/moe-real-dims) holds one
# checkpoint at a time (up to 6.3 GB, Mixtral) and the tools' output in WORK/log; KEEP=1 keeps
# the checkpoints.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-target/venv-oracle}
WORK=${WORK:-/tmp/moe-real-dims}
DTYPES=${DTYPES:-f32 f16}
presets=("$@")
[ ${#presets[@]} -gt 0 ] || presets=(olmoe-1b-7b qwen3-30b-a3b mixtral-8x7b deepseek-v2-lite
    moonlight-16b-a3b gpt-oss-20b qwen1.5-moe-a2.7b)

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet -r scripts/requirements-oracle.txt
fi
py="$VENV/bin/python scripts/real_dims_reference.py"
cargo build --release --quiet --bin moe
moe=target/release/moe
mkdir -p "$WORK"
log=$WORK/log
: >"$log"

echo "| model | experts on GPU | block rel. error | greedy tokens equal | worst deficit | smallest ref. gap | result |"
echo "|---|---|---|---|---|---|---|"
failed=0
for like in "${presets[@]}"; do
    dir=$WORK/$like
    [ -f "$dir/config.json" ] || $moe synth --like "$like" --layers 2 --out "$dir" >>"$log"
    $py reference "$dir" 1 "$WORK/$like.ref.safetensors" 2>>"$log"
    prompt=$($py ids "$WORK/$like.ref.safetensors")
    dtypes=($DTYPES)
    [ "$like" = gpt-oss-20b ] && dtypes+=(mxfp4)
    for dtype in "${dtypes[@]}"; do
        $moe block --model "$dir" --layer 1 --dtype "$dtype" --input "$WORK/$like.ref.safetensors" \
            --output "$WORK/$like.$dtype.block.safetensors" >>"$log" 2>&1
        $moe generate --model "$dir" --dtype "$dtype" --prompt-ids "$prompt" --max-new-tokens 8 \
            --greedy --ignore-eos --json >"$WORK/$like.$dtype.gen.json" 2>>"$log"
        $py row "$like" "$dtype" "$dir" "$WORK/$like.ref.safetensors" \
            "$WORK/$like.$dtype.block.safetensors" "$WORK/$like.$dtype.gen.json" 2>>"$log" ||
            failed=1
    done
    [ "${KEEP:-0}" = 1 ] || rm -rf "$dir"
done
exit $failed
