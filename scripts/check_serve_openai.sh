#!/usr/bin/env bash
# `moe serve` through the official `openai` Python client: list models; chat plain and streamed
# (the same text); completions; 4 and 8 concurrent greedy requests, each equal to its sequential
# answer; bad requests (malformed JSON, missing and wrongly typed fields, a prompt beyond the
# context, max_tokens <= 0, an unknown model, a wrong API key) answered with 4xx and OpenAI's
# error JSON while the server keeps serving; a client leaving mid-stream, then a new request
# served; SIGTERM ending the server. Exits non-zero on any failure.
#
#   scripts/check_serve_openai.sh
#
# The first run makes a venv with `openai` at VENV (target/venv-openai). The model is the tiny
# OLMoE fixture with a word-level tokenizer and a chat template (scripts/serve_model.py) in
# WORK (target/serve-openai). MOE is the binary (default: target/debug/moe, built here).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=${VENV:-target/venv-openai}
WORK=${WORK:-target/serve-openai}
MOE=${MOE:-target/debug/moe}
[ -n "${MOE_SKIP_BUILD:-}" ] || cargo build --quiet --bin moe

if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet openai
fi
python3 scripts/serve_model.py tests/fixtures/hf-tiny/olmoe/model "$WORK/model"
source scripts/serve_common.sh
start_server "$WORK/model" "$WORK/server.log" --api-key secret --max-queue 16
trap 'kill $SERVER_PID 2>/dev/null || true' EXIT
"$VENV/bin/python" scripts/check_serve_openai.py "$BASE" secret
stop_server
grep -q "shut down" "$WORK/server.log" || { echo "FAIL: no graceful shutdown"; exit 1; }
echo "moe serve: SIGTERM shut it down gracefully"
