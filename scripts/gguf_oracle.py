#!/usr/bin/env python3
"""Small MoE checkpoints for the GGUF tests, converted and quantised by llama.cpp, with llama.cpp's
logits and greedy tokens as the oracle. Run through scripts/gguf_oracle.sh, which builds what it
needs; see there.

For each architecture: a seeded random HF checkpoint (transformers) with hidden 256, so K-quant
rows of 256 fit, and a byte-level BPE of VOCAB tokens trained here on the trained-moe fixture's
calibration text; llama.cpp's convert_hf_to_gguf.py writes it as F16 (through
../shared/llama-cpp/convert_gguf.py) and llama-quantize makes each other type from that F16 file.
llama.cpp then runs every file on its CPU backend (scripts/llama_logits.c): the prompt's logits at
every position and a greedy continuation.

Writes OUT/<arch>/<type>.gguf, <type>.json (prompt and greedy ids, llama.cpp's tensor types) and
<type>.logits (little-endian f32, [prompt tokens, vocab]).
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import gguf
import torch
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

VOCAB = 320
PROMPT = "And the LORD spake unto Moses, saying, Speak unto the children of Israel"
GREEDY = 8

# Shared by every architecture: small, but with rows of 256 values for the K-quants.
COMMON = dict(
    hidden_size=256,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    vocab_size=VOCAB,
    max_position_embeddings=512,
    rms_norm_eps=1e-6,
    tie_word_embeddings=False,
    initializer_range=0.06,
)

ARCHS = {
    "qwen3_moe": dict(
        COMMON,
        model_type="qwen3_moe",
        intermediate_size=512,
        moe_intermediate_size=256,
        num_experts=4,
        num_experts_per_tok=2,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
    ),
    "qwen2_moe": dict(
        COMMON,
        model_type="qwen2_moe",
        intermediate_size=512,
        moe_intermediate_size=256,
        shared_expert_intermediate_size=256,
        num_experts=4,
        num_experts_per_tok=2,
        norm_topk_prob=False,
        decoder_sparse_step=1,
        mlp_only_layers=[],
    ),
    "olmoe": dict(
        COMMON,
        model_type="olmoe",
        # llama.cpp sizes OLMoE's k norm by the hidden size, as in OLMoE-1B-7B (no GQA).
        num_key_value_heads=4,
        intermediate_size=256,
        num_experts=4,
        num_experts_per_tok=2,
        norm_topk_prob=False,
    ),
    "mixtral": dict(
        COMMON,
        model_type="mixtral",
        intermediate_size=256,
        num_local_experts=4,
        num_experts_per_tok=2,
    ),
    "deepseek_v2": dict(
        COMMON,
        model_type="deepseek_v2",
        num_key_value_heads=4,
        intermediate_size=512,
        moe_intermediate_size=256,
        n_routed_experts=4,
        n_shared_experts=1,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        kv_lora_rank=64,
        q_lora_rank=96,
        qk_nope_head_dim=32,
        qk_rope_head_dim=32,
        v_head_dim=32,
        topk_method="greedy",
        routed_scaling_factor=1.0,
        norm_topk_prob=False,
    ),
    "deepseek_v3": dict(
        COMMON,
        model_type="deepseek_v3",
        num_key_value_heads=4,
        intermediate_size=512,
        moe_intermediate_size=256,
        n_routed_experts=8,
        n_shared_experts=1,
        num_experts_per_tok=2,
        first_k_dense_replace=1,
        kv_lora_rank=64,
        q_lora_rank=96,
        qk_nope_head_dim=32,
        qk_rope_head_dim=32,
        v_head_dim=32,
        n_group=4,
        topk_group=2,
        # Not attributes of transformers' DeepseekV3Config, but what llama.cpp's converter
        # reads to write the sigmoid gating (without them it leaves softmax).
        scoring_func="sigmoid",
        topk_method="noaux_tc",
        routed_scaling_factor=2.5,
        norm_topk_prob=True,
    ),
    "gpt_oss": dict(
        COMMON,
        model_type="gpt_oss",
        intermediate_size=256,
        num_local_experts=4,
        num_experts_per_tok=2,
        attention_bias=True,
        layer_types=["sliding_attention", "full_attention"],
        sliding_window=8,
        swiglu_limit=7.0,
    ),
    # The bench shape (scripts/gguf_bench.sh), not a test fixture.
    "qwen3_moe_bench": dict(
        COMMON,
        model_type="qwen3_moe",
        hidden_size=512,
        num_hidden_layers=4,
        num_attention_heads=8,
        num_key_value_heads=4,
        intermediate_size=1024,
        moe_intermediate_size=256,
        num_experts=32,
        num_experts_per_tok=4,
        norm_topk_prob=True,
        decoder_sparse_step=1,
        mlp_only_layers=[],
    ),
}

# llama-quantize's names per architecture; F16 is the converter's output, made for every
# architecture (the others are quantised from it) and kept where listed.
TYPES = {
    "qwen3_moe": ["F16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q4_K_M", "Q5_K_M"],
    "qwen2_moe": ["Q8_0", "Q4_K_M"],
    "olmoe": ["F16", "Q8_0", "Q4_K_M"],
    "mixtral": ["Q8_0", "Q4_K_M"],
    "deepseek_v2": ["Q8_0", "Q4_K_M"],
    "deepseek_v3": ["Q8_0"],
    "gpt_oss": ["MXFP4_MOE"],
    "qwen3_moe_bench": ["Q8_0", "Q4_K_M"],
}


def train_tokenizer(text_path, out):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    text = Path(text_path).read_text()[:400_000]
    tok.train_from_iterator(text.split("\n"), trainer)
    tok.save(str(out / "tokenizer.json"))
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "eos_token": "<|endoftext|>",
                "bos_token": None,
                "model_max_length": 512,
            }
        )
    )


def make_checkpoint(arch, cfg, out, seed):
    torch.manual_seed(seed)
    config = transformers.AutoConfig.for_model(**cfg)
    config.bos_token_id = None
    config.eos_token_id = 0
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(out)


def run(cmd, **kw):
    print("+", " ".join(str(c) for c in cmd), file=sys.stderr)
    return subprocess.run(cmd, check=True, **kw)


def tensor_types(path):
    reader = gguf.GGUFReader(path)
    counts = {}
    for t in reader.tensors:
        name = t.tensor_type.name
        counts[name] = counts.get(name, 0) + 1
    return dict(sorted(counts.items()))


# The architectures transformers 5.23 loads from GGUF (dequantising with gguf-py; its gpt-oss
# loader fails on these files, and it has no OLMoE, DeepSeek-V2 or Mixtral experts): an
# independent f32 reference for our decoding and tensor mapping, free of llama.cpp's rounding.
TRANSFORMERS_GGUF = {"qwen3_moe", "qwen2_moe"}


def transformers_logits(dest, hf, ty, prompt, greedy):
    """transformers' logits on the GGUF file for the prompt and llama.cpp's greedy tokens
    (teacher-forced): [prompt + greedy - 1 rows, vocab] little-endian f32. The config comes from
    the Hugging Face checkpoint: transformers' GGUF key mapping misses some (Qwen3-MoE's expert
    width) and would silently reinitialise the mismatched tensors."""
    config = transformers.AutoConfig.from_pretrained(hf)
    model, info = transformers.AutoModelForCausalLM.from_pretrained(
        dest, gguf_file=f"{ty}.gguf", config=config, dtype=torch.float32,
        output_loading_info=True)
    bad = {k: v for k, v in info.items() if v and k != "error_msgs"}
    if bad or info.get("error_msgs"):
        raise SystemExit(f"transformers did not load {dest}/{ty}.gguf exactly: {info}")
    ids = torch.tensor([prompt + greedy[:-1]])
    with torch.no_grad():
        logits = model(ids).logits[0].float().numpy()
    logits.astype("<f4").tofile(dest / f"{ty}.transformers.logits")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--llama-dir", required=True)
    ap.add_argument("--llama-bin", required=True)
    ap.add_argument("--logits-bin", required=True)
    ap.add_argument("--text", required=True)
    ap.add_argument("--arch", action="append")
    args = ap.parse_args()
    convert = Path(__file__).resolve().parents[2] / "shared/llama-cpp/convert_gguf.py"
    env = dict(os.environ, LLAMA_CPP_DIR=args.llama_dir)
    fixtures = [a for a in ARCHS if not a.endswith("_bench")]
    for seed, arch in enumerate(args.arch or fixtures):
        hf = Path(args.work) / arch
        hf.mkdir(parents=True, exist_ok=True)
        make_checkpoint(arch, ARCHS[arch], hf, seed)
        train_tokenizer(args.text, hf)
        dest = Path(args.out) / arch
        dest.mkdir(parents=True, exist_ok=True)
        f16 = dest / "F16.gguf"
        run([sys.executable, convert, hf, "--outtype", "f16", "--outfile", f16], env=env)
        for ty in TYPES[arch]:
            if ty != "F16":
                run([Path(args.llama_bin) / "llama-quantize", f16, dest / f"{ty}.gguf", ty],
                    stdout=subprocess.DEVNULL)
        if "F16" not in TYPES[arch]:
            f16.unlink()
        for ty in TYPES[arch]:
            path = dest / f"{ty}.gguf"
            got = run([args.logits_bin, path, PROMPT, str(GREEDY), dest / f"{ty}.logits"],
                      capture_output=True, text=True)
            record = json.loads(got.stdout)
            if arch in TRANSFORMERS_GGUF:
                record["transformers_logits"] = f"{ty}.transformers.logits"
                transformers_logits(dest, hf, ty, record["prompt_ids"], record["greedy_ids"])
            record.update(prompt=PROMPT, tensor_types=tensor_types(path),
                          made_by="scripts/gguf_oracle.sh (llama.cpp CPU backend)")
            (dest / f"{ty}.json").write_text(json.dumps(record, indent=1) + "\n")


if __name__ == "__main__":
    main()
