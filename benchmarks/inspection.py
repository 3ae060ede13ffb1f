"""`playground bench inspect`: how long does one full inspection take on this CPU?

Times `training.model.inspection.inspect_prompt` (one forward pass with every hook, attention
probabilities of every head, the logit lens at every layer, head labels, the JSON-ready
lists) for prompts of 64 and 256 tokens on two shapes:

* micro      - configs/pretrain/micro.yaml's model (10M parameters, vocab 8192);
* gpt2-small - GPT-2 small (124M parameters, vocab 50257).

Weights are random (built here, nothing is downloaded): the work per token does not
depend on what the weights are. The tokenizer is a stand-in that reads ids written as
text ("17 4031 ..."), so the figures are the model side only; decoding a few thousand
distinct ids with a real fast tokenizer adds a few milliseconds. Each figure is the best
of `repeats` runs after one warm-up run; the medians are reported too.

Goal: micro with 64 tokens under 500 ms (what the inspection page needs to feel instant).
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time

import torch

from benchmarks.report import emit
from training.model.configurator import model_config
from training.model.inspection import inspect_prompt
from training.model.transformer import Transformer

GOAL_MS = 500.0
SHAPES = {"micro": "micro", "gpt2_small": "gpt2-small"}  # figure name -> preset (or config dict)
LENGTHS = (64, 256)


class IdTokenizer:
    """A stand-in tokenizer: the text is the token ids separated by spaces."""

    def encode(self, text: str) -> list[int]:
        return [int(word) for word in text.split()]

    def decode(self, ids: list[int]) -> str:
        return "".join(f"<{i}>" for i in ids)


def time_inspection(model: Transformer, n_tokens: int, repeats: int, top_k: int = 5) -> dict:
    """Best and median wall-clock of `inspect_prompt` on a random prompt of n_tokens."""
    gen = torch.Generator().manual_seed(n_tokens)
    ids = torch.randint(0, model.config.vocab_size, (n_tokens,), generator=gen).tolist()
    text = " ".join(map(str, ids))
    tok = IdTokenizer()
    inspect_prompt(model, tok, text, top_k=top_k)  # warm-up: first-call allocations
    totals, forwards = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = inspect_prompt(model, tok, text, top_k=top_k)
        totals.append(1000 * (time.perf_counter() - t0))
        forwards.append(result["timings_ms"]["forward"])
    return {"best_ms": min(totals), "median_ms": statistics.median(totals),
            "forward_best_ms": min(forwards), "json_mb": len(json.dumps(result)) / 1e6}


def bench_inspect(repeats: int = 5, threads: int | None = None) -> dict:
    """Run the benchmark, print a table, save reports/bench/inspect.json and return it."""
    if threads is not None:
        torch.set_num_threads(threads)
    figures: dict = {"bench": "inspect", "repeats": repeats, "threads": torch.get_num_threads()}
    details: dict = {}
    for name, spec in SHAPES.items():
        torch.manual_seed(0)
        model = Transformer(model_config(spec)).eval()
        n_params = sum(p.numel() for p in model.parameters())
        print(f"{name}: {n_params / 1e6:.1f}M parameters, random weights", flush=True)
        for n in LENGTHS:
            r = time_inspection(model, n, repeats)
            key = f"ms_{n}_tokens_{name}"
            figures[key] = round(r["best_ms"], 1)
            details[key] = {k: round(v, 2) for k, v in r.items()}
            print(f"  {n:>4} tokens: best {r['best_ms']:8.1f} ms  median {r['median_ms']:8.1f} ms  "
                  f"(forward {r['forward_best_ms']:.1f} ms, JSON {r['json_mb']:.2f} MB)", flush=True)
        del model
    figures["goal"] = f"micro, 64 tokens < {GOAL_MS:.0f} ms"
    figures["goal_met"] = figures["ms_64_tokens_micro"] < GOAL_MS
    figures["details"] = details
    figures["host"] = f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}"
    print(f"goal ({figures['goal']}): {'met' if figures['goal_met'] else 'NOT met'}")
    emit("inspect", figures)
    return figures
