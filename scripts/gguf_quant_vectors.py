"""Writes tests/fixtures/gguf-quants/: random blocks of every GGUF tensor type moe-gpu decodes
and what the `gguf` Python package's `gguf.quants.dequantize` makes of them, the oracle for
src/gguf's CPU decoders (tests/loaders/gguf_blocks.rs).

    python3 scripts/gguf_quant_vectors.py     (venv: $VENV, default target/venv-gguf, made
                                               with the pinned gguf and numpy if missing)

For each type T:
- T.bin / T.f32: 4 blocks of random bytes (64 values for F32, F16, BF16), with every f16
  scale field set to a finite value, |x| in [1e-3, 1] and either sign, and MXFP4 exponents in
  [118, 138]; T.f32 is gguf-py's output as little-endian f32.
- T.nonfinite.bin / .f32 (types with f16 scale fields): 4 blocks with random codes whose
  scale fields are NaN, +inf, -inf and the smallest f16 subnormal (the first field), or the
  second field +inf (Q4_1, Q5_1, Q4_K, Q5_K). MXFP4's instead has exponents 0, 1, 254, 255.
Seeded per type, so a rerun writes the same bytes.
"""

import os
import pathlib
import subprocess
import sys
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "tests/fixtures/gguf-quants"
PINS = ["gguf==0.19.0", "numpy==2.4.6"]
BLOCKS = 4
FLOAT_VALUES = 64

# Byte offsets of each type's f16 scale fields in a block (ggml-quants.h block_* structs).
F16_FIELDS = {
    "Q8_0": [0],
    "Q4_0": [0],
    "Q4_1": [0, 2],
    "Q5_0": [0],
    "Q5_1": [0, 2],
    "Q4_K": [0, 2],
    "Q5_K": [0, 2],
    "Q6_K": [208],
    "MXFP4": [],
}
FLOATS = ["F32", "F16", "BF16"]


def ensure_venv():
    """Re-runs this script under the venv's Python, making the venv first if needed."""
    venv = pathlib.Path(os.environ.get("VENV", ROOT / "target/venv-gguf"))
    python = venv / "bin/python"
    if pathlib.Path(sys.prefix).resolve() == venv.resolve():
        return
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *PINS], check=True)
    os.execv(str(python), [str(python), *sys.argv])


def f16_bytes(np, values):
    return np.asarray(values, dtype="<f2").view(np.uint8).reshape(-1, 2)


def random_blocks(np, rng, name, n_blocks):
    """n_blocks valid random blocks of `name`: [n_blocks, block_bytes] u8."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    _, type_size = GGML_QUANT_SIZES[GGMLQuantizationType[name]]
    blocks = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    for at in F16_FIELDS.get(name, []):
        magnitude = np.exp(rng.uniform(np.log(1e-3), np.log(1.0), size=n_blocks))
        sign = rng.choice([-1.0, 1.0], size=n_blocks)
        blocks[:, at : at + 2] = f16_bytes(np, magnitude * sign)
    if name == "MXFP4":
        blocks[:, 0] = rng.integers(118, 139, size=n_blocks, dtype=np.uint8)
    return blocks


def nonfinite_blocks(np, rng, name):
    """Blocks whose scale fields are NaN, infinite or subnormal (or MXFP4's extreme exponents)."""
    blocks = random_blocks(np, rng, name, BLOCKS)
    fields = F16_FIELDS[name]
    if name == "MXFP4":
        blocks[:, 0] = [0, 1, 254, 255]
        return blocks
    first = fields[0]
    subnormal = np.array([1], dtype="<u2").view(np.uint8)
    for block, value in zip(blocks, [np.nan, np.inf, -np.inf]):
        block[first : first + 2] = f16_bytes(np, [value])[0]
    blocks[3, first : first + 2] = subnormal
    if len(fields) > 1:
        second = fields[1]
        blocks[3, second : second + 2] = f16_bytes(np, [np.inf])[0]
    return blocks


def write(np, stem, blocks, qtype):
    from gguf.quants import dequantize

    with np.errstate(invalid="ignore", over="ignore"):  # the nonfinite blocks, on purpose
        values = dequantize(blocks, qtype).astype("<f4", copy=False)
    (OUT / f"{stem}.bin").write_bytes(blocks.tobytes())
    (OUT / f"{stem}.f32").write_bytes(values.tobytes())


def main():
    ensure_venv()
    import numpy as np
    from gguf.constants import GGMLQuantizationType

    OUT.mkdir(parents=True, exist_ok=True)
    for name in FLOATS + list(F16_FIELDS):
        qtype = GGMLQuantizationType[name]
        rng = np.random.default_rng(zlib.crc32(name.encode()))
        if name in FLOATS:
            width = 4 if name == "F32" else 2
            blocks = rng.integers(0, 256, size=(1, FLOAT_VALUES * width), dtype=np.uint8)
        else:
            blocks = random_blocks(np, rng, name, BLOCKS)
        write(np, name, blocks, qtype)
        if name in F16_FIELDS:
            write(np, f"{name}.nonfinite", nonfinite_blocks(np, rng, name), qtype)
    readme = (
        "Made by scripts/gguf_quant_vectors.py with "
        + ", ".join(PINS)
        + ": `<TYPE>.bin` is raw GGUF blocks (random, finite scales), `<TYPE>.f32` gguf-py's "
        + "`gguf.quants.dequantize` of them as little-endian f32; `<TYPE>.nonfinite.*` the same "
        + "with NaN, infinite and subnormal f16 scales (MXFP4: exponents 0, 1, 254, 255).\n"
    )
    (OUT / "README.md").write_text(readme)


if __name__ == "__main__":
    main()
