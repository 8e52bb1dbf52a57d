"""Writes tests/fixtures/gguf-files/ with gguf-py's `GGUFWriter`, the oracle for moe-gpu's GGUF
file reader (src/gguf/file.rs; tests/loaders/gguf_file.rs reads them back).

    python3 scripts/gguf_file_fixture.py   (a Python with gguf==0.19.0 and numpy, e.g. the
                                            venv scripts/gguf_quant_vectors.py makes)

- every-type.gguf: one key of each of the 13 value types (arrays of numbers, strings and a
  nested array included), general.alignment = 64, and three tensors: f32 [3, 8], f16 [2, 16]
  and q8_0 [2, 64] (numpy shapes, outermost first).
- every-type.q8_0.f32: gguf-py's `gguf.quants.dequantize` of that q8_0 tensor, little-endian.
- split-0000I-of-00003.gguf: the same writer told to split after every tensor (one f32
  tensor per part, metadata in the first), as `convert_hf_to_gguf.py --split-max-tensors 1`
  writes a split model.
Every value is a fixed formula, so a rerun writes the same bytes.
"""

import pathlib

import gguf
import numpy as np

OUT = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures/gguf-files"


def tensors():
    f32 = (np.arange(24, dtype=np.float32) * 0.25 - 2.0).reshape(3, 8)
    f16 = (np.arange(32, dtype=np.float32) / 8.0 - 1.5).astype(np.float16).reshape(2, 16)
    q8_src = np.sin(np.arange(128, dtype=np.float32)).reshape(2, 64)
    q8 = gguf.quants.quantize(q8_src, gguf.GGMLQuantizationType.Q8_0)
    return f32, f16, q8


def every_type():
    w = gguf.GGUFWriter(OUT / "every-type.gguf", arch="test")
    w.add_custom_alignment(64)
    w.add_uint8("test.u8", 200)
    w.add_int8("test.i8", -100)
    w.add_uint16("test.u16", 60000)
    w.add_int16("test.i16", -30000)
    w.add_uint32("test.u32", 4000000000)
    w.add_int32("test.i32", -2000000000)
    w.add_float32("test.f32", 1.25)
    w.add_bool("test.bool", True)
    w.add_string("test.string", "héllo wörld")
    w.add_uint64("test.u64", 2**40 + 1)
    w.add_int64("test.i64", -(2**40))
    w.add_float64("test.f64", 0.1)
    w.add_array("test.array.i32", [1, -2, 3])
    w.add_array("test.array.f32", [0.5, -1.5])
    w.add_array("test.array.string", ["a", "bc", "ünï"])
    w.add_array("test.array.nested", [[1, 2], [3]])
    f32, f16, q8 = tensors()
    w.add_tensor("f32.weight", f32)
    w.add_tensor("f16.weight", f16)
    w.add_tensor("q8_0.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    want = gguf.quants.dequantize(q8, gguf.GGMLQuantizationType.Q8_0)
    (OUT / "every-type.q8_0.f32").write_bytes(want.astype("<f4").tobytes())


def split():
    w = gguf.GGUFWriter(OUT / "split.gguf", arch="test", split_max_tensors=1)
    w.add_uint32("test.u32", 7)
    for i in range(3):
        w.add_tensor(f"t{i}", np.full((2, 4), i, dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    every_type()
    split()
