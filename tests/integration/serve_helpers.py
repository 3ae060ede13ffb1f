"""Helpers of the serving tests (test_serve.py) and of conftest.py: ports, tiny exports,
waiting for Serve, and the listening sockets of the session's processes."""

import json
import time

import httpx
import torch

from benchmarks.serve_http import free_port  # noqa: F401  (re-exported for the tests)
from training.model.export import export_hf
from training.model.transformer import Transformer


def export_tiny(ws, tiny_config, name: str, seed: int) -> None:
    cfg = tiny_config()
    torch.manual_seed(seed)
    tokenizer_dir = ws.tokenizer(cfg.tokenizer.tokenizer_id(cfg.data.dataset_id()))
    export_hf(Transformer(cfg.model), ws.model(name), tokenizer_dir=tokenizer_dir,
              extra_files={"playground.json": json.dumps({"run_id": "fake-run", "step": 3, "val_loss": 5.0})})


def wait_for(predicate, timeout: float, what: str):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            if predicate():
                return
        except (httpx.HTTPError, ValueError, KeyError):  # not up yet: proxy 404s, non-JSON bodies
            pass
        time.sleep(1)
    raise TimeoutError(f"{what} not ready after {timeout:.0f} s")


def served(base: str) -> list[str]:
    return [m["id"] for m in httpx.get(f"{base}/v1/models", timeout=10).json()["data"]]


def listeners() -> list[tuple[str, int, str]]:
    """(ip, port, process name) of every TCP socket listening in this session's processes
    (pytest, the Ray cluster it started, Serve, HAProxy, vLLM)."""
    import psutil

    names = {}
    me = psutil.Process()
    for p in [me, *me.children(recursive=True)]:
        try:  # Python processes by their script or module: Ray's dashboard, monitor, client server
            names[p.pid] = " ".join(p.cmdline()[:3]) if p.name().startswith("python") else p.name()
        except psutil.Error:  # exited meanwhile
            pass
    names[me.pid] = "ray driver"  # this process: ray.init made it a Ray worker, with a gRPC port
    return [(c.laddr.ip, c.laddr.port, names[c.pid]) for c in psutil.net_connections("tcp")
            if c.status == psutil.CONN_LISTEN and c.pid in names]
