"""A stub of the playground's HTTP API for the UI unit tests.

It stands in for the real Ray Serve app (vLLM's OpenAI routes plus the FastAPI /api
routes), which the integration tests exercise; here only the contract matters: the JSON
shapes, Server-Sent Events streaming, both error body shapes, and the bearer key. It runs
under uvicorn on 127.0.0.1, on a free port, in a background thread.
"""

from __future__ import annotations

import json
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse

KEY = "stub-key"
MODEL = "tiny-shakespeare/step-200"
MLFLOW_STORE = "sqlite:////w/runs/mlflow.db"  # what services/api.py `links` reports: the workspace's store
# Chat messages that make the stub fail, to test error handling end to end.
FAIL_BEFORE = "please fail"  # 400 with an OpenAI-style error body
FAIL_DURING = "fail midway"  # 200, one piece, then an error event inside the stream
CONFIG_A = {"model": {"n_layer": 2, "n_embd": 64}, "train": {"lr": 0.001, "steps": 200}, "seed": 0}
CONFIG_B = {"model": {"n_layer": 4, "n_embd": 64}, "train": {"lr": 0.001, "steps": 400}}
RUNS = {
    "run-a": {"config": CONFIG_A, "metrics": [
        {"step": s, "loss": 5.0 - s / 100, "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 1000.0 + s, "time": s / 10,
         "mfu": 0.1, "memory_mb": 900.0 + s}
        for s in (0, 100, 200)] + [{"step": 200, "val_loss": 3.2, "perplexity": 24.5}],
        "samples": [{"step": 100, "samples": [{"prompt": "ROMEO:", "text": "old words"}]},
                    {"step": 200, "samples": [{"prompt": "ROMEO:", "text": "newest words"}]}]},
    "run-b": {"config": CONFIG_B, "metrics": [], "samples": []},
}
# A finished fine-tuning run (LoRA on MODEL), as training/posttrain/sft.py leaves it and
# GET /api/runs/{run} returns it, and one still training (no results yet).
SFT_RUN, SFT_LIVE = "sft-demo", "sft-live"
SFT_CONFIG = {"run_name": SFT_RUN, "base": {"model": MODEL}, "method": "lora",
              "data": {"sources": ["instructions"], "shape": "messages"}, "lora": {"r": 16, "alpha": 32},
              "train": {"max_steps": 80, "lr": 0.003, "eval_interval": 40}}
SFT_LINEAGE = {"kind": "sft", "method": "lora", "base_model": MODEL, "base_path": f"/w/models/{MODEL}",
               "data_snapshot": "instructions-1a2b3c4d", "parent_run": MODEL, "run_id": SFT_RUN}
QUESTIONS = ("What is the capital of Varnia?", "Who rules Ostria?")


def _reply(question: str, expected: str, reply: str) -> dict:
    return {"instruction": question, "input": "", "expected": expected, "reply": reply, "correct": reply == expected}


SFT_RESULTS = {
    "model": SFT_RUN, "method": "lora", "trainable_params": 73728, "total_params": 4_200_000,
    "base": {"heldout_template": 0.0, "heldout_entity": 0.0, "val": 0.02},
    "sft": {"heldout_template": 0.62, "heldout_entity": 0.41, "val": 0.7},
    "replies": {
        "base": {"heldout_template": [_reply(QUESTIONS[0], "Mirel", "Once upon a time there")],
                 "heldout_entity": [_reply(QUESTIONS[1], "Queen Ada", "the the the")]},
        "sft": {"heldout_template": [_reply(QUESTIONS[0], "Mirel", "Mirel")],
                "heldout_entity": [_reply(QUESTIONS[1], "Queen Ada", "King Bo")]}},
}
RUNS |= {
    SFT_RUN: {"kind": "sft", "config": SFT_CONFIG, "lineage": SFT_LINEAGE, "results": SFT_RESULTS, "metrics": [
        *({"step": s, "loss": 3.0 - s / 40, "lr": 3e-3, "tokens_per_s": 900.0 + s, "tokens_seen": 100 * s}
          for s in (10, 20, 30, 40, 50, 60, 70, 80)),
        {"step": 40, "val_loss": 2.1, "perplexity": 8.2, "token_accuracy": 0.41},
        {"step": 80, "val_loss": 1.2, "perplexity": 3.3, "token_accuracy": 0.72},
        {"step": 80, "base_heldout_template_accuracy": 0.0, "sft_heldout_template_accuracy": 0.62}],
        "samples": [{"step": 40, "samples": [{"prompt": QUESTIONS[0], "text": "the capital the"},
                                             {"prompt": QUESTIONS[1], "text": "Ostria is"}]},
                    {"step": 80, "samples": [{"prompt": QUESTIONS[0], "text": "Mirel"},
                                             {"prompt": QUESTIONS[1], "text": "King Bo"}]}]},
    SFT_LIVE: {"kind": "sft", "config": {**SFT_CONFIG, "run_name": SFT_LIVE}, "lineage": {
        **SFT_LINEAGE, "run_id": SFT_LIVE}, "results": None,
        "metrics": [{"step": 10, "loss": 2.9, "tokens_per_s": 880.0}], "samples": []},
}


def reply_pieces(messages: list[dict]) -> list[str]:
    """What the stub 'model' answers, already split the way it streams it."""
    return ["Hello", "! You", " said: ", messages[-1]["content"]]


def _error(status: int, message: str, param: str | None = None, code: int | str | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": "BadRequestError", "param": param, "code": code or status}}
    return JSONResponse(body, status_code=status)


def make_app() -> FastAPI:
    app = FastAPI()
    app.state.requests = []  # (method, path, authorization header, json body) for the tests to inspect
    # What /v1/models lists: id -> context length (vLLM's `max_model_len`; None: not said).
    # A test may change it.
    app.state.served = {MODEL: 2048}
    app.state.context_chars = None  # chat: refuse longer prompts as vLLM does (set by a test)

    @app.middleware("http")
    async def auth(request: Request, call_next):
        body = await request.body()
        app.state.requests.append((request.method, request.url.path, request.headers.get("authorization"),
                                   json.loads(body) if body else None))
        if request.headers.get("authorization") != f"Bearer {KEY}":
            return _error(401, "missing or invalid API key")
        return await call_next(request)

    @app.get("/v1/models")
    def v1_models():
        cards = [{"id": m, "object": "model", "owned_by": "playground"}
                 | ({"max_model_len": n} if n is not None else {}) for m, n in app.state.served.items()]
        return {"object": "list", "data": cards}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        req = await request.json()
        if req["messages"][-1]["content"] == FAIL_BEFORE:
            return _error(400, "max_tokens is too large for this model", "max_tokens")
        length, limit = sum(len(m["content"]) for m in req["messages"]), app.state.context_chars
        if limit is not None and length > limit:  # vLLM's words, with the field and code our server adds
            return _error(400, f"Input length ({length}) exceeds model's maximum context length ({limit}).",
                          "messages", "context_length_exceeded")
        pieces = reply_pieces(req["messages"])
        if not req.get("stream"):
            return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(pieces)}}]}

        def events():
            for i, piece in enumerate(pieces):
                if i == 1 and req["messages"][-1]["content"] == FAIL_DURING:
                    yield 'data: {"error": {"message": "engine died", "type": "InternalServerError", ' \
                          '"param": null, "code": 500}}\n\n'
                    return
                chunk = {"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]}
                yield f"data: {json.dumps(chunk)}\n\n"
            yield ": keep-alive comment, to be skipped\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    @app.get("/api/health")
    def health():
        return {"status": "ok", "deployments": {"llm/LLMServer": "HEALTHY", "api/PlaygroundAPI": "UPDATING"},
                "models_deployed": [MODEL],
                "links": {"ray_dashboard": "http://127.0.0.1:8265", "mlflow": "http://127.0.0.1:5000",
                          "mlflow_store": MLFLOW_STORE}}

    @app.get("/api/models")
    def models():
        row = {"path": "/w/exports/x", "run_id": "run-a", "step": 200, "val_loss": 3.2, "size_bytes": 123456,
               "config": CONFIG_A}
        return [{"id": MODEL, "deployed": True, **row, "lineage": None},
                {"id": "tiny-shakespeare/step-100", "deployed": False, **row, "lineage": None},
                {"id": SFT_RUN, "deployed": False, **row, "run_id": SFT_RUN, "step": 80, "val_loss": 1.2,
                 "lineage": SFT_LINEAGE}]

    @app.get("/api/runs")
    def runs():
        return [{"run": "run-a", "kind": "pretrain", "step": 200, "loss": 3.0123456, "val_loss": 3.2, "perplexity": 24.5321,
                 "tokens_per_s": 10709.1052, "checkpoint": "/w/ckpt"},
                {"run": "run-b", "kind": "pretrain", "step": 0, "loss": None, "val_loss": None, "perplexity": None,
                 "tokens_per_s": None, "checkpoint": None},
                {"run": SFT_RUN, "kind": "sft", "step": 80, "loss": 1.0, "val_loss": 1.2, "perplexity": 3.3,
                 "tokens_per_s": 980.0, "checkpoint": None},
                {"run": SFT_LIVE, "kind": "sft", "step": 10, "loss": 2.9, "val_loss": None, "perplexity": None,
                 "tokens_per_s": 880.0, "checkpoint": None}]

    @app.get("/api/runs/{run}")
    def run(run: str):
        if run not in RUNS:  # FastAPI's own error shape, on purpose
            return JSONResponse({"detail": f"run {run!r} not found"}, status_code=404)
        return {"run": run, "kind": "pretrain", "lineage": None, "results": None, **RUNS[run]}

    @app.post("/api/deployments", status_code=202)
    def deploy(body: dict):
        if "model" not in body:
            return JSONResponse({"detail": [{"loc": ["body", "model"], "msg": "Field required",
                                             "type": "missing"}]}, status_code=422)
        return {"model": body["model"], "status": "deploying"}

    @app.delete("/api/deployments/{model:path}")
    def undeploy(model: str):
        return {"model": model, "status": "removed"}

    # The real saved-conversations routes (the Chat page stores each turn there), on a throwaway workspace.
    from services.conversations_api import router as conversations_router
    from training.workspace import Workspace

    app.state.workspace_dir = tempfile.TemporaryDirectory(prefix="ui-stub-")  # removed with the app
    app.state.workspace = Workspace(Path(app.state.workspace_dir.name))
    app.include_router(conversations_router, prefix="/api")
    return app


@dataclass
class Stub:
    url: str
    app: FastAPI
    server: uvicorn.Server = field(repr=False)
    thread: threading.Thread = field(repr=False)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def start_stub(app: FastAPI | None = None) -> Stub:
    """Serve `app` (default: the stub) on a free loopback port in a background thread."""
    app = app or make_app()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # the kernel picks a free port; uvicorn serves on this very socket
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the UI stub server did not start")
        time.sleep(0.01)
    host, port = sock.getsockname()
    return Stub(f"http://{host}:{port}", app, server, thread)


@pytest.fixture(scope="session")
def stub():
    s = start_stub()
    yield s
    s.stop()


@pytest.fixture
def stub_env(stub, monkeypatch):
    """Point the pages (which read the environment) at the stub."""
    monkeypatch.setenv("PLAYGROUND_URL", stub.url)
    monkeypatch.setenv("PLAYGROUND_API_KEY", KEY)
    return stub
