"""evaluation/harness.py and the eval routes, on a tiny model the test saves (lm-eval's real `hf` backend,
in-process), and the CLI's and API's answers to bad input. The served backend runs against real vLLM
in the integration tests (tests/integration/test_serve_eval.py); here a stub /v1/models stands in for
it only where the question is which models a server lists."""

from __future__ import annotations

import json

import pytest
import torch
from fakejobs import FakeJobs
from fastapi import FastAPI
from fastapi.testclient import TestClient
from tinytok import byte_bpe
from transformers import GPT2Config, GPT2LMHeadModel
from ui_stub import start_stub

from cluster.cli import main
from evaluation import suites
from evaluation.config import EvalConfig
from evaluation.harness import check_served, lm_eval_model, model_source, run_suite
from training.errors import UserError
from training.workspace import Workspace

WORDS = ["The capital of Varnia is Tolbek.", "Q: What is 7 plus 5? A: 12.", "Mia found the red kite."]


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A workspace with one tiny GPT-2 (random weights) and its byte-level BPE, saved as an export is."""
    tokenizer = byte_bpe(WORDS * 5)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer), n_positions=128,
                                       bos_token_id=0, eos_token_id=0))
    w = Workspace(tmp_path_factory.mktemp("ws"))
    model.save_pretrained(w.model("tiny"))
    tokenizer.save_pretrained(w.model("tiny"))
    (w.model("tiny") / "playground.json").write_text(json.dumps({"run_id": "r1", "step": 7, "val_loss": 3.0}))
    return w


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path_factory.getbasetemp() / "hf-datasets"))


def test_model_source_reads_the_export_and_its_lineage(ws):
    src = model_source(ws, "tiny")
    assert src.path == str(ws.model("tiny")) and src.context == 128 and not src.chat_template
    assert src.lineage["run_id"] == "r1" and src.lineage["step"] == 7
    with pytest.raises(UserError, match=r"^models: no model at ./nope"):
        model_source(ws, "./nope")


def test_served_backend_passes_the_tokenizer_folder_and_the_context():
    from evaluation.harness import ModelSource

    src = ModelSource("tiny", "/w/models/tiny", 128, False)
    name, args = lm_eval_model(EvalConfig(models=["tiny"], endpoint="http://h:1/v1"), src)
    assert name == "local-completions"
    assert args["base_url"] == "http://h:1/v1/completions" and args["tokenizer"] == "/w/models/tiny"
    assert args["tokenizer_backend"] == "huggingface" and args["max_length"] == 128 and args["model"] == "tiny"
    name, args = lm_eval_model(EvalConfig(models=["tiny"], backend="hf"), src)
    assert name == "hf" and args["pretrained"] == "/w/models/tiny" and args["dtype"] == "float32"
    assert args["max_length"] == 126  # lm-eval's hf scores max_length + 1 tokens; served sends max_length - 1


def test_run_suite_in_process_gives_metrics_stderr_and_one_record_per_item(ws):
    cfg = EvalConfig(models=["tiny"], tasks=["world_facts"], backend="hf", limit=6)
    tasks = suites.expand(cfg.tasks)
    tm = suites.task_manager(ws.root / "evals" / "tasks", tasks)
    out = run_suite(cfg, model_source(ws, "tiny"), tasks, tm)
    m = out["tasks"]["world_facts"]
    assert 0 <= m["acc"] <= 1 and m["acc_stderr"] > 0 and out["n"]["world_facts"] == 6
    items = out["samples"]["world_facts"]
    assert [r["doc_id"] for r in items] == list(range(6))
    first = items[0]
    assert first["prompt"].startswith("The ") and len(first["loglikelihoods"]) == 4
    assert first["acc"] == float(first["pred"] == first["target"])
    assert m["acc"] == pytest.approx(sum(r["acc"] for r in items) / 6)


def test_check_served_names_the_model_that_is_not_served():
    app = FastAPI()
    app.get("/v1/models")(lambda: {"data": [{"id": "tiny"}]})
    server = start_stub(app)
    try:
        check_served(f"{server.url}/v1", ["tiny"])
        with pytest.raises(UserError, match=r"^models: 'other' is not served at .* \(served: tiny\)"):
            check_served(f"{server.url}/v1", ["tiny", "other"])
    finally:
        server.stop()
    with pytest.raises(UserError, match=r"^endpoint: no OpenAI-compatible server answers"):
        check_served("http://127.0.0.1:9/v1", ["tiny"])


def test_served_chat_sends_each_question_as_messages_with_the_api_key(ws, monkeypatch):
    """lm-eval's real local-chat-completions client against a stub /v1/chat/completions (it stands in for
    vLLM, whose chat route the integration tests call): a held-out instruction goes out as a user message, with
    the playground's key, and the stub's reply is what the record keeps."""
    from fastapi import Header

    seen = []
    app = FastAPI()

    @app.post("/v1/chat/completions")
    def chat(body: dict, authorization: str = Header("")):
        seen.append((authorization, body))
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": "Tolbek."}}]}

    monkeypatch.setenv("PLAYGROUND_API_KEY", "sekret")
    server = start_stub(app)
    try:
        cfg = EvalConfig(models=["tiny"], tasks=["world_instructions"], backend="served-chat", limit=2,
                         endpoint=f"{server.url}/v1")
        name, args = lm_eval_model(cfg, model_source(ws, "tiny"))
        assert name == "local-chat-completions" and "tokenizer" not in args
        served = lm_eval_model(cfg.model_copy(update={"backend": "served"}), model_source(ws, "tiny"))[1]
        assert served["header"] == {"Authorization": "Bearer sekret"}  # lm-eval itself would send OPENAI_API_KEY
        tm = suites.task_manager(ws.root / "evals" / "tasks", ["world_instructions"])
        out = run_suite(cfg, model_source(ws, "tiny"), ["world_instructions"], tm, apply_chat_template=True)
    finally:
        server.stop()
    assert len(seen) == 2 and {auth for auth, _ in seen} == {"Bearer sekret"}
    messages = seen[0][1]["messages"]
    assert messages[-1]["role"] == "user" and seen[0][1]["model"] == "tiny" and seen[0][1]["temperature"] == 0
    assert [r["pred"] for r in out["samples"]["world_instructions"]] == ["Tolbek."] * 2


def test_served_chat_refuses_multiple_choice(ws):
    from evaluation.recipe import plan

    cfg = EvalConfig(models=["tiny"], tasks=["world_facts"], backend="served-chat", endpoint="http://127.0.0.1:9/v1")
    with pytest.raises(UserError, match=r"^tasks: world_facts is scored by log-likelihood, which a chat endpoint"):
        plan(cfg, ws)


@pytest.mark.parametrize("argv,message", [
    (["eval", "--model", "tiny", "--tasks", "bogus"], "error: tasks: unknown eval suite 'bogus'"),
    (["eval", "--model", "./missing", "--backend", "hf"], "error: models: no model at ./missing"),
    (["eval", "--tasks", "world"], "error: models: name at least one model"),
    (["eval", "--model", "tiny", "--limit", "0"], "error: config: limit: Input should be greater than 0"),
    (["eval", "--show", "nothing-here"], "error: --show: no evaluation 'nothing-here'"),
])
def test_cli_bad_input_is_one_line_and_exit_code_2(ws, capsys, argv, message):
    assert main(["--workspace", str(ws.root), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err


# ---- the API routes, with Ray's job client faked ----------------------------------------------


@pytest.fixture
def api(ws, monkeypatch):
    from services.evals_api import router

    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", FakeJobs)
    FakeJobs.jobs, FakeJobs.logs = {}, {}
    app = FastAPI()
    app.include_router(router, prefix="/api")
    app.state.workspace, app.state.dashboard_url = ws, "http://127.0.0.1:1"
    return TestClient(app)


def test_post_evals_checks_then_submits_playground_eval_as_a_ray_job(api, ws):
    r = api.post("/api/evals", json={"models": ["tiny"], "tasks": ["world"], "backend": "hf", "limit": 5})
    assert r.status_code == 202, r.text
    out = r.json()
    job = FakeJobs.jobs[out["job_id"]]
    assert job.metadata["kind"] == "eval" and job.metadata["name"] == out["eval_id"]
    assert " eval --config " in job.entrypoint
    from pathlib import Path

    import yaml

    saved = yaml.safe_load(Path(job.metadata["config_file"]).read_text())
    assert saved["name"] == out["eval_id"] and saved["models"] == ["tiny"] and saved["limit"] == 5
    assert api.get("/api/evals").json() == []  # the record appears when the job starts
    assert {t["name"] for t in api.get("/api/eval-tasks").json()} >= {"world", "world_facts", "mmlu", "humaneval"}


@pytest.mark.parametrize("body,status,param", [
    ({"models": ["tiny"], "tasks": ["bogus"], "backend": "hf"}, 404, "tasks"),
    ({"models": ["ghost"], "tasks": ["world_facts"], "backend": "hf"}, 404, "models"),
    ({"models": ["tiny"], "tasks": ["world_facts"], "backend": "hf", "limit": 0}, 400, "limit"),
    ({"models": ["tiny"], "tasks": ["world_facts"], "backend": "tpu"}, 400, "backend"),
    ({"models": [], "tasks": ["world_facts"]}, 400, "models"),
    ({"models": ["tiny"], "tasks": ["world_facts"], "endpoint": "http://127.0.0.1:9/v1"}, 409, "endpoint"),
])
def test_post_evals_bad_input_is_a_4xx_naming_the_field(api, body, status, param):
    r = api.post("/api/evals", json=body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param
    assert FakeJobs.jobs == {}


def test_unknown_evaluation_and_items_are_404(api):
    assert api.get("/api/evals/nope").json()["error"]["param"] == "eval_id"
    r = api.get("/api/evals/nope/samples", params={"model": "tiny", "task": "world_facts"})
    assert r.status_code == 404
    assert api.get("/api/leaderboard").json() == {"tasks": [], "models": []}
    r = api.get("/api/leaderboard/compare", params={"task": "world_facts", "a": "x", "b": "y"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "a"
    assert api.get("/api/leaderboard", params={"format": "xml"}).json()["error"]["param"] == "format"
