"""The Evaluate page (Streamlit AppTest) against the real /api/evals and /api/leaderboard routes on a
workspace holding two evaluations and two report cards written here, with Ray's job client faked (`FakeJobs`); and the page's
pure helpers in ui/format_eval.py. The integration tests run real evaluations behind the same routes."""

from __future__ import annotations

import csv
import io
import json

import pytest
from fakejobs import FakeJobs
from ui_stub import KEY, SFT_RUN, make_app, start_stub

from evaluation import records
from tests.ui_checks import open_page, shown
from training.workspace import Workspace
from ui.format_eval import board_frame, compare_text, interval_frame

PAGE = "pages/9_Evaluate.py"
A, B = "demo-base", SFT_RUN
TASKS = ("world_facts", "world_arithmetic", "world_stories")


def _items(n: int, right: int) -> list[dict]:
    return [{"doc_id": i, "prompt": f"Q{i}", "target": 0, "pred": 0 if i < right else 1, "acc": float(i < right)}
            for i in range(n)]


def _write(ws: Workspace, eval_id: str, model: str, scores: dict[str, int], when: str) -> None:
    rows = []
    for task, right in scores.items():
        acc = right / 40
        rows.append(records.score_row(model, task, task, {"acc": acc, "acc_stderr": (acc * (1 - acc) / 39) ** 0.5},
                                      40, 0.25))
        records.write_samples(ws, eval_id, model, {task: _items(40, right)})
    records.write_record(ws, {"eval_id": eval_id, "name": eval_id, "status": "SUCCEEDED", "created_at": when,
                              "finished_at": when, "progress": {"done": 3, "total": 3, "running": []},
                              "config": {"models": [model], "tasks": ["world"], "backend": "hf"},
                              "models": {model: {"model": model}}, "rows": rows, "groups": [], "errors": []})


@pytest.fixture
def server(tmp_path, monkeypatch):
    from services.evals_api import router
    from services.reports_api import router as reports_router

    ws = Workspace(tmp_path / "ws")
    _write(ws, "eval-a", A, {"world_facts": 12, "world_arithmetic": 15, "world_stories": 10}, "2026-12-01T10:00:00")
    _write(ws, "eval-b", B, {"world_facts": 36, "world_arithmetic": 20, "world_stories": 12}, "2026-12-02T10:00:00")
    (ws.model(B)).mkdir(parents=True)
    (ws.model(B) / "config.json").write_text(json.dumps({"n_positions": 128}))
    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", FakeJobs)
    FakeJobs.jobs, FakeJobs.logs = {}, {}
    app = make_app()
    app.include_router(router, prefix="/api")
    app.include_router(reports_router, prefix="/api")
    app.state.workspace, app.state.dashboard_url = ws, "http://127.0.0.1:1"
    server = start_stub(app)
    monkeypatch.setenv("PLAYGROUND_URL", server.url)
    monkeypatch.setenv("PLAYGROUND_API_KEY", KEY)
    yield server
    server.stop()


def _clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_leaderboard_ranks_models_exports_and_compares_two(server):
    at = open_page(PAGE)
    _clean(at)
    frame = at.dataframe[0].value
    assert list(frame["model"]) == [B, A]  # B is ahead on average, normalised to chance
    assert list(frame.columns) == ["model", "average (vs chance)", "tasks", *sorted(TASKS)]
    assert frame.loc[0, "world_facts"] == pytest.approx(36 / 40)
    at.toggle(key="ev_norm").set_value(True).run()
    assert at.dataframe[0].value.loc[0, "world_facts"] == pytest.approx((0.9 - 0.25) / 0.75)
    intervals = shown(at.dataframe[1])
    assert intervals.loc[0, "world_facts"].startswith("0.900 [") and intervals.loc[0, "world_facts"].endswith("n=40")
    assert len(at.get("plotly_chart")) == 1  # the radar of the top models
    buttons = {b.proto.label for b in at.get("download_button")}
    assert buttons == {"Download CSV", "Download JSON"}
    at.selectbox(key="ev_cmp_task").set_value("world_facts").run()
    at.button(key="ev_cmp_go").click().run()
    _clean(at)
    text = at.markdown[-1].value
    assert f"On 40 shared items, {B} scores 0.900 and {A} 0.300" in text
    assert "a real difference at the 5% level" in text and "McNemar: 24 items only" in text


def test_leaderboard_csv_has_a_row_per_model(server):
    from ui.client import PlaygroundClient

    rows = list(csv.DictReader(io.StringIO(PlaygroundClient().leaderboard_csv())))
    assert [r["model"] for r in rows] == [B, A]
    assert float(rows[0]["world_facts"]) == pytest.approx(0.9) and rows[0]["world_facts_n"] == "40"
    assert float(rows[0]["world_facts_ci_low"]) < 0.9 < float(rows[0]["world_facts_ci_high"])


def test_run_submits_an_eval_job_and_evaluations_show_the_items(server):
    at = open_page(PAGE)
    at.radio(key="ev_view").set_value("Run").run()
    _clean(at)
    at.multiselect(key="ev_models").set_value([B])
    at.multiselect(key="ev_suites").set_value(["world_facts", "mmlu"])
    at.radio(key="ev_backend").set_value("hf")
    at.number_input(key="ev_limit").set_value(20)
    at.button[0].click().run()  # the form's submit button
    _clean(at)
    assert "started (job raysubmit_1)" in at.success[0].value
    job = FakeJobs.jobs["raysubmit_1"]
    assert job.metadata["kind"] == "eval" and " eval --config " in job.entrypoint

    at.radio(key="ev_view").set_value("Evaluations").run()
    _clean(at)
    assert list(at.dataframe[0].value["evaluation"]) == ["eval-b", "eval-a"]
    assert at.selectbox(key="ev_id").value == "eval-b"
    tasks = at.dataframe[1].value
    assert set(tasks["task"]) == set(TASKS) and set(tasks["items"]) == {40}
    items = at.dataframe[2].value
    assert len(items) == 40 and list(items.columns) == ["doc_id", "prompt", "target", "pred", "acc"]


def test_run_names_what_is_wrong(server):
    at = open_page(PAGE)
    at.radio(key="ev_view").set_value("Run").run()
    at.multiselect(key="ev_models").set_value(["tiny-shakespeare/step-100"])
    at.radio(key="ev_backend").set_value("hf")
    at.button[0].click().run()
    assert not at.exception
    assert "models: no model 'tiny-shakespeare/step-100' in the workspace" in at.error[0].value
    assert FakeJobs.jobs == {}


def test_history_draws_score_against_step_and_run_can_ask_for_every_checkpoint(server, tmp_path):
    ws = Workspace(tmp_path / "ws")
    at = open_page(PAGE)
    at.radio(key="ev_view").set_value("History").run()
    _clean(at)
    assert "No checkpoint scores yet" in at.info[0].value
    for step, right in ((100, 12), (200, 24)):
        model = f"{A}@{step}"
        _write(ws, f"eval-ck{step}", model, {"world_facts": right}, f"2026-12-03T0{step // 100}:00:00")
        rec = records.read_record(ws, f"eval-ck{step}")
        rec["models"] = {model: {"model": model, "run_id": "r", "step": step, "checkpoint": "/x"}}
        records.write_record(ws, rec)
    at.run()
    _clean(at)
    assert at.selectbox(key="ev_hist_run").value == "r"
    assert len(at.get("plotly_chart")) == 1
    points = at.dataframe[0].value
    assert list(points["step"]) == [100, 200] and list(points["score"]) == pytest.approx([0.3, 0.6])

    at.radio(key="ev_view").set_value("Run").run()
    at.multiselect(key="ev_models").set_value([B])
    at.checkbox(key="ev_checkpoints").check()
    at.button[0].click().run()
    assert not at.exception  # B is not a run with checkpoints here: the page says so, in one line
    assert f"models: no run {B!r} with checkpoints" in at.error[0].value and FakeJobs.jobs == {}


def test_format_helpers():
    board = {"tasks": ["t1", "t2"], "models": [
        {"model": "m", "average": 0.5, "n_tasks": 1, "cells": {"t1": {"score": 0.75, "normalized": 0.5,
                                                                      "ci95": [0.6, 0.9], "n": 10}}}]}
    assert board_frame(board).to_dict("records") == [{"model": "m", "average (vs chance)": 0.5, "tasks": 1,
                                                      "t1": 0.75, "t2": None}]
    assert interval_frame(board).loc[0, "t1"] == "0.750 [0.600, 0.900] n=10"
    same = {"a": "x", "b": "y", "mean_a": 0.5, "mean_b": 0.5,
            "bootstrap": {"n": 10, "diff": 0.0, "ci95": [-0.1, 0.1], "p_value": 1.0}}
    assert "no difference the test can tell from chance" in compare_text(same)


def test_report_cards_show_the_newest_and_compare_two(server, tmp_path):
    from evaluation.report import build_report, write_report

    ws = Workspace(tmp_path / "ws")
    for name, seconds in (("demo-1", 100.0), ("demo-2", 80.0)):
        card = build_report(ws, stages=[{"name": "data", "title": "1/8 data", "seconds": seconds, "command": "x",
                                         "rc": 0}], run_id=name, sft_id=None, eval_id=None, seed=1)
        card["created_at"] = f"2026-12-0{name[-1]}T00:00:00"
        write_report(ws, card, name)
    at = open_page(PAGE)
    at.radio(key="ev_view").set_value("Report cards").run()
    _clean(at)
    assert at.selectbox(key="ev_report").options == ["demo-2", "demo-1"]
    assert any("demo-2" in m.value for m in at.markdown)
    rows = at.dataframe[0].value
    total = rows[rows["figure"].str.contains("seconds")].iloc[0]
    assert (total["a"], total["b"], total["change"]) == (100.0, 80.0, -20.0)
