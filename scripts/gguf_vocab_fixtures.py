#!/usr/bin/env python3
"""Makes tests/fixtures/gguf-vocab/*.json: vocab-only GGUF files written by llama.cpp's converter,
their tokenizer metadata as read back by gguf-py's GGUFReader, and the ids llama.cpp's
`llama-tokenize` gives for a text sample. Run through scripts/gguf_vocab_fixtures.sh.

    gguf_vocab_fixtures.py --llama-dir L --tokenize BIN --convert convert_gguf.py --out DIR
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

import gguf
import sentencepiece as spm

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(HERE, "..", "tests", "fixtures")

# ASCII, punctuation, digits, contractions, runs of spaces, tabs and newlines, accents, CJK, emoji.
PLAIN = [
    "Hello, world! It's 2026: numbers 12345, 3.14159 and 1,000,000.",
    "  leading spaces,\ttabs\n\nand   runs    of spaces   \n  \n\n\nend  ",
    "don't WE'LL you've I'M she'd THEY'RE it's",
    "Café naïve résumé Ærøskøbing – “quotes” — dash… ¿qué? ¡sí!",
    "日本語のテキストと中文字符，还有한국어。",
    "emoji 🙂🚀 mixed with text 👍🏽 and 🇫🇷 flags",
    "code: fn main() { let x = a[0] + b_1 * 42; } // done\n\tif x >= 10 { return; }",
    "And God said, Let there be light: and there was light.",
    "CamelCase HTTPServer getHTTPResponse (parens) [x]'s x=1+2; 100% of 1234567/89 \u00a0nbsp\r\nCRLF",
]

BPE_SPECIAL = [
    "<|im_start|>user\nHi there<|im_end|>\n<|im_start|>assistant\n<think>\nhmm</think>\nOk.<|endoftext|>",
    "text<|endoftext|>more text <|im_end|> spaced <|im_start|>",
]
SPM_SPECIAL = [
    "<s>Hello</s> world<|im_start|>user\nHi<|im_end|>\n<tool>call</tool> <unk> done",
    "<|im_start|> leading<|im_end|>trailing",
]

BPE_VARIANTS = [{}] + [{"pre": p} for p in ["default", "gpt-2", "llama-bpe", "deepseek-llm", "deepseek-v3",
                                              "olmo", "gpt-4o"]] + [{"add_bos": True, "add_eos": True}]
SPM_VARIANTS = [{}, {"add_space_prefix": False}, {"add_bos": False, "add_eos": True}]

CHAT_TEMPLATE = os.path.join(FIXTURES, "chat", "qwen_like.jinja")


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, **kw)
    if r.returncode != 0:
        sys.exit(f"failed: {' '.join(cmd)}\n{r.stdout.decode(errors='replace')}\n{r.stderr.decode(errors='replace')}")
    return r.stdout


def cross_tokenizer():
    """A byte-level BPE trained with no pre-tokenizer regex, so that its merges cross spaces,
    punctuation, digits and scripts: each pre-tokenizer's splits then show in the ids."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=3000, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    calib = open(os.path.join(FIXTURES, "trained-moe", "calib.txt")).read().splitlines()
    tok.train_from_iterator(calib + PLAIN * 20, trainer=trainer)
    return json.loads(tok.to_str())


def bpe_model_dir(tmp, name, tok):
    """The BPE tokenizer `tok` (tokenizer.json) in a Qwen3-MoE checkpoint, with chat special
    tokens and two user-defined tokens added."""
    src = os.path.join(FIXTURES, "trained-moe")
    d = os.path.join(tmp, name)
    os.makedirs(d)
    n = len(tok["model"]["vocab"])
    for i, (content, special) in enumerate([("<|im_start|>", True), ("<|im_end|>", True), ("<think>", False), ("</think>", False)]):
        tok["added_tokens"].append({"id": n + i, "content": content, "single_word": False, "lstrip": False,
                                    "rstrip": False, "normalized": False, "special": special})
    json.dump(tok, open(os.path.join(d, "tokenizer.json"), "w"), ensure_ascii=False)
    config = json.load(open(os.path.join(src, "config.json")))
    config["vocab_size"] = n + 8  # four padding tokens past the added ones, as real checkpoints have
    json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2)
    json.dump({"tokenizer_class": "Qwen2Tokenizer", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>",
               "bos_token": None, "chat_template": open(CHAT_TEMPLATE).read()},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    return d


def spm_model_dir(tmp):
    """A 1000-piece SentencePiece BPE with byte fallback, trained on calib.txt, as a Mixtral checkpoint."""
    d = os.path.join(tmp, "spm")
    os.makedirs(d)
    spm.SentencePieceTrainer.train(
        input=os.path.join(FIXTURES, "trained-moe", "calib.txt"), model_prefix=os.path.join(d, "tokenizer"),
        vocab_size=1000, model_type="bpe", byte_fallback=True, split_digits=True, character_coverage=1.0,
        control_symbols=["<|im_start|>", "<|im_end|>"], user_defined_symbols=["<tool>"],
        bos_id=1, eos_id=2, unk_id=0, pad_id=-1, add_dummy_prefix=True, remove_extra_whitespaces=False,
        normalization_rule_name="identity", num_threads=2, minloglevel=2)
    os.remove(os.path.join(d, "tokenizer.vocab"))
    config = json.load(open(os.path.join(FIXTURES, "hf-tiny", "mixtral", "model", "config.json")))
    config["vocab_size"] = 1000
    json.dump(config, open(os.path.join(d, "config.json"), "w"), indent=2)
    json.dump({"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
               "add_bos_token": True, "add_eos_token": False, "legacy": True,
               "chat_template": "{{ bos_token }}{% for m in messages %}[{{ m.role }}] {{ m.content }}{{ eos_token }}{% endfor %}"},
              open(os.path.join(d, "tokenizer_config.json"), "w"), indent=2)
    return d


def field(reader, key, default=None):
    f = reader.get_field(key)
    return default if f is None else f.contents()


def dump_vocab(path):
    """The GgufVocab fields of a GGUF file, as GGUFReader reads them."""
    r = gguf.GGUFReader(path)
    p = "tokenizer.ggml."
    return {
        "model": field(r, p + "model"),
        "pre": field(r, p + "pre"),
        "tokens": field(r, p + "tokens"),
        "token_types": field(r, p + "token_type", []),
        "scores": field(r, p + "scores", []),
        "merges": field(r, p + "merges", []),
        "bos": field(r, p + "bos_token_id"),
        "eos": field(r, p + "eos_token_id"),
        "unk": field(r, p + "unknown_token_id"),
        "pad": field(r, p + "padding_token_id"),
        "add_bos": field(r, p + "add_bos_token"),
        "add_eos": field(r, p + "add_eos_token"),
        "add_space_prefix": field(r, p + "add_space_prefix"),
        "chat_template": field(r, "tokenizer.chat_template"),
    }


# The metadata each variant overrides, by its name in the fixture: (GGUF key, value type).
OVERRIDE_KEYS = {
    "pre": ("tokenizer.ggml.pre", gguf.GGUFValueType.STRING),
    "add_bos": ("tokenizer.ggml.add_bos_token", gguf.GGUFValueType.BOOL),
    "add_eos": ("tokenizer.ggml.add_eos_token", gguf.GGUFValueType.BOOL),
    "add_space_prefix": ("tokenizer.ggml.add_space_prefix", gguf.GGUFValueType.BOOL),
}


def with_overrides(src, dst, overrides):
    """A copy of the vocab-only GGUF `src` with the metadata in `overrides` set."""
    r = gguf.GGUFReader(src)
    w = gguf.GGUFWriter(dst, arch=field(r, "general.architecture"))
    keys = {OVERRIDE_KEYS[k][0]: (v, OVERRIDE_KEYS[k][1]) for k, v in overrides.items()}
    for key, f in r.fields.items():
        if key.startswith("GGUF.") or key == "general.architecture" or key in keys:
            continue
        vtype = f.types[0]
        sub = f.types[-1] if vtype == gguf.GGUFValueType.ARRAY else None
        w.add_key_value(key, f.contents(), vtype, sub_type=sub)
    for key, (value, vtype) in keys.items():
        w.add_key_value(key, value, vtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.close()


def tokenize(binary, model, text):
    out = run([binary, "-m", model, "--stdin", "--ids", "--log-disable", "--no-escape"], input=text.encode())
    return json.loads(out.decode().strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-dir", required=True)
    ap.add_argument("--tokenize", required=True)
    ap.add_argument("--convert", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    env = dict(os.environ, LLAMA_CPP_DIR=a.llama_dir)
    trained = json.load(open(os.path.join(FIXTURES, "trained-moe", "tokenizer.json")))
    with tempfile.TemporaryDirectory() as tmp:
        for name, model_dir, special, variants in [
            ("bpe", bpe_model_dir(tmp, "bpe", trained), BPE_SPECIAL, BPE_VARIANTS),
            ("bpe-cross", bpe_model_dir(tmp, "bpe-cross", cross_tokenizer()), BPE_SPECIAL, BPE_VARIANTS),
            ("spm", spm_model_dir(tmp), SPM_SPECIAL, SPM_VARIANTS),
        ]:
            gg = os.path.join(tmp, name + ".gguf")
            run([sys.executable, a.convert, model_dir, "--vocab-only", "--outfile", gg], env=env)
            vocab = dump_vocab(gg)
            cases = []
            for i, overrides in enumerate(variants):
                path = gg
                if overrides:
                    path = os.path.join(tmp, f"{name}-{i}.gguf")
                    with_overrides(gg, path, overrides)
                for text in PLAIN + special:
                    cases.append({"overrides": overrides, "text": text, "special": text in special,
                                  "ids": tokenize(a.tokenize, path, text)})
            out = {
                "made_by": "scripts/gguf_vocab_fixtures.sh: llama.cpp's convert_hf_to_gguf.py --vocab-only, "
                           "gguf-py GGUFReader, llama-tokenize --ids (parse_special on, bos as the vocab says)",
                "vocab": vocab,
                "cases": cases,
            }
            with open(os.path.join(a.out, name + ".json"), "w") as f:
                json.dump(out, f, ensure_ascii=False, separators=(",", ":"))
                f.write("\n")
            print(f"{name}: {len(vocab['tokens'])} tokens, {len(cases)} cases")


if __name__ == "__main__":
    main()
