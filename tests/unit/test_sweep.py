"""Sweep configs, the sweep record, /api/sweeps, `playground tune`'s errors and the Sweeps page.

No Ray Tune here: tests/integration/test_tune.py runs a real 4-trial sweep with ASHA.
"""

import math
from pathlib import Path

import pytest
import yaml
from apihelp import assert_error
from fakejobs import FakeJobs, jobs_api
from fastapi.testclient import TestClient
from ui_stub import start_stub

from cluster.cli import main
from tests.ui_checks import open_page, shown
from training.errors import UserError
from training.pretrain import sweep, sweep_record
from training.workspace import PROJECT_ROOT, Workspace
from ui.format import parallel_rows, trial_rows

BASE = "configs/pretrain/nano.yaml"


def load(data: dict):
    return sweep.load_sweep(None, data={"base": BASE, **data})


@pytest.mark.parametrize("path", sorted((PROJECT_ROOT / "configs" / "tune").glob("*.yaml")))
def test_shipped_sweeps_load(path):
    cfg, base, name = sweep.load_sweep(path)
    assert name == path.stem and cfg.search and base.train.max_steps == (60 if cfg.stage == "sft" else 300)
    assert type(base).__name__ == ("SFTConfig" if cfg.stage == "sft" else "PretrainConfig")


def test_sft_sweeps_check_against_the_sft_schema():
    sft = {"stage": "sft", "base": "configs/sft/demo.yaml"}
    _, base, _ = sweep.load_sweep(None, data={**sft, "search": {"lora.r": {"grid": [1, 4]}, "method": {
        "grid": ["lora", "full"]}}, "fixed": {"train.max_steps": 20}})
    trial = sweep.trial_config(base, {"lora.r": 4, "method": "lora"}, run_name="s-t00001", experiment="sweep-s")
    assert (trial.lora.r, trial.method, trial.train.max_steps, trial.run_name) == (4, "lora", 20, "s-t00001")
    assert trial.tracking.experiment == "sweep-s" and trial.base.model == base.base.model
    for search, needle in [({"method": {"grid": ["lora", "prefix"]}}, "search.method: grid value 'prefix'"),
                           ({"base.model": {"grid": ["a"]}}, "search.base.model: data and base settings are shared"),
                           ({"model.n_layer": {"grid": [2]}}, "search.model.n_layer: grid value 2: unknown key")]:
        with pytest.raises(UserError) as e:
            sweep.load_sweep(None, data={**sft, "search": search})
        assert needle in str(e.value) and "\n" not in str(e.value) and "Value error" not in str(e.value)


def test_sft_trial_results_come_from_the_runs_results(tmp_path):
    ws = Workspace(tmp_path)
    ws.run("s-t00000").mkdir(parents=True)
    (ws.run("s-t00000") / "results.json").write_text(
        '{"model": "s-t00000-sft", "base": {"val": 0.0}, "sft": {"val": 0.5, "heldout_entity": 0.25}, "x": 1}')
    assert sweep_record.trial_results(ws, "s-t00000") == {
        "model": "s-t00000-sft", "base": {"val": 0.0}, "sft": {"val": 0.5, "heldout_entity": 0.25}}
    assert sweep_record.trial_results(ws, "s-t00001") is None  # stopped early, or a pretraining trial
    record = {"metric": "val_loss", "best_trial": None, "trials": {"t_00000": {
        "trial": "t_00000", "status": "TERMINATED", "params": {"train.lr": 1e-3}, "best_metric": 1.2,
        "results": sweep_record.trial_results(ws, "s-t00000")}}}
    rows, columns = trial_rows(record)
    assert columns == ["train.lr"] and rows[0]["accuracy heldout_entity"] == 0.25 and rows[0]["accuracy val"] == 0.5
    # the best SFT trial's model is registered as it is (no export); a missing one is an error, not a crash
    missing = sweep_record.register_best(ws, {"stage": "sft"}, {"trial": "t_00000", "results": {"model": "gone"}})
    assert "saved no model" in missing["error"]


@pytest.mark.parametrize("search, needle", [
    ({"train.lrr": {"grid": [1e-3]}}, "search.train.lrr: grid value 0.001: unknown key"),
    ({"train.lr": {"choice": [1e-3, -1]}}, "search.train.lr: choice value -1: Input should be greater than 0"),
    ({"train.lr": {"loguniform": [0, 1]}}, "train.lr: loguniform takes [low, high] with low < high and low > 0"),
    ({"train.lr": {"uniform": [2, 1]}}, "train.lr: uniform takes [low, high]"),
    ({"train.lr": {"grid": []}}, "train.lr: grid takes a non-empty list"),
    ({"train.lr": {"grid": [1], "choice": [2]}}, "give exactly one of grid, choice, uniform, loguniform"),
    ({"data.synthetic_chars": {"grid": [1000]}}, "data and tokenizer settings are shared by all trials"),
    ({"model.n_head": {"grid": [3]}}, "search.model.n_head: grid value 3"),  # 128 is not divisible by 3
])
def test_bad_searches_are_one_line_errors_naming_the_key(search, needle):
    with pytest.raises(UserError) as e:
        load({"search": search})
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_other_bad_sweeps():
    with pytest.raises(UserError, match="base: config file not found: nope.yaml"):
        sweep.load_sweep(None, data={"base": "nope.yaml", "search": {"train.lr": {"grid": [1e-3]}}})
    with pytest.raises(UserError, match="mode"):
        load({"search": {"train.lr": {"grid": [1e-3]}}, "mode": "max"})
    with pytest.raises(UserError, match="fixed: train.max_steps: Input should be greater than 0"):
        load({"search": {"train.lr": {"grid": [1e-3]}}, "fixed": {"train.max_steps": 0}})
    with pytest.raises(UserError, match="max_concurrent_trials"):
        load({"search": {"train.lr": {"grid": [1e-3]}}, "max_concurrent_trials": 0})


def test_fixed_then_trial_values_make_each_trials_config():
    cfg, base, _ = load({"fixed": {"train.max_steps": 40, "model.n_layer": 2},
                         "search": {"train.lr": {"loguniform": [1e-4, 1e-2]},
                                    "model": {"grid": [{"n_layer": 1, "n_embd": 256}]}}})
    assert base.train.max_steps == 40 and base.model.n_layer == 2
    trial = sweep.trial_config(base, {"train.lr": 5e-3, "model": {"n_layer": 1, "n_embd": 256}},
                               run_name="s-t00001", experiment="sweep-s")
    assert (trial.train.lr, trial.model.n_layer, trial.model.n_embd, trial.model.n_head) == (5e-3, 1, 256, 4)
    assert trial.run_name == "s-t00001" and trial.tracking.experiment == "sweep-s"
    assert trial.train.max_steps == 40 and base.train.lr == 3e-3  # the base is untouched

    space = sweep.param_space(cfg)
    assert space["model"] == {"grid_search": [{"n_layer": 1, "n_embd": 256}]}
    assert 1e-4 <= space["train.lr"].sample() <= 1e-2  # a Tune Domain
    assert sweep_record.trial_run_id("lr-20260101-000000", "37dbd_00003") == "lr-20260101-000000-t00003"


def _record(ws):
    rec = {"sweep_id": "lr-1", "name": "lr", "status": "FINISHED", "created_at": "2026-11-21T10:00:00",
           "finished_at": None, "metric": "val_loss", "mode": "min", "max_steps": 20, "search_keys": ["train.lr"],
           "registered": {"model": "lr-1-best", "run_id": "lr-1-t00000", "checkpoint": "checkpoint_000020",
                          "mlflow_model": "sweep-lr", "mlflow_version": 1},
           "trials": {
               "a_00000": {"trial": "a_00000", "run_id": "lr-1-t00000", "params": {"train.lr": 3e-3},
                           "status": "TERMINATED", "step": 20, "best_metric": 4.9, "curve": [[10, 5.2], [20, 4.9]]},
               "a_00001": {"trial": "a_00001", "run_id": "lr-1-t00001", "params": {"train.lr": 1e-6},
                           "status": "EARLY_STOPPED", "step": 10, "best_metric": 6.2, "curve": [[10, 6.2]]},
               "a_00002": {"trial": "a_00002", "run_id": "lr-1-t00002", "params": {"train.lr": 1e-2},
                           "status": "ERROR", "step": None, "best_metric": None, "curve": []}}}
    rec["best_trial"], rec["best_metric"] = sweep_record.best_of(rec["trials"], "val_loss")
    sweep_record.write_record(ws, rec)
    return rec


def test_record_best_and_summary_line(tmp_path):
    ws = Workspace(tmp_path)
    rec = _record(ws)
    assert (rec["best_trial"], rec["best_metric"]) == ("a_00000", 4.9)
    assert sweep_record.best_of({"x": {"best_metric": math.nan}, "y": {"best_metric": None}}, "val_loss") == (None, None)
    assert sweep_record.summary_line(rec) == {"trials": 2, "best_trial": "a_00000", "best_metric": 4.9,
                                       "best_config": {"train.lr": 3e-3}}
    assert sweep_record.read_record(ws, "lr-1")["status"] == "FINISHED"
    assert sweep_record.read_record(ws, "../lr-1") is None and sweep_record.read_record(ws, "nope") is None
    assert [s["sweep_id"] for s in sweep_record.list_sweeps(ws)] == ["lr-1"] and sweep_record.list_sweeps(ws)[0]["trials"] == 3
    assert not list((tmp_path / "sweeps" / "lr-1").glob(".*tmp"))  # written aside, then renamed


def test_trial_rows_and_parallel_axes_for_the_page():
    rows, cols = trial_rows({"metric": "val_loss", "best_trial": "b", "trials": {
        "a": {"trial": "a", "status": "TERMINATED", "params": {"train.lr": 1e-4, "model": {"n_layer": 2}},
              "best_metric": 5.0},
        "b": {"trial": "b", "status": "TERMINATED", "params": {"train.lr": 1e-2, "model": {"n_layer": 8}},
              "best_metric": 4.0}}})
    assert cols == ["train.lr", "model.n_layer"] and [r["best"] for r in rows] == [False, True]
    axes = {(p["trial"], p["axis"]): p["scaled"] for p in parallel_rows(rows, cols, "best val_loss")}
    assert axes[("a", "train.lr (log)")] == 0 and axes[("b", "train.lr (log)")] == 1  # 100x apart: log axis
    assert axes[("b", "model.n_layer")] == 1 and axes[("a", "best val_loss")] == 1


def _api(tmp_path, monkeypatch):
    from services.sweeps_api import router

    app = jobs_api(Workspace(tmp_path / "ws"), monkeypatch)
    app.include_router(router, prefix="/api")
    return app


def test_sweep_routes_and_tune_jobs(tmp_path, monkeypatch):
    api = TestClient(_api(tmp_path, monkeypatch))
    assert api.get("/api/sweeps").json() == []
    _record(Workspace(tmp_path / "ws"))
    assert api.get("/api/sweeps").json()[0]["best_trial"] == "a_00000"
    assert api.get("/api/sweeps/lr-1").json()["trials"]["a_00001"]["status"] == "EARLY_STOPPED"
    assert_error(api.get("/api/sweeps/nope"), 404, "sweep_id")

    out = api.post("/api/jobs", json={"kind": "tune", "config": {
        "base": BASE, "search": {"train.lr": {"grid": [1e-3, 3e-3]}}}}).json()
    job = FakeJobs.jobs[out["job_id"]]
    assert job.entrypoint.endswith(f"-m cluster.cli tune --config {out['config_file']}")
    saved = yaml.safe_load(Path(out["config_file"]).read_text())
    assert saved["base"] == BASE and saved["scheduler"]["type"] == "asha"
    assert sweep.load_sweep(out["config_file"])[1].model.n_layer == 4  # the job finds the base from workspace/jobs
    assert_error(api.post("/api/jobs", json={"kind": "tune", "config": {
        "base": BASE, "search": {"train.lr": {"grid": [-1]}}}}), 400, "config.search.train.lr")


def test_tune_cli_errors_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"base": str(PROJECT_ROOT / BASE), "search": {"model.n_layr": {"grid": [2]}}}))
    assert main(["--workspace", str(tmp_path / "ws"), "tune", "--config", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "search.model.n_layr" in err and "\n" not in err
    assert main(["--workspace", str(tmp_path / "ws"), "tune", "--config", str(tmp_path / "no.yaml")]) == 2


def test_sweeps_page(tmp_path, monkeypatch):
    server = start_stub(_api(tmp_path, monkeypatch))
    monkeypatch.setenv("PLAYGROUND_URL", server.url)
    monkeypatch.delenv("PLAYGROUND_API_KEY", raising=False)
    try:
        at = open_page("pages/7_Sweeps.py")
        assert not at.exception and "No sweeps yet" in at.info[0].value
        _record(Workspace(tmp_path / "ws"))
        at = open_page("pages/7_Sweeps.py")
        assert not at.exception and not at.error, [e.value for e in at.error]
        trials = at.dataframe[1].value
        assert list(trials["status"]) == ["TERMINATED", "EARLY_STOPPED", "ERROR"]
        seen = shown(at.dataframe[1])  # the numbers rounded for reading (the plots get `trials`' own)
        assert list(seen["train.lr"]) == ["3.00e-03", "1.00e-06", "1.00e-02"]
        assert list(seen["best val_loss"]) == ["4.9000", "6.2000", ""] and list(seen["step"]) == ["20", "10", ""]
        assert at.metric[0].value == "4.9000" and "train.lr: 0.003" in at.code[0].value
        assert "lr-1-best" in at.success[0].value and "sweep-lr v1" in at.success[0].value

        at.text_area(key="sweep_config").set_value("base: nope.yaml\nsearch: {train.lr: {grid: [0.001]}}\n").run()
        next(b for b in at.button if b.label == "Start sweep").click().run()
        assert "config.base: config file not found" in at.error[0].value and FakeJobs.jobs == {}
        at.text_area(key="sweep_config").set_value(
            f"base: {BASE}\nsearch: {{train.lr: {{grid: [0.001]}}}}\n").run()
        next(b for b in at.button if b.label == "Start sweep").click().run()
        assert "Submitted job raysubmit_1" in at.success[0].value
    finally:
        server.stop()
