"""The request checks and error shapes in front of vLLM, without a cluster (FastAPI's
TestClient drives the same app object Serve would host). The live path is in
tests/integration/test_serve.py."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.llm import harden


@pytest.fixture
def client():
    app = harden(FastAPI(), {"tiny"}, api_key=None)

    @app.post("/v1/chat/completions")
    async def chat(body: dict):
        return {"ok": True}

    @app.post("/v1/completions")
    async def completions(body: dict):
        return {"ok": True}

    return TestClient(app)


def error_of(resp):
    body = resp.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    # OpenAI's name for the case where it has one, else the HTTP status (as vLLM gives it).
    assert body["error"]["code"] in (resp.status_code, "model_not_found", "invalid_api_key", "invalid_value")
    return body["error"]


@pytest.mark.parametrize("payload, status, param, code", [
    (b"{not json", 400, "body", 400),
    (b"[1, 2]", 400, "body", 400),
    (b'{"messages": [{"role": "user", "content": "x"}]}', 400, "model", 400),
    (b'{"model": "nope", "messages": [{"role": "user", "content": "x"}]}', 404, "model", "model_not_found"),
    (b'{"model": "tiny", "messages": []}', 400, "messages", 400),
    (b'{"model": "tiny", "messages": [{"role": "user", "content": "x"}, {"role": "wizard", "content": "y"}]}',
     400, "messages[1].role", "invalid_value"),
    (b'{"model": "tiny", "messages": [{"content": "x"}]}', 400, "messages[0].role", "invalid_value"),
    (b'{"model": "tiny", "messages": [{"role": ["user"], "content": "x"}]}', 400, "messages[0].role",
     "invalid_value"),
    (b'{"model": "tiny", "messages": ["hello"]}', 400, "messages[0]", 400),
])
def test_bad_requests_are_openai_shaped_4xx(client, payload, status, param, code):
    resp = client.post("/v1/chat/completions", content=payload, headers={"content-type": "application/json"})
    assert resp.status_code == status
    err = error_of(resp)
    assert (err["param"], err["code"], err["type"]) == (param, code, "invalid_request_error")


def test_good_request_passes_through(client):
    resp = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [{"role": "user", "content": "x"}]})
    assert resp.status_code == 200 and resp.json() == {"ok": True}
    every_role = [{"role": r, "content": "x"} for r in ("system", "developer", "user", "assistant", "tool", "function")]
    assert client.post("/v1/chat/completions", json={"model": "tiny", "messages": every_role}).status_code == 200
    assert client.post("/v1/completions", json={"model": "tiny", "prompt": "x"}).status_code == 200


def test_unknown_role_names_the_message_and_the_roles(client):
    resp = client.post("/v1/chat/completions", json={"model": "tiny", "messages": [
        {"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}, {"role": "wizard", "content": "x"}]})
    err = error_of(resp)
    assert resp.status_code == 400 and err["param"] == "messages[2].role" and err["code"] == "invalid_value"
    assert "'wizard'" in err["message"] and all(f"'{r}'" in err["message"] for r in ("user", "tool", "developer"))


def test_unknown_route_is_openai_shaped(client):
    resp = client.get("/v1/nothing-here")
    assert resp.status_code == 404 and error_of(resp)


def test_api_key_enforced_when_set():
    app = harden(FastAPI(), {"tiny"}, api_key="s3cret")

    @app.get("/v1/models")
    async def models():
        return {"data": []}

    c = TestClient(app)
    assert c.get("/v1/models").status_code == 401
    assert error_of(c.get("/v1/models"))["code"] == "invalid_api_key"
    assert error_of(c.get("/v1/models", headers={"Authorization": "Bearer wrong"}))["param"] == "authorization"
    assert c.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


@pytest.mark.parametrize("path, raw, param, message", [
    ("/v1/chat/completions",
     (b'{"error": {"message": "Message: This model\'s maximum context length is 64 tokens. However, your prompt '
      b'contains 2050 characters. (Request ID: 3e4a), Internal exception: x", "type": "OpenAIHTTPException", '
      b'"param": null, "code": 400}}'),
     "messages", "This model's maximum context length is 64 tokens. However, your prompt contains 2050 characters."),
    ("/v1/completions", b'{"error": {"message": "maximum context length is 64", "param": null}}', "prompt",
     "maximum context length is 64"),
    ("/v1/chat/completions", (b'{"error": {"message": "Please reduce the length of the input prompt. '
                              b'(parameter=input_text, value=2050)", "param": null}}'), "messages", None),
    ("/v1/chat/completions",
     (b'{"error": {"message": "Message: temperature must be in [0, 2], got 5.0. (parameter=temperature, value=5.0) '
      b'(Request ID: f8), Internal exception: y", "param": null}}'), "temperature", None),
    ("/v1/chat/completions", b'{"detail": "top_p must be in (0, 1], got 3"}', "top_p", "top_p must be in (0, 1], got 3"),
])
def test_engine_errors_are_cleaned_and_name_the_field(path, raw, param, message):
    import json

    from services.llm import normalize_error

    err = json.loads(normalize_error(path, 400, raw).body)["error"]
    too_long = param in ("messages", "prompt")  # OpenAI's code for a prompt over the context
    assert err["param"] == param and err["code"] == ("context_length_exceeded" if too_long else 400)
    assert err["type"] == "invalid_request_error"
    assert "Request ID" not in err["message"] and not err["message"].startswith("Message:")
    if message:
        assert err["message"] == message


def test_error_from_the_route_is_normalized():
    app = harden(FastAPI(), {"tiny"}, api_key=None)

    @app.post("/v1/completions")
    async def completions(body: dict):
        from fastapi.responses import JSONResponse

        return JSONResponse(status_code=400, content={"error": {"message": "Message: max_tokens must be at least 1",
                                                                "param": None}})

    resp = TestClient(app).post("/v1/completions", json={"model": "tiny", "prompt": "x"})
    assert resp.status_code == 400 and error_of(resp)["param"] == "max_tokens"


def test_exported_models_tell_the_engine_their_context(tmp_path):
    """So that Ray's multi-model `/v1/models` cards carry it (they read it from the engine
    arguments): the Chat page bounds max tokens with it."""
    import json

    from services.llm import llm_configs
    from services.schemas import LLMAppArgs

    for name, config in {"gpt2-like": {"model_type": "gpt2", "n_positions": 64},
                         "llama-like": {"model_type": "llama", "max_position_embeddings": 256}}.items():
        (tmp_path / name).mkdir()
        (tmp_path / name / "config.json").write_text(json.dumps(config))
    args = LLMAppArgs(models=["gpt2-like", "llama-like", "org/hub-model"])
    assert [c.engine_kwargs.get("max_model_len") for c in llm_configs(args, tmp_path)] == [64, 256, None]
    args = LLMAppArgs(models=["gpt2-like"], engine={"max_model_len": 32})  # the Serve config's value wins
    assert llm_configs(args, tmp_path)[0].engine_kwargs["max_model_len"] == 32


def test_health_links_name_the_mlflow_store_and_its_ui(tmp_path):
    """Every run logs to the workspace's store, so GET /api/health always names it; the UI's
    URL defaults to where `playground mlflow` serves it."""
    from services.api import links
    from services.schemas import APIAppArgs
    from training.workspace import Workspace

    ws = Workspace(tmp_path)
    assert links(APIAppArgs(), ws) == {"ray_dashboard": "http://127.0.0.1:8265", "mlflow": "http://127.0.0.1:5000",
                                       "mlflow_store": ws.mlflow_uri()}
    assert ws.mlflow_uri() == f"sqlite:///{tmp_path}/runs/mlflow.db"
    assert links(APIAppArgs(mlflow_url="http://10.0.0.5:5000"), ws)["mlflow"] == "http://10.0.0.5:5000"


def _sft_run(ws, run_id="sft-demo", finished=True):
    """A fine-tuning run folder and its model, as training/posttrain/sft.py leaves them."""
    import json

    lineage = {"kind": "sft", "method": "lora", "base_model": "tiny-a", "base_path": str(ws.model("tiny-a")),
               "data_snapshot": "instructions-1a2b3c4d", "parent_run": "tiny-a", "run_id": run_id}
    run_dir = ws.run(run_id)
    run_dir.mkdir(parents=True)
    (run_dir / "config.yaml").write_text("base:\n  model: tiny-a\nmethod: lora\n")
    (run_dir / "run.json").write_text(json.dumps({"run_id": run_id, "kind": "sft", "lineage": lineage}))
    (run_dir / "metrics.jsonl").write_text('{"step": 10, "loss": 2.5, "tokens_per_s": 900.0}\n'
                                           '{"step": 10, "val_loss": 2.4, "token_accuracy": 0.3}\n')
    (run_dir / "samples.jsonl").write_text('{"step": 10, "samples": [{"prompt": "Capital of Varnia?", "text": "x"}]}\n')
    results = {"model": run_id, "method": "lora", "trainable_params": 10, "total_params": 100,
               "base": {"heldout_template": 0.0}, "sft": {"heldout_template": 0.5},
               "replies": {"base": {"heldout_template": []}, "sft": {"heldout_template": []}}}
    if finished:
        (run_dir / "results.json").write_text(json.dumps(results))
        model = ws.model(run_id)
        model.mkdir(parents=True)
        (model / "config.json").write_text("{}")
        (model / "playground.json").write_text(json.dumps({"run_id": run_id, "step": 10, "lineage": lineage}))
    return lineage, results


def test_runs_and_models_carry_the_fine_tuning_lineage_and_results(tmp_path):
    """GET /api/runs says each run's kind; GET /api/runs/{run} adds an SFT run's lineage and
    results (null until it ends, and for a pretraining run); GET /api/models a model's lineage."""
    import json

    from services.api import run_detail, run_rows
    from training.registry.registry import list_models
    from training.workspace import Workspace

    ws = Workspace(tmp_path / "ws")
    exported = ws.model("tiny-a")
    exported.mkdir(parents=True)
    (exported / "config.json").write_text("{}")
    (exported / "playground.json").write_text(json.dumps({"run_id": "pre", "step": 3}))
    pre = ws.run("pre")
    pre.mkdir(parents=True)
    (pre / "config.yaml").write_text("model:\n  n_layer: 2\n")
    (pre / "run.json").write_text(json.dumps({"run_id": "pre", "config": {}}))  # pretraining's: no kind
    lineage, results = _sft_run(ws)
    _sft_run(ws, "sft-running", finished=False)

    assert {r["run"]: r["kind"] for r in run_rows(ws)} == {"pre": "pretrain", "sft-demo": "sft",
                                                           "sft-running": "sft"}
    detail = run_detail(ws, "sft-demo")
    assert detail["kind"] == "sft" and detail["lineage"] == lineage and detail["results"] == results
    assert detail["config"]["base"]["model"] == "tiny-a" and detail["samples"][0]["step"] == 10
    assert detail["val_loss"] == 2.4 and detail["tokens_per_s"] == 900.0
    assert run_detail(ws, "sft-running")["results"] is None
    assert {k: run_detail(ws, "pre")[k] for k in ("kind", "lineage", "results")} == {
        "kind": "pretrain", "lineage": None, "results": None}
    for missing in ("nope", "../runs"):
        resp = run_detail(ws, missing)
        body = json.loads(resp.body)
        assert resp.status_code == 404 and body["error"]["param"] == "run" and body["error"]["code"] == "not_found"

    models = {m["id"]: m for m in list_models(ws, {"sft-demo"})}
    assert models["sft-demo"]["lineage"] == lineage and models["sft-demo"]["deployed"]
    assert models["sft-demo"]["kind"] == "sft" and models["sft-demo"]["parent"] == "tiny-a"
    assert models["tiny-a"]["lineage"] is None and not models["tiny-a"]["deployed"]
    assert models["tiny-a"]["kind"] == "pretrained" and models["tiny-a"]["parent"] is None
    assert models["tiny-a"]["run_id"] == "pre" and models["tiny-a"]["size_bytes"] > 0
