"""`playground bench serve`: what does serving through Ray Serve cost, and what does vLLM buy?

One exported model, the same prompts and the same sampling, measured three ways, one
after the other (never two engines alive at once):

(c) `transformers`: `AutoModelForCausalLM.generate`, one request at a time. Its
    throughput does not depend on concurrency, so it is measured once: N sequential
    requests. Its TTFT is the time of a `generate` with max_new_tokens=1.
(b) the vLLM engine in this process: `AsyncLLM` (vLLM v1), c requests in flight at once
    from asyncio. TTFT is the first output that carries a token.
(a) the same engine behind Ray Serve (`services.app.build_llm_app`, our OpenAI app):
    c concurrent streaming HTTP requests to /v1/completions. TTFT is the first SSE
    chunk that carries a token.

Sampling is greedy (temperature 0) with `ignore_eos`, so every request generates exactly
`max_tokens` tokens in every way (HF: min_new_tokens = max_new_tokens). TTFT runs from
sending a request (prompt text, so tokenization included) to its first token; output
tokens/s is the total generated tokens of a level over the level's wall time. Load is
closed-loop: c clients, each sends its next request when the previous one finishes.
Each way gets one untimed warm-up request first.

Engine settings are those of configs/serve/local.yaml (`llm` application, `engine`
block: float32, enforce_eager, gpu_memory_utilization, VLLM_CPU_KVCACHE_SPACE) for (b)
and (a) alike, and (b) uses the multiprocessing executor that Ray Serve picks on CPU.

Threads, on purpose:
- HF: torch with 2 threads (`HF_THREADS`), all the cores of the 2-core box it was sized for.
- vLLM, (b) and (a): vLLM's own CPU default, VLLM_CPU_OMP_THREADS_BIND=auto (whatever the
  environment says is recorded in the figures). On a 2-core x86 box that is one OpenMP
  thread bound to core 0 for the model, with core 1 reserved for the engine's scheduler
  and the frontend. This is what `playground up` deploys, so it is what we measure;
  it leaves HF with twice vLLM's compute threads.

Ray Serve streams in batches: its LLM server forwards engine outputs every
RAYLLM_MODEL_RESPONSE_BATCH_TIMEOUT_MS (50 ms by default), which bounds how close the
Serve TTFT can come to the engine's; the interval in force is recorded in the figures.

Goals: Serve TTFT p50 <= 1.3 x engine TTFT p50 at concurrency 1, and Serve output
tokens/s at concurrency 16 >= 5 x HF's.

Importing this module does no work (vLLM builds its engine in a spawned subprocess).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import math
import os
import platform
import socket
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Awaitable, Callable, Optional

from training.errors import UserError
from training.workspace import PROJECT_ROOT, Workspace

BENCH_MODEL_ID = "bench-micro"
MICRO_CONFIG = PROJECT_ROOT / "configs" / "pretrain" / "micro.yaml"
SERVE_CONFIG = PROJECT_ROOT / "configs" / "serve" / "local.yaml"
HF_THREADS = 2
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
WAYS = {"hf": "transformers .generate", "engine": "vLLM AsyncLLM in-process", "serve": "Ray Serve HTTP (SSE)"}


# --------------------------------------------------------------------------- pure helpers


def parse_levels(text: str) -> list[int]:
    """'1,4,16' -> [1, 4, 16] (sorted, unique, each >= 1)."""
    try:
        levels = sorted({int(x) for x in str(text).split(",") if x.strip()})
    except ValueError:
        raise UserError(f"--levels must be comma-separated integers, got {text!r}") from None
    if not levels or levels[0] < 1:
        raise UserError(f"--levels must be integers >= 1, got {text!r}")
    return levels


def requests_for(concurrency: int, requests_per_level: Optional[int] = None) -> int:
    """Requests at one level: max(4, 2c) by default, and never fewer than c."""
    n = requests_per_level if requests_per_level else max(4, 2 * concurrency)
    return max(n, concurrency)


def prompt_list(n: int) -> list[str]:
    """The first n benchmark prompts (cycling): the same list for every way."""
    return [PROMPTS[i % len(PROMPTS)] for i in range(n)]


def percentile(values, q: float) -> Optional[float]:
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


def ratio(num: Optional[float], den: Optional[float], digits: int = 3) -> Optional[float]:
    if num is None or den is None or den == 0:
        return None
    return round(num / den, digits)


def assemble_figures(ways: dict[str, dict[str, dict]], *, model: str, max_tokens: int, levels: list[int],
                     host: str, extra: Optional[dict] = None) -> dict:
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
        **(extra or {}),
        "host": host,
    }


def verdict(value: Optional[float], goal: float, at_most: bool) -> str:
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
    for w in f.get("warnings") or []:
        print(f"warning: {w}")
    print()


# --------------------------------------------------------------------------- load generation


async def run_level(send: Callable[[str], Awaitable[Sample]], prompts: list[str], concurrency: int) -> Level:
    """Closed loop: `concurrency` clients share the prompts; each sends its next request
    when its previous one finishes. Wall time runs from the first send to the last token."""
    results: list[Optional[Sample]] = [None] * len(prompts)
    todo = iter(range(len(prompts)))  # shared by the clients (one event loop: no races)

    async def client():
        for i in todo:
            results[i] = await send(prompts[i])

    t0 = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(min(concurrency, len(prompts)))))
    return Level(concurrency, [s for s in results if s is not None], time.perf_counter() - t0)


async def run_levels(send, levels: list[int], requests_per_level: Optional[int], progress: str) -> dict[str, dict]:
    out = {}
    for c in levels:
        level = await run_level(send, prompt_list(requests_for(c, requests_per_level)), c)
        out[str(c)] = level_figures(level)
        lv = out[str(c)]
        print(f"  {progress} c={c}: {lv['requests']} requests, TTFT p50 {lv['ttft_p50_ms']} ms, "
              f"{lv['output_tokens_per_s']} tok/s", flush=True)
    return out


# --------------------------------------------------------------------------- the model


def resolve_model(ws: Workspace, model: Optional[str]) -> tuple[str, Path]:
    """(served model id, folder) of --model, or of the bench model made on first use."""
    if model is None:
        return BENCH_MODEL_ID, ensure_bench_model(ws)
    if (ws.model(model) / "config.json").is_file():
        return model, ws.model(model)
    local = Path(model).expanduser()
    if (local / "config.json").is_file():
        return local.resolve().name, local.resolve()
    raise UserError(f"--model {model}: no exported model {ws.model(model)} (nor a local Hugging Face folder); "
                    f"see `playground export`")


def ensure_bench_model(ws: Workspace) -> Path:
    """A randomly initialised micro model exported to workspace/models/bench-micro (made once).

    The benchmark measures the serving path, not the prose, so the weights need no
    training; the tokenizer is the micro config's (trained on first use).
    """
    out = ws.model(BENCH_MODEL_ID)
    if (out / "config.json").is_file():
        return out
    import torch

    from training.config import load_config
    from training.export import export_hf
    from training.model import Transformer
    from training.prepare import ensure_inputs

    cfg = load_config(MICRO_CONFIG)
    print(f"making {BENCH_MODEL_ID}: a random-init micro model with its tokenizer ...", flush=True)
    inputs = ensure_inputs(cfg, ws, progress=True)
    torch.manual_seed(0)
    info = {"run_id": None, "step": 0, "val_loss": None, "config": cfg.model_dump(mode="json"),
            "note": "random weights, made by `playground bench serve`"}
    return export_hf(Transformer(cfg.model), out, tokenizer_dir=inputs.tokenizer_dir,
                     extra_files={"playground.json": json.dumps(info, indent=2)})


def serve_engine_args() -> dict:
    """The `engine` block of the llm application in configs/serve/local.yaml, validated."""
    import yaml

    from services.schemas import EngineArgs

    config = yaml.safe_load(SERVE_CONFIG.read_text())
    app = next(a for a in config["applications"] if a["name"] == "llm")
    return EngineArgs.model_validate(app["args"].get("engine") or {}).model_dump()


@contextmanager
def env(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


# --------------------------------------------------------------------------- (c) transformers


def measure_hf(path: Path, max_tokens: int, n: int, threads: int = HF_THREADS) -> tuple[dict, list[int], dict]:
    """HF figures {"seq": ...}, the warm-up's greedy tokens, and model facts."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        tok = AutoTokenizer.from_pretrained(str(path))
        model = AutoModelForCausalLM.from_pretrained(str(path), dtype=torch.float32).eval()
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id

        def generate(prompt: str, new: int) -> list[int]:
            enc = tok(prompt, return_tensors="pt")
            with torch.inference_mode():
                out = model.generate(**enc, max_new_tokens=new, min_new_tokens=new, do_sample=False,
                                     pad_token_id=pad)
            return out[0, enc["input_ids"].shape[1]:].tolist()

        prompts = prompt_list(n)
        facts = {"params": model.num_parameters(), "arch": model.config.model_type,
                 "context": getattr(model.config, "n_positions", None) or model.config.max_position_embeddings,
                 "prompt_tokens_max": max(len(tok(p)["input_ids"]) for p in PROMPTS)}
        if facts["prompt_tokens_max"] + max_tokens > facts["context"]:
            raise UserError(f"--max-tokens {max_tokens} plus a {facts['prompt_tokens_max']}-token prompt exceed the "
                            f"model's context of {facts['context']} tokens")
        warm = generate(PROMPTS[0], max_tokens)
        ttfts = []
        for p in prompts:
            t = time.perf_counter()
            generate(p, 1)
            ttfts.append(time.perf_counter() - t)
        samples, t0 = [], time.perf_counter()
        for p in prompts:
            samples.append(Sample(0.0, len(generate(p, max_tokens))))
        wall = time.perf_counter() - t0
        for s, t in zip(samples, ttfts):
            s.ttft_s = t
        figures = level_figures(Level(1, samples, wall))
        figures["concurrency"] = "sequential"
        return {"seq": figures}, warm, facts
    finally:
        torch.set_num_threads(before)


# --------------------------------------------------------------------------- (b) the vLLM engine


async def _measure_engine(path: Path, engine: dict, max_tokens: int, levels: list[int],
                          requests_per_level: Optional[int]) -> tuple[dict, list[int]]:
    from vllm import AsyncEngineArgs, SamplingParams
    from vllm.sampling_params import RequestOutputKind
    from vllm.v1.engine.async_llm import AsyncLLM

    try:  # how vLLM's own OpenAI server turns a prompt into engine input (0.32)
        from vllm.renderers.inputs.preprocess import parse_model_prompt
    except ImportError:  # pragma: no cover - other vLLM versions: raw prompts still work
        parse_model_prompt = None

    args = AsyncEngineArgs(
        model=str(path), dtype=engine["dtype"], enforce_eager=engine["enforce_eager"],
        gpu_memory_utilization=engine["gpu_memory_utilization"],
        # Ray Serve LLM runs the CPU engine with the multiprocessing executor; do the same.
        distributed_executor_backend="mp",
        **({"max_model_len": engine["max_model_len"]} if engine.get("max_model_len") else {}),
    )

    class Engine(AsyncLLM):
        # We shut it down explicitly below. vLLM's __del__ shuts down again, and when the
        # object lives until interpreter exit that second call fails on torn-down globals.
        def __del__(self):
            pass

    llm = Engine.from_engine_args(args)
    try:
        params = SamplingParams(temperature=0.0, max_tokens=max_tokens, ignore_eos=True,
                                output_kind=RequestOutputKind.DELTA)
        ids = itertools.count()
        last_tokens: list[int] = []

        async def send(prompt: str) -> Sample:
            t0 = time.perf_counter()
            ttft, n, tokens = None, 0, []
            request = prompt
            if parse_model_prompt is not None:
                (request,) = await llm.renderer.render_cmpl_async([parse_model_prompt(llm.model_config, prompt)])
            async for out in llm.generate(request, params, request_id=f"bench-{next(ids)}"):
                new = list(out.outputs[0].token_ids)
                if new and ttft is None:
                    ttft = time.perf_counter() - t0
                n += len(new)
                tokens += new
            last_tokens[:] = tokens
            return Sample(ttft if ttft is not None else time.perf_counter() - t0, n)

        await send(PROMPTS[0])
        warm = list(last_tokens)
        return await run_levels(send, levels, requests_per_level, "engine"), warm
    finally:
        llm.shutdown()


def measure_engine(path: Path, engine: dict, max_tokens: int, levels: list[int],
                   requests_per_level: Optional[int]) -> tuple[dict, list[int]]:
    with env(VLLM_CPU_KVCACHE_SPACE=str(int(engine["kv_cache_gib"]))):
        result = asyncio.run(_measure_engine(path, engine, max_tokens, levels, requests_per_level))
    gc.collect()
    return result


# --------------------------------------------------------------------------- (a) Ray Serve


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def completion_body(model_id: str, prompt: str, max_tokens: int) -> dict:
    return {"model": model_id, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "ignore_eos": True, "return_token_ids": True, "stream_options": {"include_usage": True}}


async def _measure_http(base: str, model_id: str, max_tokens: int, levels: list[int],
                        requests_per_level: Optional[int]) -> tuple[dict, list[int]]:
    import httpx

    url = f"{base}/v1/completions"
    limits = httpx.Limits(max_connections=max(levels) + 4, max_keepalive_connections=max(levels) + 4)
    last_tokens: list[int] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(600.0), limits=limits, trust_env=False) as client:

        async def send(prompt: str) -> Sample:
            t0 = time.perf_counter()
            ttft, n, usage, tokens = None, 0, None, []
            async with client.stream("POST", url, json=completion_body(model_id, prompt, max_tokens)) as r:
                if r.status_code != 200:
                    raise RuntimeError(f"POST {url}: HTTP {r.status_code}: {(await r.aread())[:300]!r}")
                async for line in r.aiter_lines():
                    event = parse_sse_line(line)
                    if event is None:
                        continue
                    if event is DONE:
                        break
                    k, carries = chunk_tokens(event)
                    if carries and ttft is None:
                        ttft = time.perf_counter() - t0
                    n += k
                    for choice in event.get("choices") or []:
                        tokens += choice.get("token_ids") or []
                    usage = event.get("usage") or usage
            last_tokens[:] = tokens
            if usage and usage.get("completion_tokens") is not None:
                n = usage["completion_tokens"]
            return Sample(ttft if ttft is not None else time.perf_counter() - t0, n)

        # Untimed warm-up; retried while the proxy learns the new routes.
        deadline = time.time() + 120
        while True:
            try:
                await send(PROMPTS[0])
                break
            except (httpx.HTTPError, RuntimeError):
                if time.time() > deadline:
                    raise
                await asyncio.sleep(1)
        warm = list(last_tokens)
        return await run_levels(send, levels, requests_per_level, "serve"), warm


def measure_serve(ws: Workspace, model_ref: str, model_id: str, engine: dict, max_tokens: int, levels: list[int],
                  requests_per_level: Optional[int]) -> tuple[dict, list[int]]:
    import ray
    from ray import serve

    from services.app import build_llm_app

    port = free_port()
    # address="local": always a fresh cluster of our own, never one someone else started.
    ray.init(address="local", num_cpus=8, include_dashboard=False, log_to_driver=False)
    try:
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        app = build_llm_app({"models": [model_ref], "workspace": str(ws.root), "engine": engine})
        serve.run(app, name="llm", route_prefix="/")
        return asyncio.run(_measure_http(f"http://127.0.0.1:{port}", model_id, max_tokens, levels,
                                         requests_per_level))
    finally:
        try:
            serve.shutdown()
        finally:
            ray.shutdown()


# --------------------------------------------------------------------------- the benchmark


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def bench_serve(model: Optional[str] = None, max_tokens: int = 64, levels="1,4,16",
                requests_per_level: Optional[int] = None, workspace: Optional[Workspace] = None) -> dict:
    levels = parse_levels(levels if isinstance(levels, str) else ",".join(map(str, levels)))
    if max_tokens < 1:
        raise UserError("--max-tokens must be >= 1")
    if requests_per_level is not None and requests_per_level < 1:
        raise UserError("--requests-per-level must be >= 1")
    import ray
    import torch
    import vllm

    from training.bench import emit

    ws = workspace or Workspace.resolve()
    model_id, path = resolve_model(ws, model)
    model_ref = model_id if path == ws.model(model_id) else str(path)
    engine = serve_engine_args()
    n_hf = requests_per_level or 4

    print(f"bench serve: {model_id} at {path}; {max_tokens} tokens per request; levels {levels}; "
          f"HF {n_hf} sequential requests", flush=True)
    print("(c) transformers .generate ...", flush=True)
    hf, hf_warm, facts = measure_hf(path, max_tokens, n_hf)
    gc.collect()  # the HF model goes before an engine starts
    print(f"  hf: TTFT p50 {hf['seq']['ttft_p50_ms']} ms, {hf['seq']['output_tokens_per_s']} tok/s", flush=True)
    print("(b) vLLM engine in-process ...", flush=True)
    eng, eng_warm = measure_engine(path, engine, max_tokens, levels, requests_per_level)
    print("(a) Ray Serve HTTP ...", flush=True)
    srv, srv_warm = measure_serve(ws, model_ref, model_id, engine, max_tokens, levels, requests_per_level)

    ways = {"hf": hf, "engine": eng, "serve": srv}
    warnings = [f"{way} c={c}: {lv['output_tokens']} tokens, expected {lv['requests'] * max_tokens}"
                for way, per in ways.items() for c, lv in per.items()
                if lv["output_tokens"] != lv["requests"] * max_tokens]
    try:
        from ray.llm._internal.serve.constants import MODEL_RESPONSE_BATCH_TIMEOUT_MS as batch_ms
    except ImportError:  # pragma: no cover
        batch_ms = None
    extra = {
        "model_path": str(path),
        "params": facts["params"],
        "prompt_tokens_max": facts["prompt_tokens_max"],
        "requests_per_level": {str(c): requests_for(c, requests_per_level) for c in levels},
        "hf_requests": n_hf,
        "threads": {"hf": f"torch {HF_THREADS} threads",
                    "vllm": f"VLLM_CPU_OMP_THREADS_BIND={os.environ.get('VLLM_CPU_OMP_THREADS_BIND', 'auto')}"},
        "engine": engine,
        "serve_stream_batching_ms": batch_ms,
        # Leading greedy tokens of the warm-up prompt that agree (same weights, same argmax).
        "greedy_agreement": {"engine_vs_hf": common_prefix(eng_warm, hf_warm),
                             "serve_vs_engine": common_prefix(srv_warm, eng_warm), "of": max_tokens},
        "warnings": warnings,
    }
    host = (f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}, vllm {vllm.__version__}, "
            f"ray {ray.__version__}")
    figures = assemble_figures(ways, model=f"{model_id} ({facts['arch']}, {facts['params'] / 1e6:.1f}M params)",
                               max_tokens=max_tokens, levels=levels, host=host, extra=extra)
    print_table(figures)
    emit("serve", figures)
    return figures
