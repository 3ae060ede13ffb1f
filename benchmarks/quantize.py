"""`playground bench quantize`: int8 (W8A8) and int4 (W4A16) variants of a model: size, quality, speed.

One run quantizes the model (default `demo-align`) with training/registry/quantize.py into
workspace/models/<prefix><model>-int8 and -int4, then measures, against the fp32 export in the same run:

    int8_size_ratio, int4_size_ratio          variant bytes / fp32 bytes on disk; goal <= 0.5
    int8_accuracy_drop, int4_accuracy_drop    world-facts accuracy (60 four-way items), fp32 minus variant,
                                              absolute; goals <= 0.02 and <= 0.05
    int8_perplexity_ratio, int4_...           held-out perplexity, variant / fp32
    int8_served, int4_served                  whether vLLM on this machine serves the variant

Accuracy and perplexity are measured where the variant runs: in vLLM (its real int8 / int4 kernels) when
it is served, from the prompt log-probabilities the engine returns, scored as lm-eval scores a
multiple-choice item (log P(" " + choice | prompt) summed over the choice's tokens, the largest wins:
`acc`); else in-process (transformers, the variant decompressed by `load_quantized`). Both are reported
for every model, the in-process figures as a cross-check. Each model gets one vLLM engine (a subprocess,
this module itself with --vllm-worker): fp32 and int8 in float32, int4 in bfloat16 (the 4-bit kernel
has no float32 path). Tokens/s: 16 prompts x 64 generated tokens, greedy, ignore_eos, one batch.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from training.errors import UserError
from training.workspace import PROJECT_ROOT, Workspace

GOALS = {"int8_size_ratio": ("<=", 0.5), "int4_size_ratio": ("<=", 0.5), "int8_accuracy_drop": ("<=", 0.02),
         "int4_accuracy_drop": ("<=", 0.05)}
PPL_TOKENS = 20000
GEN_PROMPTS, GEN_TOKENS = 16, 64


def mc_sequences(tokenizer) -> tuple[list[dict], list[list[int]], list[int]]:
    """The world-facts items, and for each (item, choice) the token ids of prompt + " " + choice and how
    many of them are the choice's (lm-eval's split: the context's own encoding, the rest is the choice)."""
    from evaluation.world_suites import facts_items

    items, seqs, n_cont = facts_items(0), [], []
    for item in items:
        ctx = tokenizer(item["prompt"], add_special_tokens=False)["input_ids"]
        for choice in item["choices"]:
            whole = tokenizer(item["prompt"] + " " + choice, add_special_tokens=False)["input_ids"]
            seqs.append(whole)
            n_cont.append(len(whole) - len(ctx))
    return items, seqs, n_cont


def accuracy(items: list[dict], scores: list[float]) -> float:
    """Share of items whose true choice has the largest log-likelihood (`scores` item by item, choice by choice)."""
    right, i = 0, 0
    for item in items:
        k = len(item["choices"])
        row = scores[i:i + k]
        right += max(range(k), key=row.__getitem__) == item["answer"]
        i += k
    return right / len(items)


def ppl_windows(tokenizer, block: int) -> list[list[int]]:
    """Held-out starter-corpus text (benchmarks/eval.py's documents, seed 123, not the training seed) as
    `perplexity` cuts it: one stream, windows of `block` tokens."""
    from benchmarks.eval import ppl_texts
    from evaluation.perplexity import _stream

    stream, _ = _stream(tokenizer, ppl_texts(tokenizer, block, n=400), PPL_TOKENS)
    return [w for w in (stream[i:i + block] for i in range(0, len(stream), block)) if len(w) > 1]


def _in_process(model, items, seqs, n_cont, windows) -> dict:
    """Accuracy and perplexity of a loaded model, from the same token ids the engine scores."""
    import torch

    def logprobs(ids: list[int]) -> list[float]:  # log P(token i | tokens < i), i >= 1
        x = torch.tensor([ids])
        lp = torch.log_softmax(model(input_ids=x).logits[0, :-1].float(), -1)
        return lp.gather(1, x[0, 1:, None])[:, 0].tolist()

    with torch.no_grad():
        scores = [sum(logprobs(s)[-n:]) for s, n in zip(seqs, n_cont)]
        nats = [logprobs(w) for w in windows]
    loss = -sum(map(sum, nats)) / sum(map(len, nats))
    return {"accuracy": accuracy(items, scores), "perplexity": math.exp(loss)}


def _served(path: Path, dtype: str, items, seqs, n_cont, windows, vocab: int, context: int) -> dict:
    """The same figures from a vLLM engine in a subprocess, plus its tokens/s."""
    import random

    rng = random.Random(0)
    spec = {"model": str(path), "dtype": dtype, "seqs": seqs + windows, "context": context,
            "gen": [[rng.randrange(4, vocab) for _ in range(8)] for _ in range(GEN_PROMPTS)]}
    with tempfile.TemporaryDirectory() as tmp:
        spec_file, out_file = Path(tmp) / "spec.json", Path(tmp) / "out.json"
        spec_file.write_text(json.dumps(spec))
        proc = subprocess.run([sys.executable, "-m", "benchmarks.quantize", "--vllm-worker", str(spec_file),
                               str(out_file)], check=False, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": os.environ.get("VLLM_CPU_KVCACHE_SPACE", "1")})
        if proc.returncode != 0 or not out_file.is_file():
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-1][-400:]
            return {"error": f"vLLM run failed (exit {proc.returncode}): {tail}"}
        out = json.loads(out_file.read_text())
    lps = out["logprobs"]
    scores = [sum(lp[-n:]) for lp, n in zip(lps[:len(seqs)], n_cont)]
    nats = lps[len(seqs):]
    loss = -sum(map(sum, nats)) / sum(map(len, nats))
    return {"accuracy": accuracy(items, scores), "perplexity": math.exp(loss), "tokens_per_s": out["tokens_per_s"],
            "engine_start_s": out["start_s"], "dtype": dtype}


def _vllm_worker(spec_file: str, out_file: str) -> None:
    from vllm import LLM, SamplingParams
    from vllm.inputs import TokensPrompt

    spec = json.loads(Path(spec_file).read_text())
    t = time.perf_counter()
    llm = LLM(model=spec["model"], dtype=spec["dtype"], enforce_eager=True, max_model_len=spec["context"],
              gpu_memory_utilization=0.3, seed=0)
    start_s = time.perf_counter() - t
    prompts = [TokensPrompt(prompt_token_ids=s) for s in spec["seqs"]]
    outs = llm.generate(prompts, SamplingParams(max_tokens=1, prompt_logprobs=0, temperature=0), use_tqdm=False)
    # prompt_logprobs[i] maps token ids to Logprob; the prompt's own token is always there (None for i = 0).
    logprobs = [[o.prompt_logprobs[i][tok].logprob for i, tok in enumerate(s) if i]
                for o, s in zip(outs, spec["seqs"])]
    gen = [TokensPrompt(prompt_token_ids=p) for p in spec["gen"]]
    params = SamplingParams(max_tokens=GEN_TOKENS, ignore_eos=True, temperature=0)
    llm.generate(gen[:2], params, use_tqdm=False)  # warm up
    t = time.perf_counter()
    outs = llm.generate(gen, params, use_tqdm=False)
    seconds = time.perf_counter() - t
    tokens = sum(len(o.outputs[0].token_ids) for o in outs)
    Path(out_file).write_text(json.dumps({"logprobs": logprobs, "tokens_per_s": round(tokens / seconds, 1),
                                          "start_s": round(start_s, 1)}))


def bench_quantize(*, model: str | None = None, prefix: str = "", workspace: Workspace | None = None,
                   say=print) -> dict:
    """Quantize `model` to int8 and int4 and measure both against it; the figures (also to reports/bench/quantize.json)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from benchmarks.report import emit
    from benchmarks.sft import machine
    from training.registry.quant_report import size_report
    from training.registry.quantize import METHODS, load_quantized, quantize

    ws = workspace or Workspace.resolve()
    model = model or "demo-align"
    src = ws.model(model)
    if not (src / "config.json").is_file():
        raise UserError(f"--model: no exported model {model!r} in {ws.models} (run `make demo` first)")
    torch.set_num_threads(max(1, len(os.sched_getaffinity(0))))
    tok = AutoTokenizer.from_pretrained(src)
    fp32 = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32).eval()
    context = min(getattr(fp32.config, "max_position_embeddings", None) or fp32.config.n_positions, 256)
    block = context - 1  # a window plus the one token the engine must generate fits the context
    items, seqs, n_cont = mc_sequences(tok)
    windows = ppl_windows(tok, block)
    say(f"{model}: {len(items)} world-facts items, {sum(map(len, windows))} held-out tokens in {len(windows)} windows")
    base = {"bytes": sum(p.stat().st_size for p in src.glob("*.safetensors")),
            "in_process": _in_process(fp32, items, seqs, n_cont, windows)}
    say(f"fp32 in-process: {base['in_process']}")
    base["vllm"] = _served(src, "float32", items, seqs, n_cont, windows, len(tok), context)
    say(f"fp32 vLLM: {base['vllm']}")
    figures: dict = {"model": model, "machine": machine(), "fp32": base, "variants": {}}
    for name, method in METHODS.items():
        out = ws.model(f"{prefix}{model}-{name}")
        t = time.perf_counter()
        facts = quantize(src, out, name)
        row = {"folder": out.name, "quantize_s": round(time.perf_counter() - t, 1), **size_report(src, out),
               "scheme": facts["scheme"], "format": facts["format"], "group_size": facts["group_size"],
               "serve_dtype": facts["serve_dtype"], "servable": facts["servable"],
               "servable_reason": facts["servable_reason"]}
        row["in_process"] = _in_process(load_quantized(out), items, seqs, n_cont, windows)
        say(f"{name}: {row['bytes']} bytes ({row['fp32_ratio']} of fp32); in-process {row['in_process']}")
        served = None
        if facts["servable"] and "error" not in base["vllm"]:  # against the fp32 model served in the same run
            served = _served(out, method.serve_dtype, items, seqs, n_cont, windows, len(tok), context)
        if served and "error" not in served:
            row["vllm"], row["measured_with"], now, before = served, "vllm", served, base["vllm"]
        else:
            row["vllm_error"] = (served["error"] if served else "not served: the fp32 baseline engine failed"
                                 if facts["servable"] else facts["servable_reason"])
            row["measured_with"], now, before = "transformers in-process (decompressed)", row["in_process"], base["in_process"]
        say(f"{name}: {row['measured_with']}: {now}")
        row |= {"served": row["measured_with"] == "vllm", "accuracy_before": before["accuracy"],
                "accuracy_after": now["accuracy"], "perplexity_before": before["perplexity"],
                "perplexity_after": now["perplexity"], "tokens_per_s": now.get("tokens_per_s"),
                "fp32_tokens_per_s": base["vllm"].get("tokens_per_s")}
        figures["variants"][name] = row
        figures |= {f"{name}_size_ratio": row["fp32_ratio"], f"{name}_served": row["served"],
                    f"{name}_accuracy_drop": round(before["accuracy"] - now["accuracy"], 4),
                    f"{name}_perplexity_ratio": round(now["perplexity"] / before["perplexity"], 4)}
    figures["goals"] = {k: {"goal": f"{op} {g}", "met": figures[k] <= g} for k, (op, g) in GOALS.items()}
    emit("quantize", figures)
    return figures


if __name__ == "__main__":
    if sys.argv[1:2] == ["--vllm-worker"]:
        _vllm_worker(sys.argv[2], sys.argv[3])
