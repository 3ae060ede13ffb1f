"""The pure parts of `playground bench serve`: levels, percentiles, SSE parsing, the figures
and their table. No engine, no network: unit-tested in tests/unit/test_bench_serve.py."""
from __future__ import annotations

import asyncio
import json
import math
import statistics
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from training.errors import UserError

TTFT_GOAL = 1.3          # Serve TTFT p50 / engine TTFT p50 at c=1, at most
THROUGHPUT_GOAL = 5.0    # Serve tokens/s at c=16 / HF tokens/s, at least
GOAL_LEVEL = 16

PROMPTS = (
    "Once upon a time, in a small village by the sea,",
    "The old man looked at the sky and said",
    "In the morning the children went to the market to buy",
    "She opened the door slowly and saw",
    "The king called his advisers and asked them",
    "After the long rain, the river was",
    "My favourite thing about the summer is",
    "The little robot wanted to learn how to",
)
WAYS = {"hf": "transformers .generate", "engine": "vLLM AsyncLLM in-process",
        "vllm_http": "vLLM's own server (no Ray)", "serve": "Ray Serve HTTP (SSE)"}


def parse_levels(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16] (sorted, unique, each >= 1)."""
    try:
        levels = sorted({int(x) for x in str(text).split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--levels must be comma-separated integers, got {text!r}") from None
    if not levels or levels[0] < 1:
        raise UserError(f"--levels must be integers >= 1, got {text!r}")
    return levels


def requests_for(concurrency: int, requests_per_level: int | None = None) -> int:
    """Requests at one level: max(32, 4c) by default, never fewer than c.

    32 TTFTs give a stable p50; 4c keeps the c clients busy for four rounds, so the
    ramp-up and the tail (fewer than c requests in flight) weigh little in tokens/s.
    """
    n = requests_per_level if requests_per_level else max(32, 4 * concurrency)
    return max(n, concurrency)


def prompt_list(n: int) -> list[str]:
    """The first n benchmark prompts (cycling): the same list for every way."""
    return [PROMPTS[i % len(PROMPTS)] for i in range(n)]


def percentile(values, q: float) -> float | None:
    """The q-th percentile (0..100) with linear interpolation (numpy's default); None if empty."""
    xs = sorted(values)
    if not xs:
        return None
    k = (len(xs) - 1) * q / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


DONE = object()  # the `data: [DONE]` event


def parse_sse_line(line: str):
    """One line of an OpenAI SSE stream: its JSON payload, DONE, or None (blank/comment/other field)."""
    line = line.strip()
    if not line.startswith("data:"):
        return None
    data = line[len("data:"):].strip()
    if not data:
        return None
    if data == "[DONE]":
        return DONE
    return json.loads(data)


def chunk_tokens(chunk: dict) -> tuple[int, bool]:
    """(tokens, carries_output) of one /v1/completions stream chunk.

    Tokens are counted from `token_ids` (asked for with return_token_ids); a chunk
    carries output when it has token ids or text. Usage-only chunks carry none.
    """
    if chunk.get("error"):
        err = chunk["error"]
        raise RuntimeError(f"server error in stream: {err.get('message', err) if isinstance(err, dict) else err}")
    tokens, carries = 0, False
    for choice in chunk.get("choices") or []:
        ids = choice.get("token_ids") or []
        tokens += len(ids)
        carries = carries or bool(ids) or bool(choice.get("text"))
    return tokens, carries


@dataclass
class Sample:
    """One request: seconds to its first token, and how many tokens it generated."""

    ttft_s: float
    tokens: int


@dataclass
class Level:
    concurrency: int
    samples: list[Sample]
    wall_s: float


def level_figures(level: Level) -> dict:
    """TTFT p50/p95 in ms and output tokens/s (all tokens of the level / its wall time)."""
    ttfts = [1000.0 * s.ttft_s for s in level.samples]
    tokens = sum(s.tokens for s in level.samples)
    r = lambda x: None if x is None else round(x, 2)  # noqa: E731
    return {
        "concurrency": level.concurrency,
        "requests": len(level.samples),
        "output_tokens": tokens,
        "wall_s": round(level.wall_s, 3),
        "ttft_p50_ms": r(percentile(ttfts, 50)),
        "ttft_p95_ms": r(percentile(ttfts, 95)),
        "output_tokens_per_s": round(tokens / level.wall_s, 2) if level.wall_s > 0 else None,
    }


MEDIAN_FIGURES = ("wall_s", "ttft_p50_ms", "ttft_p95_ms", "output_tokens_per_s")


def median_ways(rounds: list[dict[str, dict[str, dict]]]) -> dict[str, dict[str, dict]]:
    """Several rounds of `ways` folded into one: each timing is its median over the rounds.

    The box drifts between runs (other tenants, turbo, the page cache), so a single round
    can land on a good or a bad minute for one way and not the other. Rounds run the ways
    one after the other, round after round, and the median of each figure is what the
    ratios are taken from. Counts (requests, output tokens) are the first round's.

    >>> r = lambda t: {"serve": {"1": {"requests": 2, "ttft_p50_ms": t, "output_tokens_per_s": None}}}
    >>> median_ways([r(10.0), r(30.0), r(12.0)])["serve"]["1"]
    {'requests': 2, 'ttft_p50_ms': 12.0, 'output_tokens_per_s': None}
    """
    def fold(key: str, values: list) -> object:
        if key not in MEDIAN_FIGURES or any(v is None for v in values):
            return values[0]
        return round(statistics.median(values), 3 if key == "wall_s" else 2)

    return {way: {level: {k: fold(k, [r[way][level][k] for r in rounds]) for k in first}
                  for level, first in per.items()}
            for way, per in rounds[0].items()}


GOAL_RATIOS = ("ttft_ratio_serve_vs_engine", f"throughput_ratio_serve_vs_hf_c{GOAL_LEVEL}")


def ratio(num: float | None, den: float | None, digits: int = 3) -> float | None:
    if num is None or den is None or den == 0:
        return None
    return round(num / den, digits)


def assemble_figures(ways: dict[str, dict[str, dict]], *, model: str, max_tokens: int, levels: list[int],
                     host: str, extra: dict | None = None) -> dict:
    """The JSON figures: per way and level, the two goal ratios and per-level ratios.

    `ways` maps "hf" -> {"seq": level figures} and "engine"/"serve" -> {"c": level figures}.
    A ratio is None when its level was not measured (e.g. --levels without 1 or 16).
    """
    hf_tps = ways.get("hf", {}).get("seq", {}).get("output_tokens_per_s")
    eng, srv = ways.get("engine", {}), ways.get("serve", {})
    get = lambda way, c, k: way.get(str(c), {}).get(k)  # noqa: E731
    return {
        "bench": "serve",
        "model": model,
        "max_tokens": max_tokens,
        "levels": levels,
        "ways": ways,
        "ttft_ratio_serve_vs_engine": ratio(get(srv, 1, "ttft_p50_ms"), get(eng, 1, "ttft_p50_ms")),
        "ttft_ratio_goal": f"<= {TTFT_GOAL}",
        f"throughput_ratio_serve_vs_hf_c{GOAL_LEVEL}": ratio(get(srv, GOAL_LEVEL, "output_tokens_per_s"), hf_tps),
        "throughput_ratio_goal": f">= {THROUGHPUT_GOAL:g}",
        "throughput_ratio_serve_vs_hf": {str(c): ratio(get(srv, c, "output_tokens_per_s"), hf_tps) for c in levels},
        "throughput_ratio_serve_vs_engine": {str(c): ratio(get(srv, c, "output_tokens_per_s"),
                                                           get(eng, c, "output_tokens_per_s")) for c in levels},
        # The floor of any HTTP path on this machine: vLLM's own OpenAI server, no Ray.
        "ttft_ratio_vllm_http_vs_engine": ratio(get(ways.get("vllm_http", {}), 1, "ttft_p50_ms"),
                                                get(eng, 1, "ttft_p50_ms")),
        "ttft_ratio_serve_vs_vllm_http": ratio(get(srv, 1, "ttft_p50_ms"),
                                               get(ways.get("vllm_http", {}), 1, "ttft_p50_ms")),
        **(extra or {}),
        "host": host,
    }


def verdict(value: float | None, goal: float, at_most: bool) -> str:
    if value is None:
        return "not measured"
    ok = value <= goal if at_most else value >= goal
    return "meets the goal" if ok else "misses the goal"


def print_table(f: dict) -> None:
    print(f"\n{f['model']}, {f['max_tokens']} output tokens per request, greedy, ignore_eos")
    print(f"{'way':<28}{'conc':>6}{'reqs':>6}{'TTFT p50 ms':>13}{'TTFT p95 ms':>13}{'out tok/s':>11}")
    fmt = lambda x, spec: "-" if x is None else format(x, spec)  # noqa: E731
    for way, label in WAYS.items():
        for key, lv in f["ways"].get(way, {}).items():
            conc = "seq" if key == "seq" else key
            print(f"{label:<28}{conc:>6}{lv['requests']:>6}{fmt(lv['ttft_p50_ms'], ',.1f'):>13}"
                  f"{fmt(lv['ttft_p95_ms'], ',.1f'):>13}{fmt(lv['output_tokens_per_s'], ',.1f'):>11}")
            label = ""
    print("(transformers serves one request at a time: measured once, sequentially, whatever the level)")
    t = f["ttft_ratio_serve_vs_engine"]
    print(f"ttft_ratio_serve_vs_engine = {fmt(t, '.3f')} (Serve / engine TTFT p50 at c=1; goal <= {TTFT_GOAL}: "
          f"{verdict(t, TTFT_GOAL, True)})")
    r = f[f"throughput_ratio_serve_vs_hf_c{GOAL_LEVEL}"]
    print(f"throughput_ratio_serve_vs_hf_c{GOAL_LEVEL} = {fmt(r, '.2f')} (Serve tok/s at c={GOAL_LEVEL} / HF tok/s; "
          f"goal >= {THROUGHPUT_GOAL:g}: {verdict(r, THROUGHPUT_GOAL, False)})")
    per = ", ".join(f"c={c}: {fmt(v, '.2f')}" for c, v in f["throughput_ratio_serve_vs_hf"].items())
    print(f"Serve / HF tok/s by level: {per}")
    per = ", ".join(f"c={c}: {fmt(v, '.2f')}" for c, v in f["throughput_ratio_serve_vs_engine"].items())
    print(f"Serve / engine tok/s by level: {per}")
    if f.get("ttft_ratio_vllm_http_vs_engine") is not None:
        print(f"TTFT p50 at c=1: vLLM's own server / engine = {fmt(f['ttft_ratio_vllm_http_vs_engine'], '.3f')}, "
              f"Serve / vLLM's own server = {fmt(f.get('ttft_ratio_serve_vs_vllm_http'), '.3f')}")
    if (f.get("rounds") or 1) > 1:
        for key, values in f["per_round"].items():
            print(f"{key} by round: {', '.join(fmt(v, '.3f') for v in values)} (the figures above are medians)")
    for w in f.get("warnings") or []:
        print(f"warning: {w}")
    print()


# --------------------------------------------------------------------------- load generation


async def run_level(send: Callable[[str], Awaitable[Sample]], prompts: list[str], concurrency: int) -> Level:
    """Closed loop: `concurrency` clients share the prompts; each sends its next request
    when its previous one finishes. Wall time runs from the first send to the last token."""
    results: list[Sample | None] = [None] * len(prompts)
    todo = iter(range(len(prompts)))  # shared by the clients (one event loop: no races)

    async def client():
        for i in todo:
            results[i] = await send(prompts[i])

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, len(prompts)))))
    return Level(concurrency, [s for s in results if s is not None], time.perf_counter() - t0)


async def run_levels(send, levels: list[int], requests_per_level: int | None, progress: str) -> dict[str, dict]:
    out = {}
    for c in levels:
        level = await run_level(send, prompt_list(requests_for(c, requests_per_level)), c)
        out[str(c)] = level_figures(level)
        lv = out[str(c)]
        print(f"  {progress} c={c}: {lv['requests']} requests, TTFT p50 {lv['ttft_p50_ms']} ms, "
              f"{lv['output_tokens_per_s']} tok/s", flush=True)
    return out
