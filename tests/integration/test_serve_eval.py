"""Evaluation against the live stack (conftest.py `stack`: vLLM on Ray Serve and the playground API):
lm-eval's local-completions through our /v1/completions on a world suite and a slice of MMLU, the same
in-process, and an evaluation submitted over HTTP as a Ray job, then read back and compared.

The models are random weights, so the scores sit near chance: the tests check the plumbing (what is
asked, what is recorded, that served and in-process agree), not the knowledge."""

from __future__ import annotations

import time

import httpx
import pytest

from evaluation import recipe, records
from evaluation.config import EvalConfig

pytestmark = pytest.mark.integration


def _agreement(a: list[dict], b: list[dict]) -> float:
    other = {r["doc_id"]: r["pred"] for r in b}
    return sum(r["pred"] == other[r["doc_id"]] for r in a) / len(a)


def test_lm_eval_through_serve_and_in_process_agree_on_world_facts_and_mmlu(stack):
    ws, base = stack["workspace"], stack["base"]
    common = dict(models=["tiny-a"], tasks=["world_facts", "mmlu_anatomy"], limit=12, endpoint=f"{base}/v1")
    served = recipe.run(EvalConfig(**common), ws, eval_id="it-served", say=lambda *_: None)
    local = recipe.run(EvalConfig(**common, backend="hf"), ws, eval_id="it-local", say=lambda *_: None)
    for record in (served, local):
        assert record["status"] == "SUCCEEDED", record["errors"]
        assert record["progress"] == {"done": 2, "total": 2, "running": []}
        rows = {r["task"]: r for r in record["rows"]}
        assert set(rows) == {"world_facts", "mmlu_offline_anatomy"}
        assert all(r["n"] == 12 and r["metric"] == "acc" and r["ci95"] for r in rows.values())
        assert rows["mmlu_offline_anatomy"]["chance"] == 0.25
        assert record["models"]["tiny-a"]["run_id"] == "fake-run"
    assert records.read_record(ws, "it-served")["rows"] == served["rows"]  # what the API and UI read
    for task in ("world_facts", "mmlu_offline_anatomy"):
        a = records.read_samples(ws, "it-served", "tiny-a", task)
        b = records.read_samples(ws, "it-local", "tiny-a", task)
        assert len(a) == len(b) == 12 and all(len(r["loglikelihoods"]) == 4 for r in a)
        # Same weights, same tokenizer, float32 on both sides: the same answer on (nearly) every item.
        assert _agreement(a, b) >= 11 / 12, (task, a, b)
        for x, y in zip(a, b):
            assert x["loglikelihoods"] == pytest.approx(y["loglikelihoods"], abs=2e-3)


def _wait(base: str, eval_id: str, timeout: float = 600) -> dict:
    deadline = time.time() + timeout
    while time.time() < deadline:
        r = httpx.get(f"{base}/api/evals/{eval_id}", timeout=10)
        if r.status_code == 200 and r.json()["status"] in ("SUCCEEDED", "FAILED"):
            return r.json()
        time.sleep(2)
    raise TimeoutError(f"evaluation {eval_id} did not end in {timeout:.0f} s")


def test_evals_api_runs_jobs_and_the_leaderboard_compares_them(stack):
    base = stack["base"]
    bad = httpx.post(f"{base}/api/evals", json={"models": ["tiny-c"], "tasks": ["world_facts"],
                                                "endpoint": f"{base}/v1"}, timeout=30)
    assert bad.status_code == 409 and bad.json()["error"]["param"] == "models"  # tiny-c is not served
    assert "not served" in bad.json()["error"]["message"]
    bad = httpx.post(f"{base}/api/evals", json={"models": ["tiny-a"], "tasks": ["hellaswag2"]}, timeout=30)
    assert bad.status_code == 404 and bad.json()["error"]["param"] == "tasks"

    ids = []
    for body in ({"models": ["tiny-a"], "tasks": ["world_stories"], "limit": 16, "endpoint": f"{base}/v1"},
                 {"models": ["tiny-b"], "tasks": ["world_stories"], "limit": 16, "backend": "hf"}):
        r = httpx.post(f"{base}/api/evals", json=body, timeout=30)
        assert r.status_code == 202, r.text
        ids.append(r.json()["eval_id"])
    for eval_id in ids:
        record = _wait(base, eval_id)
        assert record["status"] == "SUCCEEDED", record.get("errors")
    listed = [e["eval_id"] for e in httpx.get(f"{base}/api/evals", timeout=10).json()]
    assert set(ids) <= set(listed)

    board = httpx.get(f"{base}/api/leaderboard", params={"tasks": "world_stories"}, timeout=10).json()
    assert {m["model"] for m in board["models"]} >= {"tiny-a", "tiny-b"}
    cmp = httpx.get(f"{base}/api/leaderboard/compare", params={"task": "world_stories", "a": "tiny-a",
                                                                "b": "tiny-b"}, timeout=30).json()
    assert cmp["bootstrap"]["n"] == 16 and 0 <= cmp["bootstrap"]["p_value"] <= 1 and "mcnemar" in cmp
    items = httpx.get(f"{base}/api/evals/{ids[0]}/samples", params={"model": "tiny-a", "task": "world_stories"},
                      timeout=10).json()["samples"]
    assert len(items) == 16 and items[0]["prompt"]
    csv = httpx.get(f"{base}/api/leaderboard", params={"format": "csv"}, timeout=10)
    assert csv.headers["content-type"].startswith("text/csv") and "tiny-a" in csv.text


def test_served_chat_and_every_checkpoint_of_a_run(stack, tiny_config):
    """lm-eval's local-chat-completions against vLLM's chat route on the held-out instructions; then a run's
    two checkpoints evaluated in-process on Ray, and their history read back over HTTP."""
    from dataclasses import asdict

    import torch

    from evaluation import custom
    from training.model import checkpoint
    from training.model.transformer import Transformer

    ws, base = stack["workspace"], stack["base"]
    # Short questions: tiny-a's context is 64 tokens, and a chat request cannot be cut to fit (harness.py).
    custom.register(ws.root, "sums", "".join(f'{{"prompt": "{a}+{a}=", "answer": "{2 * a}"}}\n' for a in range(3)))
    chat = recipe.run(EvalConfig(models=["tiny-a"], tasks=["sums"], backend="served-chat", endpoint=f"{base}/v1"),
                      ws, eval_id="it-chat", say=lambda *_: None)
    assert chat["status"] == "SUCCEEDED", chat["errors"]
    items = records.read_samples(ws, "it-chat", "tiny-a", "custom_sums")
    assert len(items) == 3 and all(isinstance(r["pred"], str) and r["prompt"] for r in items)

    cfg = tiny_config()
    tokenizer_dir = ws.tokenizer(cfg.tokenizer.tokenizer_id(cfg.data.dataset_id()))
    for step in (1, 2):
        torch.manual_seed(step)
        model = Transformer(cfg.model)
        checkpoint.save(ws.run("ckpt-run") / f"checkpoint_{step:06d}", model=model,
                        optimizer=torch.optim.AdamW(model.parameters()), step=step,
                        config={"model": asdict(cfg.model)}, rng_states=[],
                        meta={"run_id": "ckpt-run", "tokenizer_dir": str(tokenizer_dir), "val_loss": 5.0 - step})
    record = recipe.run(EvalConfig(models=["ckpt-run"], tasks=["world_facts"], checkpoints="all", limit=8), ws,
                        eval_id="it-ckpt", say=lambda *_: None)
    assert record["status"] == "SUCCEEDED", record["errors"]
    assert set(record["models"]) == {"ckpt-run@1", "ckpt-run@2"} and record["config"]["backend"] == "hf"
    hist = httpx.get(f"{base}/api/leaderboard/history", params={"run": "ckpt-run"}, timeout=10).json()
    assert [p["step"] for p in hist["series"]["world_facts"]] == [1, 2]
    board = httpx.get(f"{base}/api/leaderboard", timeout=10).json()
    assert not any(m["model"].startswith("ckpt-run@") for m in board["models"])  # history, not the board


def test_browser_leaderboard_export_and_a_blind_vote(stack, tiny_b_served, tmp_path):
    """The Evaluate page's leaderboard and CSV download, then a blind pairwise vote on the Human eval
    page, in headless Chromium against the live stack (tiny-b deployed beside tiny-a for the vote)."""
    from eval_browser import check_eval_pages
    from serve_helpers import free_port

    base, ws = stack["base"], stack["workspace"]
    recipe.run(EvalConfig(models=["tiny-a", "tiny-b"], tasks=["world_facts"], backend="hf", limit=4), ws,
               eval_id="it-browser", say=lambda *_: None)
    out = check_eval_pages(base, free_port(), tmp_path)
    assert not out["errors"], out["errors"]
    assert "Traceback" not in out["leaderboard_text"] + out["vote_text"]
    header, *rows = out["csv"].strip().splitlines()
    assert header.startswith("model,average_normalized,world_facts,")
    assert {r.split(",")[0] for r in rows} >= {"tiny-a", "tiny-b"}
    assert "Left was" in out["vote_text"] and "tiny-a" in out["vote_text"] and "tiny-b" in out["vote_text"]
    board = httpx.get(f"{base}/api/human/leaderboard", timeout=30).json()
    assert {m["model"] for m in board["models"]} == {"tiny-a", "tiny-b"} and sum(m["wins"] for m in board["models"]) == 1
