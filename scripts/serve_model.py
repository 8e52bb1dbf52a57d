"""Make a checkpoint `moe serve` can talk with: copy a model directory (config.json,
generation_config.json if any, safetensors) and add a word-level tokenizer.json over its whole
vocabulary (<unk>, then w1 ... w{V-1}; decoding joins words with spaces) and the Qwen-like chat
template of the tests. Usage: serve_model.py SRC_MODEL_DIR OUT_DIR"""
import json
import pathlib
import shutil
import sys

src, out = map(pathlib.Path, sys.argv[1:3])
out.mkdir(parents=True, exist_ok=True)
for f in src.iterdir():
    if f.name in ("config.json", "generation_config.json") or f.suffix == ".safetensors":
        shutil.copy(f, out / f.name)
vocab_size = json.loads((src / "config.json").read_text())["vocab_size"]
vocab = {"<unk>": 0, **{f"w{i}": i for i in range(1, vocab_size)}}
tokenizer = {
    "version": "1.0", "truncation": None, "padding": None, "added_tokens": [],
    "normalizer": None, "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None,
    "decoder": None, "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<unk>"},
}
(out / "tokenizer.json").write_text(json.dumps(tokenizer))
root = pathlib.Path(__file__).resolve().parent.parent
shutil.copy(root / "tests/fixtures/chat/qwen_like.jinja", out / "chat_template.jinja")
