"""vLLM serves what training/registry/quantize.py writes: one engine, one int8 (W8A8) GPT-2 variant.

GPT-2 is the case with a trap (vLLM transposes Conv1D `.weight` tensors as it loads, so the int8 weight is
written in Conv1D layout): if the layout were wrong, the engine would fail to load or decode garbage.
Greedy continuations from vLLM's int8 kernels must equal the fp32 model's (in transformers), or, where a
near-tie of the random weights flips, those of the same int8 scheme computed in-process (`load_quantized`).
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from training.model.export import export_hf
from training.model.transformer import Transformer
from training.registry.quantize import load_quantized, quantize, servable

pytestmark = pytest.mark.integration


def greedy(model, tok, prompt: str, n: int = 12) -> str:
    ids = tok(prompt, return_tensors="pt").input_ids
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=n, do_sample=False, pad_token_id=tok.pad_token_id)
    # vLLM's text leaves out bytes of a character split across tokens; so does this comparison.
    return tok.decode(out[0, ids.shape[1]:].tolist()).replace("\ufffd", "")


def test_vllm_serves_int8_gpt2_like_fp32(workspace, tiny_config, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ok, why = servable("int8")
    if not ok:
        pytest.skip(why)
    cfg = tiny_config()
    torch.manual_seed(0)
    model = Transformer(cfg.model)
    with torch.no_grad():  # larger than the 0.02 init: logits with margins, not near-uniform
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    src = export_hf(model.eval(), tmp_path / "fp32",
                    tokenizer_dir=workspace.tokenizer(cfg.tokenizer.tokenizer_id(cfg.data.dataset_id())))
    facts = quantize(src, tmp_path / "int8", "int8")
    assert facts["servable"] and facts["size_ratio"] < 0.6

    tok = AutoTokenizer.from_pretrained(src)
    prompts = ["Once upon a time", "Q: What is 2 plus 2?", "The capital of Varnia is"]
    # float32, or bfloat16 where vLLM takes its AMX int8 kernel (quantize.serve_dtype): the references too.
    dtype = getattr(torch, facts["serve_dtype"])
    fp32 = AutoModelForCausalLM.from_pretrained(src, dtype=dtype).eval()
    emulated = load_quantized(tmp_path / "int8", dtype=dtype)
    want = [(greedy(fp32, tok, p), greedy(emulated, tok, p)) for p in prompts]

    proc = subprocess.run([sys.executable, str(Path(__file__).with_name("vllm_greedy.py")), str(tmp_path / "int8"),
                           *prompts], env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1",
                                           "PLAYGROUND_VLLM_DTYPE": facts["serve_dtype"]}, capture_output=True,
                          text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith("RESULT "))[7:])
    for prompt, got, (ref, emu) in zip(prompts, result["texts"], want):
        assert got.replace("\ufffd", "") in (ref, emu), (prompt, got, ref, emu)
