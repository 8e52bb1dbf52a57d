#!/usr/bin/env bash
# Runs examples/desktop under Xvfb on the software GPU, screenshots its window after a few
# generated tokens, and checks the image with an independent decoder (scripts/check_png.py):
# its size, that it is not blank, and that the heatmap holds several colours. The checker is
# first shown a blank image, which it must reject.
# usage: scripts/check_desktop.sh [MODEL_DIR]   (needs xvfb-run; run from anywhere)
set -euo pipefail
cd "$(dirname "$0")/.."

model=${1:-tests/fixtures/hf-tiny/olmoe/model}
width=1024
height=640
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

python3 - "$out/blank.png" "$width" "$height" <<'PY'
import struct, sys, zlib
path, w, h = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
def chunk(kind, body):
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
rows = b"".join(b"\0" + b"\x20\x20\x20\xff" * w for _ in range(h))
png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")
open(path, "wb").write(png)
PY
echo "check_png.py must reject a blank image:"
if python3 scripts/check_png.py "$out/blank.png" "$width" "$height"; then
    echo "check_png.py accepted a blank image" >&2
    exit 1
fi

# Built by the test run already (cargo test builds the examples); bounded so a hung window
# cannot stall CI.
timeout 900 xvfb-run -a -s "-screen 0 1280x800x24" \
    cargo run --example desktop -- --model "$model" \
    --screenshot "$out/desktop.png" --frames 30 --size "${width}x${height}"
python3 scripts/check_png.py "$out/desktop.png" "$width" "$height"
if [ -n "${DESKTOP_PNG:-}" ]; then
    cp "$out/desktop.png" "$DESKTOP_PNG"
fi
