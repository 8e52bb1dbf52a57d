#!/usr/bin/env bash
# Regenerates tests/fixtures/gguf-vocab/{bpe,spm}.json: vocab-only GGUF files made by llama.cpp's
# converter, their tokenizer metadata, and llama-tokenize's ids for a text sample (see
# scripts/gguf_vocab_fixtures.py). CI never runs this; the JSON is committed.
# Needs llama.cpp built as ../shared/LLAMA-CPP.md says and a Python with gguf, sentencepiece,
# transformers and torch. Environment: LLAMA_CPP_DIR (the llama.cpp source), LLAMA_BIN (its
# build's bin/), PYTHON, CONVERT (../shared/llama-cpp/convert_gguf.py).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
L="${LLAMA_CPP_DIR:-/work/llama/llama_cpp_python-0.3.36/vendor/llama.cpp}"
bin="${LLAMA_BIN:-/work/llama/build-vk/bin}"
py="${PYTHON:-/work/venv-oracle/bin/python}"
convert="${CONVERT:-$here/../../shared/llama-cpp/convert_gguf.py}"
out="$here/../tests/fixtures/gguf-vocab"
mkdir -p "$out"
# The CPU backend is enough to tokenize; keep llama.cpp off the GPU.
VK_ICD_FILENAMES=/nonexistent "$py" "$here/gguf_vocab_fixtures.py" \
  --llama-dir "$L" --tokenize "$bin/llama-tokenize" --convert "$convert" --out "$out"
du -sh "$out"
