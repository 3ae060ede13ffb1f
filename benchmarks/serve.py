"""`playground bench serve`: what does serving through Ray Serve cost, and what does vLLM buy?

One exported model, the same prompts and the same sampling, measured three ways, one
after the other (never two engines alive at once):

(c) `transformers`: `AutoModelForCausalLM.generate`, one request at a time. Its
    throughput does not depend on concurrency, so it is measured once: N sequential
    requests. Its TTFT is the time of a `generate` with max_new_tokens=1.
(b) the vLLM engine in this process: `AsyncLLM` (vLLM v1), c requests in flight at once
    from asyncio. TTFT is the first output that carries a token.
(d) vLLM's own OpenAI server (`vllm.entrypoints.openai.api_server`, what `vllm serve`
    runs), no Ray, same engine settings, same HTTP client as (a) (httpx, one keep-alive
    connection per client): the floor of any HTTP path here, which splits (a)'s distance
    from (b) into "HTTP + OpenAI layer" and "Ray".
(a) the same engine behind Ray Serve (`services.app.build_llm_app`, our OpenAI app,
    in a fresh local cluster with the environment of `services/serve_env.py`, as
    `playground up` runs it: HAProxy on the port, the vLLM replica as the ingress):
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

With one model, vLLM's own OpenAI routes answer inside the replica, so Ray's stream
batching (`stream_batching_ms`, for the several-model layout) is not on this path.

Goals: Serve TTFT p50 <= 1.3 x engine TTFT p50 at concurrency 1, and Serve output
tokens/s at concurrency 16 >= 5 x HF's.

This 2-core box drifts by tens of percent between minutes, so one pass can catch one way
on a good minute and the next on a bad one. `--rounds N` runs the four ways N times,
round after round; each figure is then its median over the rounds (`median_ways`), and
the JSON keeps each round's goal ratios under `per_round`.

Importing this module does no work (vLLM builds its engine in a spawned subprocess).
"""

from __future__ import annotations

import asyncio
import gc
import itertools
import json
import os
import platform
import time
from pathlib import Path

from benchmarks.serve_http import env, measure_serve, measure_vllm_http, reap_children
from benchmarks.serve_stats import (
    GOAL_RATIOS,
    PROMPTS,
    Level,
    Sample,
    assemble_figures,
    level_figures,
    median_ways,
    parse_levels,
    print_table,
    prompt_list,
    requests_for,
    run_levels,
)
from training.errors import UserError
from training.workspace import PROJECT_ROOT, Workspace

BENCH_MODEL_ID = "bench-micro"
MICRO_CONFIG = PROJECT_ROOT / "configs" / "pretrain" / "micro.yaml"
SERVE_CONFIG = PROJECT_ROOT / "configs" / "serve" / "local.yaml"
HF_THREADS = 2
HF_REQUESTS = 8  # sequential requests for transformers' figures (its rate does not depend on c)


# --------------------------------------------------------------------------- the model


def resolve_model(ws: Workspace, model: str | None) -> tuple[str, Path]:
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
    from training.model.export import export_hf
    from training.model.transformer import Transformer
    from training.pretrain.inputs import ensure_inputs

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
                          requests_per_level: int | None, engine_procs: list) -> tuple[dict, list[int]]:
    import psutil
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
        # The engine's processes, grandchildren included: when vLLM kills its EngineCore the
        # worker below it is orphaned, and a child list taken after shutdown misses it.
        engine_procs[:] = psutil.Process().children(recursive=True)
        llm.shutdown()


def measure_engine(path: Path, engine: dict, max_tokens: int, levels: list[int],
                   requests_per_level: int | None) -> tuple[dict, list[int]]:
    procs: list = []
    # vLLM edits this process's environment while it builds an engine (LD_PRELOAD,
    # LOCAL_WORLD_SIZE, VLLM_WORKER_MULTIPROC_METHOD, ...); put it back, so the servers of
    # (d) and (a) start from the environment a user's shell would give them.
    saved = dict(os.environ)
    try:
        with env(VLLM_CPU_KVCACHE_SPACE=str(int(engine["kv_cache_gib"]))):
            result = asyncio.run(_measure_engine(path, engine, max_tokens, levels, requests_per_level, procs))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    gc.collect()
    reap_children(procs)
    return result


# --------------------------------------------------------------------------- the benchmark


def common_prefix(a: list[int], b: list[int]) -> int:
    return next((i for i, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))


def bench_serve(model: str | None = None, max_tokens: int = 64, levels="1,4,16",
                requests_per_level: int | None = None, rounds: int = 1,
                workspace: Workspace | None = None) -> dict:
    levels = parse_levels(levels if isinstance(levels, str) else ",".join(map(str, levels)))
    if max_tokens < 1:
        raise UserError("--max-tokens must be >= 1")
    if requests_per_level is not None and requests_per_level < 1:
        raise UserError("--requests-per-level must be >= 1")
    if rounds < 1:
        raise UserError("--rounds must be >= 1")
    import ray
    import torch
    import vllm

    from benchmarks.report import emit

    ws = workspace or Workspace.resolve()
    model_id, path = resolve_model(ws, model)
    model_ref = model_id if path == ws.model(model_id) else str(path)
    engine = serve_engine_args()
    n_hf = requests_per_level or HF_REQUESTS

    print(f"bench serve: {model_id} at {path}; {max_tokens} tokens per request; levels {levels}; "
          f"HF {n_hf} sequential requests; {rounds} round(s)", flush=True)
    per_round, warm = [], {}
    for r in range(rounds):
        if rounds > 1:
            print(f"round {r + 1} of {rounds}", flush=True)
        print("(c) transformers .generate ...", flush=True)
        hf, warm["hf"], facts = measure_hf(path, max_tokens, n_hf)
        gc.collect()  # the HF model goes before an engine starts
        print(f"  hf: TTFT p50 {hf['seq']['ttft_p50_ms']} ms, {hf['seq']['output_tokens_per_s']} tok/s", flush=True)
        print("(b) vLLM engine in-process ...", flush=True)
        eng, warm["engine"] = measure_engine(path, engine, max_tokens, levels, requests_per_level)
        gc.collect()
        print("(d) vLLM's own OpenAI server, no Ray ...", flush=True)
        vhttp, _ = measure_vllm_http(path, model_id, engine, max_tokens, levels, requests_per_level)
        print("(a) Ray Serve HTTP ...", flush=True)
        srv, warm["serve"] = measure_serve(ws, model_ref, model_id, engine, max_tokens, levels, requests_per_level)
        per_round.append({"hf": hf, "engine": eng, "vllm_http": vhttp, "serve": srv})

    warnings = [f"{way} c={c}: {lv['output_tokens']} tokens, expected {lv['requests'] * max_tokens}"
                for ways in per_round for way, per in ways.items() for c, lv in per.items()
                if lv["output_tokens"] != lv["requests"] * max_tokens]
    from services.serve_env import serve_env

    model_name = f"{model_id} ({facts['arch']}, {facts['params'] / 1e6:.1f}M params)"
    host = (f"{platform.machine()} {os.cpu_count()} cpus, torch {torch.__version__}, vllm {vllm.__version__}, "
            f"ray {ray.__version__}")
    each = [assemble_figures(ways, model=model_name, max_tokens=max_tokens, levels=levels, host=host)
            for ways in per_round]
    extra = {
        "model_path": str(path),
        "params": facts["params"],
        "prompt_tokens_max": facts["prompt_tokens_max"],
        "requests_per_level": {str(c): requests_for(c, requests_per_level) for c in levels},
        "hf_requests": n_hf,
        "rounds": rounds,
        # With several rounds the figures above are medians; here is each round's goal ratios.
        "per_round": {key: [f[key] for f in each] for key in GOAL_RATIOS},
        "threads": {"hf": f"torch {HF_THREADS} threads",
                    "vllm": f"VLLM_CPU_OMP_THREADS_BIND={os.environ.get('VLLM_CPU_OMP_THREADS_BIND', 'auto')}"},
        "engine": engine,
        "serve_layout": "one model: the vLLM replica is the ingress (services/llm.py direct_llm_app)",
        "serve_env": serve_env(),
        # Leading greedy tokens of the warm-up prompt that agree (same weights, same argmax).
        "greedy_agreement": {"engine_vs_hf": common_prefix(warm["engine"], warm["hf"]),
                             "serve_vs_engine": common_prefix(warm["serve"], warm["engine"]), "of": max_tokens},
        "warnings": warnings,
    }
    figures = assemble_figures(median_ways(per_round), model=model_name, max_tokens=max_tokens, levels=levels,
                               host=host, extra=extra)
    print_table(figures)
    emit("serve", figures)
    return figures
