#!/usr/bin/env python3
"""Trains the small Qwen3-MoE at tests/fixtures/trained-moe/ on the King James Bible.

Usage:  scripts/train_tiny_moe.sh            (makes the venv, gets the text, runs this)
        python scripts/train_tiny_moe.py --text kjv.txt --out DIR [--steps N] [--seed S]
        python scripts/train_tiny_moe.py --out DIR --reference-only   (redo the reference part
                                                                       of training.json)

Data: the King James Version as Debian's bible-kjv package prints it
(`bible "gen1:1-rev22:21"`): 1189 chapters, about 4.3 MB of public-domain English. Verse
numbers and chapter headings are dropped; a chapter is one document, a verse one line. Every
40th chapter (Genesis 40, Exodus 30, ...) is held out; none of its text is seen in training.

Model: Qwen3-MoE, hidden 256, 4 layers, 4 query / 2 key-value heads of 64, 32 experts of width
64, top-4 with renormalised weights, untied embeddings, a byte-level BPE tokenizer of 4096
tokens trained on the training chapters. About 9.2M parameters. The loss is next-token
cross-entropy plus transformers' load-balancing loss (router_aux_loss_coef 0.01).

Writes to --out: config.json, generation_config.json, model.safetensors (bf16), tokenizer.json,
heldout.txt (the held-out chapters), calib.txt (training chapters for calibration), and
training.json: the data, the steps, the loss curve, the held-out perplexity and a greedy
continuation of a fixed prompt by the saved bf16 checkpoint, in transformers (the reference
tests compare against).
"""
import argparse
import json
import math
import re
import time
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import Qwen3MoeConfig, Qwen3MoeForCausalLM

HELD_OUT_EVERY = 40
VOCAB = 4096
EOS = "<|endoftext|>"
PROMPT = "And God said unto Moses,"
GREEDY_TOKENS = 24
EVAL_LEN = 64  # `moe eval --seq-len` default: the held-out ids are cut into rows of this many
FIRST_ROWS = 16  # the tests check the perplexity of the first rows only


def chapters(text):
    """The chapters of `bible`'s output, each a list of verses without their numbers."""
    out = []
    for block in re.split(r"\n(?=\S[^\n]* \d+\n)", text):
        lines = block.strip("\n").split("\n")
        if len(lines) < 2:
            continue
        body = "\n".join(lines[1:])
        verses = [" ".join(v.split()) for v in re.split(r"\n\s+\d+ ", "\n" + body)]
        verses = [v for v in verses if v]
        if verses:
            out.append(verses)
    return out


def train_tokenizer(docs, seed):
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB, special_tokens=[EOS], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(docs, trainer)
    return tok


def batch_rows(ids, seq, batch, gen):
    """Random windows of `seq` tokens from the training stream."""
    starts = torch.randint(0, len(ids) - seq, (batch,), generator=gen)
    return torch.stack([ids[s:s + seq] for s in starts.tolist()])


@torch.no_grad()
def perplexity(model, ids, rows=None):
    """exp(mean NLL) over rows of EVAL_LEN ids, each row from an empty context (as `moe eval`)."""
    nll, n = 0.0, 0
    for s in range(0, len(ids) if rows is None else rows * EVAL_LEN, EVAL_LEN):
        row = ids[s:s + EVAL_LEN]
        if len(row) < 2:
            continue
        logits = model(row[None]).logits[0].double()
        nll += torch.nn.functional.cross_entropy(logits[:-1], row[1:], reduction="sum").item()
        n += len(row) - 1
    return math.exp(nll / n)


def config():
    return Qwen3MoeConfig(
        vocab_size=VOCAB, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
        num_attention_heads=4, num_key_value_heads=2, head_dim=64, moe_intermediate_size=64,
        num_experts=32, num_experts_per_tok=4, norm_topk_prob=True, decoder_sparse_step=1,
        max_position_embeddings=512, rope_theta=10000.0, tie_word_embeddings=False,
        output_router_logits=True, router_aux_loss_coef=0.01, initializer_range=0.02,
        eos_token_id=0, bos_token_id=None, pad_token_id=None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--text", help="bible's output, see the module comment")
    p.add_argument("--out", required=True)
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--seq", type=int, default=128)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--reference-only", action="store_true")
    args = p.parse_args()
    if args.reference_only:
        return reference(Path(args.out))
    if not args.text:
        p.error("--text is required to train")
    torch.manual_seed(args.seed)
    torch.set_num_threads(2)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    chs = chapters(Path(args.text).read_text())
    assert len(chs) == 1189, f"expected the 1189 chapters of the KJV, found {len(chs)}"
    train = ["\n".join(c) for i, c in enumerate(chs) if i % HELD_OUT_EVERY != HELD_OUT_EVERY - 1]
    held = ["\n".join(c) for i, c in enumerate(chs) if i % HELD_OUT_EVERY == HELD_OUT_EVERY - 1]
    (out / "heldout.txt").write_text("\n\n".join(held) + "\n")
    (out / "calib.txt").write_text("\n\n".join(train[::60]) + "\n")

    tok = train_tokenizer(train, args.seed)
    tok.save(str(out / "tokenizer.json"))
    eos = tok.token_to_id(EOS)
    stream = []
    for d in train:
        stream += tok.encode(d).ids + [eos]
    ids = torch.tensor(stream)
    held_ids = torch.tensor(tok.encode((out / "heldout.txt").read_text()).ids)

    cfg = config()
    model = Qwen3MoeForCausalLM(cfg).float()
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{n_params / 1e6:.2f}M parameters, {len(ids)} training tokens, {len(held_ids)} held-out")
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=args.lr, betas=(0.9, 0.95))
    warm = max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warm) * (
        0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, s / args.steps)))))
    gen = torch.Generator().manual_seed(args.seed)
    curve, t0 = [], time.time()
    model.train()
    for step in range(1, args.steps + 1):
        x = batch_rows(ids, args.seq, args.batch, gen)
        o = model(input_ids=x, labels=x, output_router_logits=True)  # transformers shifts labels
        opt.zero_grad(set_to_none=True)
        o.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 50 == 0 or step == 1:
            curve.append({"step": step, "loss": round(o.loss.item(), 4),
                          "aux_loss": round(o.aux_loss.item(), 4), "seconds": round(time.time() - t0, 1)})
            print(json.dumps(curve[-1]), flush=True)
    seconds = time.time() - t0

    model.eval()
    model.config.output_router_logits = False
    model.to(torch.bfloat16).save_pretrained(out)
    record = {
        "data": "King James Version, Debian bible-kjv-text 4.38, `bible \"gen1:1-rev22:21\"`; "
                f"every {HELD_OUT_EVERY}th chapter held out",
        "train_chapters": len(train), "heldout_chapters": len(held),
        "train_tokens": len(ids), "heldout_tokens": len(held_ids),
        "parameters": n_params, "steps": args.steps, "batch": args.batch, "seq": args.seq,
        "lr": args.lr, "seed": args.seed, "train_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(), "loss_curve": curve,
    }
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    reference(out)


def reference(out):
    """What transformers makes of the saved bf16 checkpoint, computed in f32: the held-out
    perplexity (all rows, and the first FIRST_ROWS) and a greedy continuation of PROMPT."""
    tok = Tokenizer.from_file(str(out / "tokenizer.json"))
    held_ids = torch.tensor(tok.encode((out / "heldout.txt").read_text()).ids)
    ref = Qwen3MoeForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    prompt = tok.encode(PROMPT).ids
    greedy = ref.generate(torch.tensor([prompt]), max_new_tokens=GREEDY_TOKENS, do_sample=False,
                          eos_token_id=None, pad_token_id=0)[0, len(prompt):].tolist()
    record = json.loads((out / "training.json").read_text())
    record.update({
        "heldout_perplexity_bf16": perplexity(ref, held_ids), "heldout_eval_len": EVAL_LEN,
        "first_rows": FIRST_ROWS, "first_rows_perplexity": perplexity(ref, held_ids, FIRST_ROWS),
        "prompt": PROMPT, "prompt_ids": prompt, "greedy_ids": greedy,
        "greedy_text": tok.decode(greedy),
        "versions": {"torch": torch.__version__,
                     "transformers": __import__("transformers").__version__,
                     "tokenizers": __import__("tokenizers").__version__},
    })
    (out / "training.json").write_text(json.dumps(record, indent=1) + "\n")
    print(f"held-out perplexity {record['heldout_perplexity_bf16']:.3f}; "
          f"greedy: {PROMPT}{record['greedy_text']!r}")


if __name__ == "__main__":
    main()
