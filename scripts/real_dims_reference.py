"""The transformers side of scripts/check_real_dims.sh: one model, run in float32 on the CPU.

    python real_dims_reference.py reference DIR LAYER OUT.safetensors
        A random MoE-block input (seeded), the block's output through transformers, a random
        prompt and its greedy continuation (full recompute each step, EOS ignored).
    python real_dims_reference.py ids REF.safetensors
        Prints the reference's prompt ids, comma-separated.
    python real_dims_reference.py row LIKE DTYPE DIR REF.safetensors BLOCK.safetensors GEN.json
        Prints one markdown row comparing the runtime's `moe block` output and greedy tokens
        with the reference. Where the tokens differ, it teacher-forces the runtime's tokens and
        reports, per token, how far its logit is below the step's largest logit: a near tie is
        a token within TIE of the top.

gpt-oss MXFP4 experts are dequantised by transformers itself (on a CPU it always
dequantises, through `convert_moe_packed_tensors`), so both sides see the same values.
"""

import json
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

PROMPT_TOKENS = 8
NEW_TOKENS = 8
BLOCK_TOKENS = 5
# Largest |runtime - transformers| / max |transformers| of a block output, by expert format.
BLOCK_TOLERANCE = {"f32": 1e-5, "f16": 2e-3, "bf16": 1e-2, "mxfp4": 1e-5}
# A runtime token whose logit is this close to the top one is a near tie, not an error.
TIE = 1e-3


def load(model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.eval()
    return model


def block_output(mlp, x):
    out = mlp(x.unsqueeze(0))
    if isinstance(out, tuple):
        out = out[0]
    return out.reshape(x.shape)


def next_logits(model, ids):
    return model(torch.tensor([ids])).logits[0, -1]


def reference(model_dir, layer, out_path):
    model = load(model_dir)
    cfg = model.config
    gen = torch.Generator().manual_seed(1234)
    x = torch.randn(BLOCK_TOKENS, cfg.hidden_size, generator=gen)
    prompt = torch.randint(0, cfg.vocab_size, (PROMPT_TOKENS,), generator=gen).tolist()
    with torch.no_grad():
        y = block_output(model.model.layers[layer].mlp, x)
        ids = list(prompt)
        gaps = []
        for _ in range(NEW_TOKENS):
            logits = next_logits(model, ids)
            top2 = torch.topk(logits, 2).values
            gaps.append(float(top2[0] - top2[1]))
            ids.append(int(torch.argmax(logits)))
    save_file(
        {
            "input": x.contiguous(),
            "output": y.contiguous(),
            "prompt_ids": torch.tensor(prompt, dtype=torch.int64),
            "greedy_ids": torch.tensor(ids[len(prompt):], dtype=torch.int64),
            "greedy_gaps": torch.tensor(gaps, dtype=torch.float32),
        },
        out_path,
    )


def deficits(model_dir, prompt, generated):
    model = load(model_dir)
    ids = prompt + generated
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    rows = logits[len(prompt) - 1 : len(ids) - 1]
    return [float(r.max() - r[t]) for r, t in zip(rows, generated)]


def row(like, dtype, model_dir, ref_path, block_path, gen_path):
    ref = load_file(ref_path)
    want, got = ref["output"], load_file(block_path)["output"]
    rel = float((got - want).abs().max() / want.abs().max())
    with open(gen_path) as f:
        generated = json.loads(f.read().strip().splitlines()[-1])["generated_ids"]
    greedy = ref["greedy_ids"].tolist()
    same = sum(a == b for a, b in zip(generated, greedy))
    worst = 0.0
    if generated != greedy:
        worst = max(deficits(model_dir, ref["prompt_ids"].tolist(), generated))
    ok = rel <= BLOCK_TOLERANCE[dtype] and worst <= TIE
    verdict = "pass" if ok else "FAIL"
    print(
        f"| {like} | {dtype} | {rel:.1e} | {same}/{len(greedy)} | {worst:.1e} | "
        f"{float(ref['greedy_gaps'].min()):.3f} | {verdict} |",
        flush=True,
    )
    return ok


if __name__ == "__main__":
    if sys.argv[1] == "reference":
        reference(sys.argv[2], int(sys.argv[3]), sys.argv[4])
    elif sys.argv[1] == "ids":
        print(",".join(str(t) for t in load_file(sys.argv[2])["prompt_ids"].tolist()))
    elif sys.argv[1] == "row":
        sys.exit(0 if row(*sys.argv[2:8]) else 1)
    else:
        sys.exit(f"unknown command {sys.argv[1]}")
