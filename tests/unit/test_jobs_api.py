"""/api/jobs (services/jobs_api.py) on a FastAPI test client.

Only Ray's JobSubmissionClient is replaced (by `FakeJobs`, which keeps jobs the way Ray's
job table does); the integration tests submit, tail and stop a real training job.
"""

from pathlib import Path
from types import SimpleNamespace

import pytest
import yaml
from apihelp import assert_error
from fakejobs import FakeJobs, jobs_api
from fastapi.testclient import TestClient
from ray.job_submission import JobStatus

from training.workspace import Workspace


@pytest.fixture
def api(tmp_path, monkeypatch):
    return TestClient(jobs_api(Workspace(tmp_path / "ws"), monkeypatch))


def test_submit_writes_the_config_and_runs_the_cli(api, tmp_path):
    resp = api.post("/api/jobs", json={"kind": "pretrain", "config": {
        "run_name": "web-run", "train": {"max_steps": 5}, "model": {"n_layer": 2}}})
    assert resp.status_code == 202, resp.text
    out = resp.json()
    job = FakeJobs.jobs[out["job_id"]]
    assert out["name"] == "web-run" and job.metadata == {"kind": "pretrain", "name": "web-run",
                                                         "config_file": out["config_file"]}
    assert job.entrypoint.endswith(f"-m cluster.cli pretrain --config {out['config_file']}")
    saved = yaml.safe_load(Path(out["config_file"]).read_text())
    assert saved["train"]["max_steps"] == 5 and saved["model"]["n_layer"] == 2 and "lr" in saved["train"]
    assert job.runtime_env["env_vars"]["PLAYGROUND_WORKSPACE"] == str(tmp_path / "ws")
    tok = api.post("/api/jobs", json={"kind": "tokenizer", "config": {}}).json()
    assert "cluster.cli tokenizer train --config" in FakeJobs.jobs[tok["job_id"]].entrypoint
    data = api.post("/api/jobs", json={"kind": "data", "config": {"name": "d", "sources": ["planted:1"]}}).json()
    assert "cluster.cli data run --config" in FakeJobs.jobs[data["job_id"]].entrypoint


def test_submit_an_sft_job(api, tmp_path):
    resp = api.post("/api/jobs", json={"kind": "sft", "config": {
        "run_name": "sft-web", "base": {"model": "tiny-a"}, "method": "full", "train": {"max_steps": 4}}})
    assert resp.status_code == 202, resp.text
    out = resp.json()
    job = FakeJobs.jobs[out["job_id"]]
    assert out["kind"] == "sft" and out["name"] == "sft-web" and job.metadata["kind"] == "sft"
    assert job.entrypoint.endswith(f"-m cluster.cli sft --config {out['config_file']}")
    saved = yaml.safe_load(Path(out["config_file"]).read_text())
    assert saved["base"]["model"] == "tiny-a" and saved["method"] == "full" and saved["train"]["max_steps"] == 4
    assert saved["lora"]["r"] == 16 and saved["data"]["sources"] == ["instructions"]  # the defaults, resolved
    assert [j["kind"] for j in api.get("/api/jobs").json()] == ["sft"]

    rows = tmp_path / "mine.jsonl"  # a local file: checked here, and made absolute for the job
    rows.write_text('{"instruction": "Say hi", "output": "hi"}\n')
    out = api.post("/api/jobs", json={"kind": "sft", "config": {
        "base": {"model": "tiny-a"}, "data": {"sources": [str(rows)], "shape": "alpaca"}}}).json()
    assert yaml.safe_load(Path(out["config_file"]).read_text())["data"]["sources"] == [str(rows)]
    assert_error(api.post("/api/jobs", json={"kind": "sft", "config": {
        "base": {"model": "tiny-a"}, "data": {"sources": ["instructions", "/no/such.jsonl"]}}}), 404,
        "config.data.sources[1]")


def test_bad_requests_name_the_field(api):
    assert_error(api.post("/api/jobs", json={"kind": "finetune", "config": {}}), 400, "kind")
    assert_error(api.post("/api/jobs", json={"kind": "pretrain", "config": {"train": {"lr": -1}}}), 400,
                 "config.train.lr")
    assert_error(api.post("/api/jobs", json={"kind": "pretrain", "config": {"trian": {}}}), 400, "config.trian")
    assert_error(api.post("/api/jobs", json={"kind": "sft", "config": {}}), 400, "config.base")
    assert_error(api.post("/api/jobs", json={"kind": "sft", "config": {"base": {"model": "m"}, "method": "dora"}}),
                 400, "config.method")
    assert_error(api.post("/api/jobs", json={"kind": "sft", "config": {"base": {"model": "m"}, "lora": {"r": 0}}}),
                 400, "config.lora.r")
    assert_error(api.post("/api/jobs", json={"kind": "sft", "config": {"base": {"model": "m"},
                                                                       "train": {"precision": "fp16"}}}),
                 400, "config.train.precision")
    assert_error(api.post("/api/jobs", json={"kind": "data", "config": {"sources": ["/no/such/file"]}}), 404,
                 "config.sources[0]")
    assert FakeJobs.jobs == {}  # nothing was submitted


def test_list_status_logs_stop(api):
    first = api.post("/api/jobs", json={"kind": "pretrain", "config": {"run_name": "a"}}).json()["job_id"]
    second = api.post("/api/jobs", json={"kind": "data", "config": {"sources": ["synthetic"]}}).json()["job_id"]
    FakeJobs.jobs["raysubmit_other"] = SimpleNamespace(  # someone's own `ray job submit`: not listed
        submission_id="raysubmit_other", status=JobStatus.RUNNING, metadata={}, entrypoint="python x.py",
        start_time=5000, end_time=None, message=None)
    listed = api.get("/api/jobs").json()
    assert [j["job_id"] for j in listed] == [second, first] and listed[1]["kind"] == "pretrain"

    FakeJobs.jobs[first].status = JobStatus.RUNNING
    FakeJobs.logs[first] = "".join(f"step {i} loss {5 - i / 10:.2f}\n" for i in range(50)) + "bar 10%\rbar 20%"
    logs = api.get(f"/api/jobs/{first}/logs", params={"tail": 3}).json()
    assert logs["lines"] == ["step 49 loss 0.10", "bar 10%", "bar 20%"] and logs["status"] == "RUNNING"
    assert_error(api.get(f"/api/jobs/{first}/logs", params={"tail": 0}), 400, "tail")

    stopped = api.post(f"/api/jobs/{first}/stop").json()
    assert stopped == {"job_id": first, "status": "STOPPING", "stopped": True}
    assert api.get(f"/api/jobs/{first}").json()["status"] == "STOPPED"
    assert api.post(f"/api/jobs/{first}/stop").json()["stopped"] is False  # already finished

    FakeJobs.jobs[second].status = JobStatus.FAILED
    FakeJobs.logs[second] = "progress: 0/4 read_clean\nerror: sources[0]: not found: x\n"
    assert api.get(f"/api/jobs/{second}").json()["error"] == "error: sources[0]: not found: x"

    for path in ("/api/jobs/raysubmit_other", "/api/jobs/raysubmit_nope/logs", "/api/jobs/bad$id"):
        assert_error(api.get(path), 404, "job_id")
    assert_error(api.post("/api/jobs/raysubmit_nope/stop"), 404, "job_id")
