"""The HTTP ways of `playground bench serve` (see benchmarks/serve.py for the whole method).

(d) vLLM's own OpenAI server and (a) Ray Serve are measured by the same client
(`_measure_http`: httpx, one keep-alive connection per client, streaming
/v1/completions). Also here: the two process helpers every way needs, `env` (set
variables for a while) and `reap_children` (no engine process outlives its way).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path

from benchmarks.serve_stats import (
    DONE,
    PROMPTS,
    Sample,
    chunk_tokens,
    parse_sse_line,
    run_levels,
)
from training.workspace import Workspace


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


def reap_children(procs: list | None = None, timeout: float = 30.0) -> None:
    """Wait for the engine's processes to exit (kill them after `timeout`), so a
    busy-polling leftover never steals a core from the next way's measurement.
    `procs`: psutil processes listed while they were still our descendants."""
    import psutil

    children = {p.pid: p for p in (procs or []) + psutil.Process().children(recursive=True)}.values()
    _, alive = psutil.wait_procs(list(children), timeout=timeout)
    for p in alive:
        p.kill()


# --------------------------------------------------------------------------- (d) and (a) over HTTP


# Outside the kernel's ephemeral range (32768-60999 on Linux), where every outgoing connection
# (Ray opens many) takes a port: one handed out there can be taken before its server binds it
# (HAProxy then fails with "Address already in use"). Below Serve's replica ports (30000+) and
# above Ray's worker ports (10002-19999).
PORT_RANGE = range(20000, 30000)
_given: set[int] = set()


def free_port() -> int:
    """A 127.0.0.1 port nothing listens on, for a server started next: random in PORT_RANGE,
    never the same twice in one process."""
    import random

    for port in random.sample(PORT_RANGE, 200):
        if port in _given:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:  # in use
                continue
        _given.add(port)
        return port
    raise RuntimeError(f"no free port in {PORT_RANGE.start}-{PORT_RANGE.stop - 1} on 127.0.0.1")


def completion_body(model_id: str, prompt: str, max_tokens: int) -> dict:
    return {"model": model_id, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
            "ignore_eos": True, "return_token_ids": True, "stream_options": {"include_usage": True}}


async def _measure_http(base: str, model_id: str, max_tokens: int, levels: list[int],
                        requests_per_level: int | None, progress: str = "serve",
                        startup_s: float = 120) -> tuple[dict, list[int]]:
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
                    if event is None or event is DONE:
                        # Read on to the end of the body even after [DONE]: a response left
                        # unread closes its connection, and every request would pay a new
                        # TCP connection in its TTFT (the engine way never does).
                        continue
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
        deadline = time.time() + startup_s
        while True:
            try:
                await send(PROMPTS[0])
                break
            except (httpx.HTTPError, RuntimeError):
                if time.time() > deadline:
                    raise
                await asyncio.sleep(1)
        warm = list(last_tokens)
        return await run_levels(send, levels, requests_per_level, progress), warm


def measure_vllm_http(path: Path, model_id: str, engine: dict, max_tokens: int, levels: list[int],
                      requests_per_level: int | None) -> tuple[dict, list[int]]:
    """(d) vLLM's OpenAI server in a subprocess (no Ray), measured like (a)."""
    import signal
    import subprocess
    import sys
    import tempfile

    port = free_port()
    cmd = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(path),
           "--served-model-name", model_id, "--host", "127.0.0.1", "--port", str(port),
           "--dtype", engine["dtype"], "--gpu-memory-utilization", str(engine["gpu_memory_utilization"]),
           "--disable-uvicorn-access-log"]
    cmd += ["--enforce-eager"] if engine["enforce_eager"] else []
    cmd += ["--max-model-len", str(engine["max_model_len"])] if engine.get("max_model_len") else []
    # The server writes its log there; the file stays for a failure's message.
    with tempfile.NamedTemporaryFile(prefix="bench-vllm-http-", suffix=".log", delete=False) as log:
        proc = subprocess.Popen(cmd, env={**os.environ, "VLLM_CPU_KVCACHE_SPACE": str(int(engine["kv_cache_gib"]))},
                                # A process group of its own (so killpg reaches the engine's
                                # processes), but not a session: with the kernel's autogroup
                                # scheduling a new session would get its own CPU share apart
                                # from the client's, and its TTFT p50 went to 250-290 ms.
                                stdout=log, stderr=subprocess.STDOUT,
                                **({"process_group": 0} if sys.version_info >= (3, 11) else {"preexec_fn": os.setpgrp}))
    try:
        return asyncio.run(_measure_http(f"http://127.0.0.1:{port}", model_id, max_tokens, levels,
                                         requests_per_level, progress="vllm http", startup_s=300))
    except Exception as e:
        raise RuntimeError(f"vLLM's own server failed; its log: {log.name}") from e
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the server and its engine-core process
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        reap_children()


def measure_serve(ws: Workspace, model_ref: str, model_id: str, engine: dict, max_tokens: int, levels: list[int],
                  requests_per_level: int | None) -> tuple[dict, list[int]]:
    from services.serve_env import serve_env

    # Serve's HTTP path as `playground up` runs it; Serve reads these when its processes start.
    with env(**serve_env()):
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
