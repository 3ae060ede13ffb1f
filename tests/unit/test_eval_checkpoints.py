"""Evaluating a run's checkpoints (evaluation/checkpoints.py) and the score-against-step history
(evaluation/leaderboard.py `history`, GET /api/leaderboard/history), on a tiny run the test writes with the
project's own checkpoint.save, and a fine-tuning checkpoint in TRL's Hugging Face format."""

from __future__ import annotations

import json
from dataclasses import asdict

import pytest
import torch
from fakejobs import FakeJobs
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cluster.cli import main
from evaluation import checkpoints, leaderboard, records
from evaluation.config import EvalConfig
from evaluation.recipe import plan
from training.errors import UserError
from training.model import checkpoint
from training.model.transformer import ModelConfig, Transformer
from training.workspace import Workspace

RUN, FT = "pre", "ft"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A pretraining run with checkpoints at steps 2 and 4 (and a step 6 cut short), a model exported
    from it, and a fine-tuning run with one full-model checkpoint at step 3."""
    from transformers import AutoModelForCausalLM

    from training.tokenizers import tokenlab

    w = Workspace(tmp_path_factory.mktemp("ckws"))
    tok = tokenlab.train(w, "the quick brown fox jumps over the lazy dog. " * 40, trainer="scratch",
                         vocab_size=300, name="tok")
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=300, block_size=64)
    for step, loss in ((2, 5.0), (4, 4.0), (6, 3.0)):
        torch.manual_seed(step)
        model = Transformer(cfg)
        checkpoint.save(w.run(RUN) / f"checkpoint_{step:06d}", model=model,
                        optimizer=torch.optim.AdamW(model.parameters()), step=step,
                        config={"model": asdict(cfg)}, rng_states=[],
                        meta={"run_id": RUN, "tokenizer_dir": tok["path"], "val_loss": loss})
    state = w.run(RUN) / "checkpoint_000006" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])  # a copy cut short: not a checkpoint to evaluate
    w.model("pre-export").mkdir(parents=True)
    (w.model("pre-export") / "playground.json").write_text(json.dumps({"run_id": RUN, "step": 4}))
    ft = w.run(FT) / "checkpoints" / "checkpoint-3"
    AutoModelForCausalLM.from_pretrained(checkpoints.materialize(w, checkpoints.list_run(w, RUN)[0])).save_pretrained(ft)
    (ft / "trainer_state.json").write_text(json.dumps({"log_history": [{"loss": 3.0}, {"eval_loss": 2.5}]}))
    return w


def test_a_run_lists_its_complete_checkpoints_oldest_first(ws):
    found = checkpoints.list_run(ws, RUN)
    assert [(c.step, c.kind, c.val_loss) for c in found] == [(2, "pretrain", 5.0), (4, "pretrain", 4.0)]
    assert [c.name for c in found] == ["pre@2", "pre@4"]
    [ft] = checkpoints.list_run(ws, FT)
    assert (ft.step, ft.kind, ft.val_loss) == (3, "hf", 2.5)
    assert checkpoints.run_of(ws, "pre-export") == RUN  # a model exported from a run names it
    with pytest.raises(UserError, match=r"^models: no run 'ghost' with checkpoints"):
        checkpoints.run_of(ws, "ghost")


def test_checkpoints_are_exported_once_and_load_in_transformers(ws):
    from transformers import AutoModelForCausalLM

    srcs = checkpoints.sources(ws, [RUN, FT])
    assert list(srcs) == ["pre@2", "pre@4", "ft@3"]
    two = srcs["pre@2"]
    assert two.path == str(checkpoints.cache_dir(ws, checkpoints.list_run(ws, RUN)[0])) and two.context == 64
    assert two.lineage["run_id"] == RUN and two.lineage["step"] == 2 and "checkpoint" in two.lineage
    assert srcs["ft@3"].path.endswith("checkpoints/checkpoint-3")  # already a Hugging Face folder
    weights = next(p for p in (ws.root / "evals" / "checkpoints" / RUN / "step_000002").iterdir()
                   if p.suffix == ".safetensors")
    mtime = weights.stat().st_mtime_ns
    assert checkpoints.sources(ws, [RUN])["pre@2"].path == two.path
    assert weights.stat().st_mtime_ns == mtime  # reused, not written again
    ours, _, _, _, _ = checkpoint.load_model(ws.run(RUN) / "checkpoint_000004", ws.runs)
    hf = AutoModelForCausalLM.from_pretrained(srcs["pre@4"].path).eval()
    ids = torch.tensor([[1, 5, 9, 20]])
    with torch.no_grad():
        assert (ours(ids)[0] - hf(ids).logits).abs().max() < 1e-4
    hidden = [p.name for p in (ws.root / "evals" / "checkpoints" / RUN).iterdir() if p.name.startswith(".")]
    assert hidden == []  # nothing half-written left beside the exports


def test_plan_with_checkpoints_evaluates_each_in_process(ws):
    cfg = EvalConfig(models=[RUN], tasks=["world_facts"], checkpoints="all")
    assert cfg.backend == "hf"  # the default for checkpoints, which are not served
    planned = plan(cfg, ws)
    assert list(planned["sources"]) == ["pre@2", "pre@4"]
    with pytest.raises(ValueError, match="checkpoints are not served"):
        EvalConfig(models=[RUN], checkpoints="all", backend="served")


def _record(ws, eval_id, when, scores: dict[str, float], lineage: dict[str, dict]):
    rows = [records.score_row(m, "world_facts", "world_facts", {"acc": s, "acc_stderr": 0.05}, 40, 0.25)
            for m, s in scores.items()]
    records.write_record(ws, {"eval_id": eval_id, "name": eval_id, "status": "SUCCEEDED", "created_at": when,
                              "finished_at": when, "progress": {"done": 1, "total": 1, "running": []},
                              "config": {"models": list(scores), "tasks": ["world_facts"], "backend": "hf"},
                              "models": lineage, "rows": rows, "groups": [], "errors": []})


@pytest.fixture
def scored(ws, tmp_path):
    w = Workspace(tmp_path / "scored")
    ck = {m: {"model": m, "run_id": RUN, "step": s, "checkpoint": f"/x/{s}"} for m, s in (("pre@2", 2), ("pre@4", 4))}
    _record(w, "e1", "2026-12-01T10:00:00", {"pre@2": 0.3, "pre@4": 0.5}, ck)
    _record(w, "e2", "2026-12-02T10:00:00", {"pre@4": 0.6}, {"pre@4": ck["pre@4"]})  # the newer score of step 4
    _record(w, "e3", "2026-12-03T10:00:00", {"pre-export": 0.7, "other": 0.4},
            {"pre-export": {"model": "pre-export", "run_id": RUN, "step": 8}, "other": {"model": "other"}})
    return w


def test_history_is_score_against_step_and_checkpoints_stay_off_the_board(scored):
    h = leaderboard.history(scored, RUN)
    assert [(p["step"], p["model"], p["score"]) for p in h["series"]["world_facts"]] == [
        (2, "pre@2", 0.3), (4, "pre@4", 0.6), (8, "pre-export", 0.7)]
    assert leaderboard.history(scored) == {"runs": [{"run": RUN, "steps": [2, 4]}]}
    assert [m["model"] for m in leaderboard.board(scored)["models"]] == ["pre-export", "other"]
    assert {m["model"] for m in leaderboard.board(scored, checkpoints=True)["models"]} == {
        "pre-export", "other", "pre@2", "pre@4"}


@pytest.fixture
def api(ws, monkeypatch):
    from services.evals_api import router

    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", FakeJobs)
    FakeJobs.jobs, FakeJobs.logs = {}, {}
    app = FastAPI()
    app.include_router(router, prefix="/api")
    app.state.workspace, app.state.dashboard_url = ws, "http://127.0.0.1:1"
    return TestClient(app)


def test_api_checkpoints_and_history(api):
    r = api.post("/api/evals", json={"models": [RUN], "tasks": ["world_facts"], "checkpoints": "all", "limit": 4})
    assert r.status_code == 202, r.text
    for body, status, param in (
            ({"models": ["ghost"], "tasks": ["world_facts"], "checkpoints": "all"}, 404, "models"),
            ({"models": [RUN], "tasks": ["world_facts"], "checkpoints": "all", "backend": "served"}, 400, "checkpoints"),
            ({"models": [RUN], "tasks": ["world_facts"], "checkpoints": "some"}, 400, "checkpoints")):
        r = api.post("/api/evals", json=body)
        assert (r.status_code, r.json()["error"]["param"]) == (status, param), r.text
    assert len(FakeJobs.jobs) == 1
    r = api.get("/api/leaderboard/history", params={"run": RUN})
    assert r.status_code == 404 and r.json()["error"]["param"] == "run" and "--checkpoints all" in r.text
    assert api.get("/api/leaderboard/history").json() == {"runs": []}
    r = api.get("/api/leaderboard/breakdown", params={"group": "world"})
    assert r.status_code == 404 and r.json()["error"]["param"] == "group"


@pytest.mark.parametrize("argv,message", [
    (["--checkpoints", "all", "--model", "ghost"], "error: models: no run 'ghost' with checkpoints"),
    (["--checkpoints", "all", "--model", RUN, "--backend", "served"],
     "error: config: checkpoints: checkpoints are not served"),
])
def test_cli_checkpoint_mistakes_are_one_line(ws, capsys, argv, message):
    assert main(["--workspace", str(ws.root), "eval", "--tasks", "world_facts", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(message) and "\n" not in err
