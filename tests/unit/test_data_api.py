"""The data pipeline's HTTP routes (services/data_api.py) on a FastAPI test client.

The routes are the real ones with the real `harden` errors, on snapshot folders written in
the pipeline's formats (tests/unit/datafix.py). Only Ray's JobSubmissionClient is replaced,
by `FakeJobs`: the integration tests submit a real pipeline job to a real cluster.
"""

import hashlib
import json
import shlex
import sys
from types import SimpleNamespace
from typing import ClassVar

import pytest
import yaml
from apihelp import assert_error
from datafix import READ, write_fixture_snapshot
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ray.job_submission import JobStatus

from services.data_api import parse_job_logs
from services.data_api import router as data_router
from services.llm import harden
from services.tokenizer_api import router as tokenizer_router
from training.data import uploads
from training.data.config import PipelineConfig
from training.workspace import Workspace

A, B = "web-1a2b3c4d", "web-5e6f7a8b"


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    write_fixture_snapshot(ws, A)
    write_fixture_snapshot(ws, B, parent=A, created_at="2026-11-22T09:00:00+00:00", near_dup=9,
                           config={"near_dedup": {"threshold": 0.7}})
    legacy = ws.dataset("tiny-shakespeare")  # a dataset `playground data prepare` registered: not a snapshot
    legacy.mkdir(parents=True)
    (legacy / "manifest.json").write_text(json.dumps({"sources": ["tinyshakespeare.txt"], "counts": {}}))
    return ws


@pytest.fixture(scope="module")
def api(ws):
    app = FastAPI()
    app.include_router(data_router, prefix="/api")
    app.include_router(tokenizer_router, prefix="/api")
    harden(app, set(), None, redact=ws.redact_root)  # as services/api.py does
    app.state.workspace, app.state.dashboard_url = ws, "http://127.0.0.1:1"
    return TestClient(app)


class FakeJobs:
    """Stands in for ray.job_submission.JobSubmissionClient: records submissions, answers from `jobs`."""

    submitted: ClassVar[list[dict]] = []
    jobs: ClassVar[dict[str, tuple]] = {}  # job id -> (status, metadata, logs)

    def __init__(self, address):
        self.address = address

    def submit_job(self, *, entrypoint, runtime_env, metadata):
        FakeJobs.submitted.append({"entrypoint": entrypoint, "runtime_env": runtime_env, "metadata": metadata,
                                   "address": self.address})
        job_id = f"raysubmit_{len(FakeJobs.submitted)}"
        FakeJobs.jobs[job_id] = (JobStatus.PENDING, metadata, "")
        return job_id

    def get_job_info(self, job_id):
        if job_id not in FakeJobs.jobs:
            raise RuntimeError(f"Job {job_id} does not exist")
        status, metadata, _ = FakeJobs.jobs[job_id]
        return SimpleNamespace(status=status, metadata=metadata, message="Job entrypoint command failed with exit code 2")

    def get_job_logs(self, job_id):
        return FakeJobs.jobs[job_id][2]


@pytest.fixture
def jobs(monkeypatch):
    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", FakeJobs)
    FakeJobs.submitted, FakeJobs.jobs = [], {}
    return FakeJobs


# ---------------------------------------------------------------------------- snapshots


def test_list_snapshots_newest_first(api):
    snaps = api.get("/api/data/snapshots").json()
    assert [s["id"] for s in snaps] == [B, A]  # the registered non-snapshot dataset is not listed
    assert snaps[0]["parent"] == A and snaps[1]["parent"] is None
    assert snaps[0]["sources"] == [f"snapshot:{A}"]
    assert snaps[1]["docs_in"] == READ - 2 and snaps[1]["docs_out"] == 90
    assert snaps[1]["splits"] == {"train": 81, "val": 5, "test": 4}


def test_snapshot_detail(api, ws):
    out = api.get(f"/api/data/snapshots/{A}").json()
    manifest, stats = out["manifest"], out["stats"]
    assert manifest["id"] == A and manifest["config"]["stages"]["near_dedup"]["threshold"] == 0.8
    for row in stats["stages"]:
        assert row["in"] - row["out"] == row["removed"] == sum(row["reasons"].values())
        assert manifest["counts"][row["stage"]] == {"in": row["in"], "out": row["out"]}
    train = ws.dataset(A) / "train.jsonl"
    assert manifest["outputs"]["train.jsonl"]["sha256"] == hashlib.sha256(train.read_bytes()).hexdigest()
    assert stats["totals"]["docs"] == sum(s["docs"] for s in stats["splits"].values()) == 90


def test_samples_filter_and_page(api):
    url = f"/api/data/snapshots/{A}/samples"
    removed = api.get(url, params={"status": "removed", "limit": 500}).json()
    assert removed["total"] == len(removed["items"]) > 10
    assert {s["status"] for s in removed["items"]} == {"removed"} and all(s["reason"] for s in removed["items"])
    lang = api.get(url, params={"stage": "language", "reason": "lang:"}).json()
    assert lang["total"] == 5 and {s["reason"] for s in lang["items"]} == {"lang:de", "lang:unknown"}
    kept = api.get(url, params={"status": "kept", "limit": 5, "offset": 5}).json()
    assert kept["total"] == 12 and [s["doc_id"] for s in kept["items"]] == [1005, 1006, 1007, 1008, 1009]
    both = api.get(url, params={"status": "all", "stage": "", "reason": ""}).json()
    assert both["total"] == removed["total"] + kept["total"]


def test_diff(api):
    d = api.get("/api/data/diff", params={"a": A, "b": B}).json()
    assert d["related"] and d["config"]["stages.near_dedup.threshold"] == [0.8, 0.7]
    assert d["counts"]["near_dedup"] == {"a": 90, "b": 86} and d["counts"]["quality"] == {"a": 100, "b": 100}
    assert d["inputs"]["added"] == [f"snapshot:{A}"] and d["inputs"]["removed"] == ["/data/a.jsonl"]
    assert d["outputs"]["train.jsonl"]["docs_a"] == 81 and not d["outputs"]["train.jsonl"]["same"]
    same = api.get("/api/data/diff", params={"a": A, "b": A}).json()
    assert same["config"] == {} and all(o["same"] for o in same["outputs"].values())


def test_snapshot_errors_name_the_field(api):
    assert_error(api.get("/api/data/snapshots/web-00000000"), 404, "snapshot")
    assert_error(api.get("/api/data/snapshots/tiny-shakespeare"), 404, "snapshot")  # a dataset, not a snapshot
    assert_error(api.get("/api/data/snapshots/bad id!"), 400, "snapshot")
    url = f"/api/data/snapshots/{A}/samples"
    assert_error(api.get("/api/data/snapshots/web-00000000/samples"), 404, "snapshot")
    assert_error(api.get(url, params={"status": "deleted"}), 400, "status")
    assert_error(api.get(url, params={"limit": 0}), 400, "limit")
    assert_error(api.get(url, params={"limit": 501}), 400, "limit")
    assert_error(api.get(url, params={"limit": "ten"}), 400, "limit")
    assert_error(api.get(url, params={"offset": -1}), 400, "offset")
    assert "near_dedup" in assert_error(api.get(url, params={"stage": "neardedup"}), 400, "stage")
    assert_error(api.get("/api/data/diff", params={"a": "web-00000000", "b": B}), 404, "a")
    assert_error(api.get("/api/data/diff", params={"a": A, "b": "web-00000000"}), 404, "b")
    assert_error(api.get("/api/data/diff", params={"b": B}), 400, "a")


def test_errors_name_ids_not_server_paths(api, ws, jobs):
    """The messages come from code the CLI shares (which may name folders for a local user);
    over HTTP they name the id, and the server's workspace path never shows."""
    cases = [
        (api.get("/api/data/diff", params={"a": "web-00000000", "b": B}), 404, "a", "web-00000000"),
        (api.get("/api/data/diff", params={"a": A, "b": "web-99999999"}), 404, "b", "web-99999999"),
        (api.get("/api/data/snapshots/web-00000000/samples"), 404, "snapshot", "web-00000000"),
        (api.get("/api/data/snapshots/tiny-shakespeare"), 404, "snapshot", "tiny-shakespeare"),  # "delete <folder>"
        (api.post("/api/data/jobs", json={"config": {"stats": {"tokenizer": "no-such-tok"}}}), 404,
         "config.stats.tokenizer", "no-such-tok"),
        (api.post("/api/tokenizers/train", json={"source": {"dataset": "no-such-set"}}), 400, "source.dataset",
         "no-such-set"),
        (api.post("/api/tokenizers/encode", json={"tokenizer": "bad name!", "text": "x"}), 404, "tokenizer",
         "bad name!"),
    ]
    for resp, status, param, named in cases:
        message = assert_error(resp, status, param)
        assert f"'{named}'" in message, message
        assert str(ws.root) not in resp.text and str(ws.root.resolve()) not in resp.text, resp.text
    assert jobs.submitted == []


def test_redact_root_keeps_what_is_inside_the_workspace(ws):
    message = f"corrupt checkpoint {ws.run('r1') / 'checkpoint_000002'}: model.pt is truncated"
    assert ws.redact_root(message) == "corrupt checkpoint <workspace>/runs/r1/checkpoint_000002: model.pt is truncated"
    assert ws.redact_root("no snapshot 'x'") == "no snapshot 'x'"
    assert ws.redact_root(f"{ws.root}-old/x and {ws.root}") == f"{ws.root}-old/x and <workspace>"  # a sibling stays


# ---------------------------------------------------------------------------- jobs


def test_run_pipeline_writes_the_config_and_submits_the_cli(api, ws, jobs, tmp_path):
    upload = api.post("/api/uploads", content=b"Some text to clean.\n" * 20).json()["upload"]
    local = tmp_path / "corpus.jsonl"
    local.write_text('{"text": "hello"}\n')
    config = {"name": "mix", "sources": [f"upload:{upload}", f"snapshot:{A}", str(local), " synthetic "],
              "stages": {"near_dedup": {"threshold": 0.7}, "language": {"keep": ["en", "de"]}},
              "split": {"train": 0.8, "val": 0.1, "test": 0.1}}
    resp = api.post("/api/data/jobs", json={"config": config})
    assert resp.status_code == 202, resp.text
    out = resp.json()
    assert out["status"] == "PENDING" and out["job_id"] == "raysubmit_1"

    (sub,) = jobs.submitted
    path = ws.root / "jobs" / out["config_file"].rsplit("/", 1)[-1]
    assert sub["entrypoint"] == shlex.join([sys.executable, "-m", "cluster.cli", "data", "run", "--config", str(path)])
    assert sub["runtime_env"] == {"env_vars": {"PLAYGROUND_WORKSPACE": str(ws.root)}}
    assert sub["metadata"] == {"kind": "data", "name": "mix"} and sub["address"] == "http://127.0.0.1:1"
    text = path.read_text()
    assert path.name == f"data-{hashlib.sha256(text.encode()).hexdigest()[:8]}.yaml"
    written = PipelineConfig.model_validate(yaml.safe_load(text))  # the resolved config, complete
    assert written.sources == [f"upload:{upload}", f"snapshot:{A}", str(local.resolve()), "synthetic"]
    assert written.stages.near_dedup.threshold == 0.7 and written.stages.language.keep == ["en", "de"]
    assert written.stages.quality.min_words == PipelineConfig().stages.quality.min_words
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp file left behind

    again = api.post("/api/data/jobs", json={"config": config}).json()
    assert again["config_file"] == out["config_file"] and again["job_id"] == "raysubmit_2"


def test_run_pipeline_errors_name_the_field(api, ws, jobs):
    def post(**config):
        return api.post("/api/data/jobs", json={"config": config})

    def written():
        return sorted((ws.root / "jobs").glob("*")) if (ws.root / "jobs").is_dir() else []

    before = written()

    assert_error(post(stages={"near_dedup": {"threshold": 2}}), 400, "config.stages.near_dedup.threshold")
    assert_error(post(stages={"dedup": {}}), 400, "config.stages.dedup")
    assert_error(post(split={"train": 0.9, "val": 0.2, "test": 0.1}), 400, "config.split")
    assert_error(post(name="no spaces"), 400, "config.name")
    assert_error(post(sources=[]), 400, "config.sources")
    assert_error(api.post("/api/data/jobs", json={"config": {}, "extra": 1}), 400, "extra")
    assert_error(post(sources=["synthetic", "upload:" + "0" * 16]), 404, "config.sources[1]")
    assert_error(post(sources=["upload:../../etc/passwd"]), 400, "config.sources[0]")
    assert_error(post(sources=["synthetic", "snapshot:web-00000000"]), 404, "config.sources[1]")
    assert_error(post(sources=["/no/such/file.jsonl"]), 404, "config.sources[0]")
    assert "registered dataset" in assert_error(post(sources=["tiny-shakespeare"]), 400, "config.sources[0]")
    assert f"snapshot:{A}" in assert_error(post(sources=[A]), 400, "config.sources[0]")
    assert_error(post(stats={"tokenizer": "no-such-tokenizer"}), 404, "config.stats.tokenizer")
    assert jobs.submitted == [] and written() == before  # nothing written, nothing submitted


def test_job_status_from_the_logs(api, jobs):
    jobs.jobs["raysubmit_run"] = (JobStatus.RUNNING, {"kind": "data", "name": "web"},
                                  "starting\nprogress: 1/5 read_clean\nprogress: 3/5 near_dedup\n")
    out = api.get("/api/data/jobs/raysubmit_run").json()
    assert out == {"job_id": "raysubmit_run", "name": "web", "status": "RUNNING",
                   "progress": {"done": 3, "total": 5, "stage": "near_dedup"}, "snapshot": None, "error": None}

    done = json.dumps({"snapshot": "web-1a2b3c4d", "docs": 90, "seconds": 2.4})
    jobs.jobs["raysubmit_ok"] = (JobStatus.SUCCEEDED, {"kind": "data", "name": "web"},
                                 f"progress: 5/5 write\n{{not json\n{done}\n")
    out = api.get("/api/data/jobs/raysubmit_ok").json()
    assert out["status"] == "SUCCEEDED" and out["snapshot"] == "web-1a2b3c4d" and out["progress"]["done"] == 5

    jobs.jobs["raysubmit_bad"] = (JobStatus.FAILED, {"kind": "data", "name": "web"},
                                  ("progress: 0/5 read_clean\nerror: config.sources[0]: no file 'x'\n"
                                   "(raylet) worker exited\n"))
    out = api.get("/api/data/jobs/raysubmit_bad").json()
    assert out["status"] == "FAILED" and out["error"] == "error: config.sources[0]: no file 'x'"
    assert out["snapshot"] is None

    jobs.jobs["raysubmit_tok"] = (JobStatus.RUNNING, {"kind": "tokenizer", "tokenizer": "t"}, "progress 10/40\n")
    assert_error(api.get("/api/data/jobs/raysubmit_tok"), 404, "job_id")  # not a data job
    assert_error(api.get("/api/data/jobs/raysubmit_nope"), 404, "job_id")
    # the tokenizer route reads its jobs through the same helpers (services/jobs.py)
    tok = api.get("/api/tokenizers/jobs/raysubmit_tok").json()
    assert tok["progress"] == {"done": 10, "total": 40} and tok["tokenizer"] == "t"
    assert_error(api.get("/api/tokenizers/jobs/raysubmit_run"), 404, "job_id")


def test_parse_job_logs_reads_progress_bars_and_the_last_json_line():
    logs = ("Running Dataset: 10%|█\rRunning Dataset: 90%|█████\rprogress: 2/5 language\r\n"
            '{"snapshot": "old-00000000"}\n{"rows": 3}\n{"snapshot": "web-12345678", "docs": 9}\n')
    assert parse_job_logs(logs) == {"progress": {"done": 2, "total": 5, "stage": "language"},
                                    "snapshot": "web-12345678"}
    assert parse_job_logs("") == {"progress": {"done": 0, "total": 0, "stage": None}, "snapshot": None}


def test_upload_source_follows_read_upload_rules(ws):
    """An upload the API accepts as a source is one `uploads.read_upload` can read."""
    from services.data_api import resolve_sources

    upload = uploads.save_upload(ws, b"plain text")["upload"]
    assert resolve_sources(ws, [f"upload:{upload}"]) == [f"upload:{upload}"]
    assert uploads.read_upload(ws, upload) == "plain text"
