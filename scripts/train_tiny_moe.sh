#!/usr/bin/env bash
# Trains tests/fixtures/trained-moe/ from scratch (about 30-45 minutes on 2 cores); CI never
# runs this, the checkpoint is committed. VENV=DIR reuses a venv that has the pinned packages.
# Usage: scripts/train_tiny_moe.sh [OUT_DIR] [extra train_tiny_moe.py flags]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="${1:-$here/../tests/fixtures/trained-moe}"
shift || true
venv="${VENV:-$here/../.venv-train}"
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet torch==2.15.0 transformers==5.23.0 tokenizers==0.23.3 safetensors
fi
if ! command -v bible >/dev/null; then
  apt-get update && apt-get install -y --no-install-recommends bible-kjv
fi
text="$(mktemp)"
bible "gen1:1-rev22:21" > "$text"
"$venv/bin/python" "$here/train_tiny_moe.py" --text "$text" --out "$out" "$@"
rm -f "$text"
