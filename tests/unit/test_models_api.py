"""The model registry over HTTP (services/models_api.py) and the Models page (Streamlit AppTest), on the
real routes over a workspace the test builds (test_registry.build_workspace); Ray's job client is
faked (tests/unit/fakejobs.py) because quantize and Hub-import jobs would need a cluster, and the
deployments are a set in memory because Serve is not running here (the integration tests deploy)."""

from __future__ import annotations

import json

import pytest
from fakejobs import FakeJobs
from fastapi import FastAPI
from fastapi.testclient import TestClient
from test_registry import RUN, build_workspace
from ui_stub import start_stub

from tests.ui_checks import open_page
from training.registry import registry
from training.workspace import Workspace
from ui.models_format import diff_options, filter_rows, log_progress, registry_table, serving_note

PAGE = "pages/13_Models.py"


def make_app(ws: Workspace, monkeypatch) -> FastAPI:
    from services.llm import harden
    from services.models_api import router

    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", FakeJobs)
    FakeJobs.jobs, FakeJobs.logs = {}, {}
    app = FastAPI()
    app.state.workspace, app.state.dashboard_url, app.state.deployed = ws, "http://127.0.0.1:1", {"chat"}
    app.state.deployed_models = lambda: sorted(app.state.deployed)

    @app.get("/api/health")
    def health():
        return {"status": "ok", "deployments": {}, "models_deployed": sorted(app.state.deployed), "links": {}}

    @app.get("/api/models")
    def models(kind: str | None = None):
        return registry.list_models(ws, app.state.deployed, kind=kind)

    @app.post("/api/deployments", status_code=202)
    def deploy(body: dict):
        app.state.deployed.add(body["model"])
        return {"model": body["model"], "status": "deploying"}

    @app.delete("/api/deployments/{model}")
    def undeploy(model: str):
        app.state.deployed.discard(model)
        return {"model": model, "status": "removed"}

    app.include_router(router, prefix="/api")
    harden(app, set(), None)
    return app


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return build_workspace(Workspace(tmp_path_factory.mktemp("modelsapi")))


@pytest.fixture
def api(ws, monkeypatch):
    return TestClient(make_app(ws, monkeypatch))


def _error(resp, status: int, param: str) -> str:
    assert resp.status_code == status, resp.text
    assert resp.json()["error"]["param"] == param, resp.json()
    return resp.json()["error"]["message"]


def test_a_model_in_full(api):
    d = api.get("/api/models/chat").json()
    assert (d["kind"], d["parent"], d["deployed"]) == ("sft", "base", True)
    assert d["lineage_graph"]["ancestors"] == ["base"] and d["dot"].startswith("digraph lineage")
    assert d["parameters"] > 10_000 and d["serving"] == {"servable": True, "reason": None}
    assert d["card"].startswith("---") and "base_model: base" in d["card"]
    base = api.get("/api/models/base").json()
    assert [c["name"] for c in base["checkpoints"]] == [f"{RUN}@2", f"{RUN}@4"] and base["children"] == ["chat"]
    assert "no model 'nope'" in _error(api.get("/api/models/nope"), 404, "model")


def test_checkpoints_export_and_diff(api, ws):
    rows = api.get(f"/api/runs/{RUN}/checkpoints").json()
    assert [(r["step"], r["exported_as"]) for r in rows] == [(2, []), (4, ["base"])]
    made = api.post(f"/api/runs/{RUN}/checkpoints/2/export", json={"id": "early"})
    assert made.status_code == 201 and made.json()["model"] == "early"
    assert (ws.model("early") / "config.json").is_file()
    assert "already exists" in _error(api.post(f"/api/runs/{RUN}/checkpoints/2/export", json={"id": "early"}),
                                      409, "model")
    assert "its steps: 2, 4" in _error(api.post(f"/api/runs/{RUN}/checkpoints/7/export", json={}), 404, "step")
    assert "no run 'ghost'" in _error(api.get("/api/runs/ghost/checkpoints"), 404, "run")
    diff = api.get("/api/models/diff", params={"a": f"{RUN}@2", "b": f"{RUN}@4"}).json()
    assert diff["overall"]["relative_change"] > 0.1 and {r["layer"] for r in diff["layers"]} >= {"h.0", "h.1"}
    same = api.get("/api/models/diff", params={"a": "early", "b": f"{RUN}@2"}).json()
    assert same["overall"]["relative_change"] == pytest.approx(0.0, abs=1e-6)
    assert "no model or checkpoint 'ghost'" in _error(api.get("/api/models/diff", params={"a": "base", "b": "ghost"}),
                                                      404, "b")
    assert api.delete("/api/models/early").json()["deleted"] == "early"


def test_delete_quantize_import_and_publish_say_what_is_wrong(api, ws, tmp_path, monkeypatch):
    assert "undeploy it first" in _error(api.delete("/api/models/chat"), 409, "model")
    job = api.post("/api/models/base/quantize", json={"method": "int8"})
    assert job.status_code == 202 and job.json()["model"] == "base-int8"
    entry = FakeJobs.jobs[job.json()["job_id"]].entrypoint
    assert "models quantize base --method int8 --id base-int8" in entry
    assert api.get(f"/api/jobs/{job.json()['job_id']}").status_code in (200, 404)  # followed by /api/jobs
    _error(api.post("/api/models/base/quantize", json={"method": "int3"}), 400, "method")
    assert "no model 'ghost'" in _error(api.post("/api/models/ghost/quantize", json={"method": "int4"}), 404, "model")
    # import: a local folder is copied at once; not a model, a clash, or both sources are refused
    made = api.post("/api/models/import", json={"path": str(ws.model("base")), "id": "copy"})
    assert made.status_code == 201 and registry.kind_of(registry.read_info(ws.model("copy"))) == "imported"
    assert (ws.model("copy") / "README.md").read_text().startswith("---")  # its model card
    _error(api.post("/api/models/import", json={"path": str(tmp_path)}), 400, "path")
    _error(api.post("/api/models/import", json={"path": "/x", "hub": "a/b"}), 400, "path")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = api.post("/api/models/import", json={"hub": "openai-community/gpt2"})
    assert offline.status_code == 503 and "Hub" in offline.json()["error"]["message"]
    assert api.post("/api/models/chat/publish", json={"repo_id": "me/chat"}).status_code == 503
    api.delete("/api/models/copy")


def test_models_page_shows_lineage_card_checkpoints_and_deploys(ws, monkeypatch):
    app = make_app(ws, monkeypatch)
    server = start_stub(app)
    monkeypatch.setenv("PLAYGROUND_URL", server.url)
    monkeypatch.delenv("PLAYGROUND_API_KEY", raising=False)
    try:
        at = open_page(None)
        at.query_params["models_selected"] = "base"
        at.switch_page(PAGE).run(timeout=30)
        assert not at.exception, [e.value for e in at.exception]
        assert not at.error, [e.value for e in at.error]
        table = at.dataframe[0].value
        assert set(table["model"]) >= {"base", "chat"} and "🎓 sft" in set(table["kind"])
        assert at.selectbox(key="models_selected").value == "base"
        assert {m.label: m.value for m in at.metric}["Kind"] == "pretrained"
        markdown = " ".join(m.value for m in at.markdown)
        assert "Model description" in markdown or "base" in markdown
        assert at.selectbox(key="models_ckpt").options == [f"{RUN}@2", f"{RUN}@4"]
        at.button(key="models_deploy").click().run(timeout=30)
        assert "Deploying `base`" in at.success[0].value and "base" in app.state.deployed
        at.selectbox(key="models_diff_a").set_value(f"{RUN}@2")
        at.selectbox(key="models_diff_b").set_value(f"{RUN}@4")
        at.button(key="models_diff_go").click().run(timeout=30)
        assert not at.error, [e.value for e in at.error]
        assert {m.label for m in at.metric} >= {"Relative change, all weights"}
    finally:
        app.state.deployed.discard("base")
        server.stop()


def test_page_helpers():
    rows = [{"id": "a", "kind": "sft", "parent": "p", "deployed": True, "size_bytes": 2048},
            {"id": "b", "kind": "quantized", "parent": "a", "deployed": False, "size_bytes": None}]
    assert [r["id"] for r in filter_rows(rows, ["sft"])] == ["a"]
    assert [r["id"] for r in filter_rows(rows, text="A")] == ["a", "b"]  # b's parent is a
    assert [r["id"] for r in filter_rows(rows, served_only=True)] == ["a"]
    assert registry_table(rows)["size"].tolist() == ["2.0 KB", "?"]
    assert diff_options(rows, [{"name": "r@2"}]) == ["a", "b", "r@2"]
    assert log_progress(["x", "progress: 10/40 bytes", "progress: 30/40 bytes", "done"]) == (30, 40)
    assert log_progress(["nothing"]) is None
    assert serving_note({"serving": {"servable": False, "reason": "no int4 kernel"}}).endswith("no int4 kernel")
    assert serving_note({"serving": {"servable": True}}) is None
    assert json.dumps(registry_table([]).columns.tolist()).startswith('["model"')
