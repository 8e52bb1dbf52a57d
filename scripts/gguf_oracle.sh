#!/usr/bin/env bash
# GGUF test models and llama.cpp's outputs for them: tests/fixtures/gguf-models/.
#
# Needs a llama.cpp build and its source as ../shared/LLAMA-CPP.md describes (LLAMA_SRC: the
# vendored llama.cpp of the llama-cpp-python 0.3.36 sdist; LLAMA_BUILD: its build directory with
# llama-quantize and libllama), and a Python venv with torch, transformers 5.23, tokenizers and
# llama.cpp's gguf-py (VENV). llama.cpp runs on its CPU backend.
#   LLAMA_SRC=... LLAMA_BUILD=... VENV=... scripts/gguf_oracle.sh [--arch qwen3_moe ...]
set -euo pipefail
cd "$(dirname "$0")/.."
: "${LLAMA_SRC:?the llama.cpp source (see ../shared/LLAMA-CPP.md)}"
: "${LLAMA_BUILD:?the llama.cpp build directory}"
: "${VENV:?a venv with torch, transformers, tokenizers and gguf-py}"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
gcc -O2 -o "$work/llama_logits" scripts/llama_logits.c -I"$LLAMA_SRC/include" \
    -I"$LLAMA_SRC/ggml/include" -L"$LLAMA_BUILD/bin" -lllama -Wl,-rpath,"$LLAMA_BUILD/bin"
# The CPU backend only: no Vulkan device to offload to.
export VK_ICD_FILENAMES=/nonexistent.json
"$VENV/bin/python" scripts/gguf_oracle.py --out tests/fixtures/gguf-models --work "$work" \
    --llama-dir "$LLAMA_SRC" --llama-bin "$LLAMA_BUILD/bin" --logits-bin "$work/llama_logits" \
    --text tests/fixtures/trained-moe/calib.txt "$@"
