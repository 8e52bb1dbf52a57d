"""Writes tests/fixtures/mxfp4/gpt_oss/: the hf-tiny gpt_oss fixture with MXFP4 experts, and
what transformers computes from them.

    target/venv-oracle/bin/python scripts/mxfp4_oracle.py     (venv: scripts/check_real_dims.sh)

- model/: the fixture's checkpoint with each layer's experts cut to 32 units (MXFP4 groups
  are 32 wide along a matrix's input) and stored as gpt-oss releases store them:
  `*_blocks` [E, out, in/32, 16] (two e2m1 codes per byte, low nibble first) and `*_scales`
  [E, out, in/32] (e8m0), with `quantization_config.quant_method = "mxfp4"`. The quantiser
  here is plain round-to-nearest with the scale 2^ceil(log2(amax / 6)); any would do, since
  the check is of decoding.
- expected.safetensors:
  - `decoded.layers.L.gate_up_proj` / `down_proj`: transformers' own
    `convert_moe_packed_tensors` of those blocks, in f32 ([E, H, 2I] and [E, I, H]);
  - the keys of the other fixtures (`input_ids`, per-layer `attn`/`mlp`/layer outputs,
    `final_norm.output`, `logits`, `generate.sequences`, `generate.step_logits`), from
    transformers loading model/ itself in float32 on the CPU, where it dequantises the
    experts with that same function.
"""

import json
import pathlib
import shutil

import numpy as np
import torch
from safetensors.numpy import load_file, save_file
from transformers import AutoModelForCausalLM
from transformers.integrations.mxfp4 import FP4_VALUES, convert_moe_packed_tensors

ROOT = pathlib.Path(__file__).resolve().parent.parent / "tests/fixtures"
SOURCE = ROOT / "hf-tiny/gpt_oss"
OUT = ROOT / "mxfp4/gpt_oss"
INTER = 32
PROMPT_TOKENS = 7
NEW_TOKENS = 8
MIN_GAP = 1e-3


def quantise(w):
    """[E, out, in] f32 -> (blocks [E, out, in/32, 16] u8, scales [E, out, in/32] u8)."""
    groups = w.reshape(*w.shape[:-1], -1, 32)
    amax = np.abs(groups).max(axis=-1)
    exp = np.where(amax > 0, np.ceil(np.log2(np.maximum(amax, 1e-30) / 6.0)), 0).astype(np.int32)
    scaled = groups / np.ldexp(1.0, exp)[..., None]
    values = np.array(FP4_VALUES, dtype=np.float32)
    codes = np.abs(scaled[..., None] - values).argmin(axis=-1).astype(np.uint8)
    blocks = codes[..., 0::2] | (codes[..., 1::2] << 4)
    return blocks, (exp + 127).astype(np.uint8)


def write_model():
    tensors = load_file(SOURCE / "model/model.safetensors")
    config = json.loads((SOURCE / "model/config.json").read_text())
    inter = config["intermediate_size"]
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}.mlp.experts."
        # [E, H, 2I] with gate/up interleaved columns -> the first INTER units, output-major.
        keep = np.arange(2 * inter) < 2 * INTER
        gate_up = tensors.pop(p + "gate_up_proj")[:, :, keep].transpose(0, 2, 1)
        down = tensors.pop(p + "down_proj")[:, :INTER, :].transpose(0, 2, 1)
        tensors[p + "gate_up_proj_bias"] = tensors[p + "gate_up_proj_bias"][:, keep].copy()
        for name, w in [("gate_up_proj", gate_up), ("down_proj", down)]:
            blocks, scales = quantise(np.ascontiguousarray(w))
            tensors[p + name + "_blocks"] = np.ascontiguousarray(blocks)
            tensors[p + name + "_scales"] = np.ascontiguousarray(scales)
    config["intermediate_size"] = INTER
    config["quantization_config"] = {"quant_method": "mxfp4"}
    shutil.rmtree(OUT, ignore_errors=True)
    (OUT / "model").mkdir(parents=True)
    (OUT / "model/config.json").write_text(json.dumps(config, indent=2) + "\n")
    save_file(tensors, OUT / "model/model.safetensors")
    return tensors, config


def record(model):
    """Forward hooks writing each block's output under the fixture keys."""
    out, handles = {}, []

    def put(name):
        def hook(_mod, _args, o):
            o = o[0] if isinstance(o, tuple) else o
            out[name] = o.detach().reshape(-1, o.shape[-1]).float().numpy().copy()
        return hook

    m = model.model
    handles.append(m.embed_tokens.register_forward_hook(put("embed.output")))
    handles.append(m.norm.register_forward_hook(put("final_norm.output")))
    for i, layer in enumerate(m.layers):
        handles.append(layer.self_attn.register_forward_hook(put(f"layers.{i}.attn.output")))
        handles.append(layer.mlp.register_forward_hook(put(f"layers.{i}.mlp.output")))
        handles.append(layer.register_forward_hook(put(f"layers.{i}.output")))
    return out, handles


def main():
    tensors, config = write_model()
    model = AutoModelForCausalLM.from_pretrained(OUT / "model", dtype=torch.float32)
    model.eval()
    expected = {}
    for layer in range(config["num_hidden_layers"]):
        p = f"model.layers.{layer}.mlp.experts."
        experts = model.model.layers[layer].mlp.experts
        for name in ["gate_up_proj", "down_proj"]:
            decoded = convert_moe_packed_tensors(
                torch.from_numpy(tensors[p + name + "_blocks"]),
                torch.from_numpy(tensors[p + name + "_scales"]),
                dtype=torch.float32,
            )
            loaded = getattr(experts, name)
            assert loaded.dtype == torch.float32, f"{name} loaded as {loaded.dtype}"
            assert torch.equal(decoded, loaded.detach()), f"layer {layer} {name}"
            expected[f"decoded.layers.{layer}.{name}"] = decoded.numpy()

    vocab = config["vocab_size"]
    gen = torch.Generator().manual_seed(7)
    with torch.no_grad():
        for _attempt in range(100):
            prompt = torch.randint(3, vocab, (1, PROMPT_TOKENS), generator=gen)
            result = model.generate(
                prompt, max_new_tokens=NEW_TOKENS, min_new_tokens=NEW_TOKENS,
                do_sample=False, eos_token_id=None, pad_token_id=0,
                output_logits=True, return_dict_in_generate=True,
            )
            steps = torch.cat(result.logits)
            top2 = torch.topk(steps, 2).values
            if float((top2[:, 0] - top2[:, 1]).min()) >= MIN_GAP:
                break
        else:
            raise SystemExit(f"no prompt with greedy logit gaps >= {MIN_GAP}")
        trace, handles = record(model)
        logits = model(prompt).logits[0]
        for h in handles:
            h.remove()
    expected.update(trace)
    expected["input_ids"] = prompt[0].numpy().astype(np.int64)
    expected["logits"] = logits.numpy()
    expected["generate.sequences"] = result.sequences[0].numpy().astype(np.int64)
    expected["generate.step_logits"] = steps.numpy()
    save_file({k: np.ascontiguousarray(v) for k, v in expected.items()}, OUT / "expected.safetensors")
    import transformers
    (OUT / "expected.json").write_text(json.dumps({
        "made_by": "scripts/mxfp4_oracle.py",
        "source": "tests/fixtures/hf-tiny/gpt_oss, experts cut to 32 units and quantised to MXFP4",
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__},
        "min_greedy_gap": MIN_GAP,
    }, indent=1) + "\n")
    print(f"wrote {OUT}: {len(expected)} expected tensors")


if __name__ == "__main__":
    main()
