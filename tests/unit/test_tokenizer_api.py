"""The tokenizer lab's HTTP routes (services/tokenizer_api.py) on a FastAPI test client.

The routes are the real ones with the real `harden` errors; only Ray Serve around them
is left out (the integration tests run them inside Serve and submit a real training job).
"""

import pytest
from apihelp import assert_error
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services.llm import harden
from services.tokenizer_api import router
from training.data import uploads
from training.tokenizers import tokenlab
from training.workspace import Workspace

TEXT = ("The quick brown fox jumps over the lazy dog. Über naïve café, 東京 and 🙂! "
        "It's 2026; numbers 12345 and    spaces.\n") * 40


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    tokenlab.train(ws, TEXT, trainer="scratch", vocab_size=300, name="ours")
    tokenlab.train(ws, TEXT, trainer="hf", model="wordpiece", vocab_size=300, name="wp")
    return ws


@pytest.fixture(scope="module")
def api(ws):
    app = FastAPI()
    app.include_router(router, prefix="/api")
    harden(app, set(), None, redact=ws.redact_root)  # as services/api.py does
    app.state.workspace, app.state.dashboard_url = ws, "http://127.0.0.1:1"
    return TestClient(app)


def test_list_and_presets(api):
    names = {t["name"]: t for t in api.get("/api/tokenizers").json()}
    assert names["ours"]["trainer"] == "scratch" and names["wp"]["model"] == "wordpiece"
    presets = api.get("/api/tokenizers/presets").json()
    assert presets["presets"] and "not quotes" in presets["note"]


def test_encode_matches_the_library_and_slices_back(api, ws):
    text = "Hello naïve 🙂 world"
    out = api.post("/api/tokenizers/encode", json={"tokenizer": "ours", "text": text}).json()
    expected = tokenlab.open_tokenizer(ws, "ours").backend.encode(text).ids
    assert [t["id"] for t in out["tokens"]] == expected
    assert b"".join(bytes.fromhex(t["bytes"]) for t in out["tokens"]) == text.encode("utf-8")


def test_replay_compare_stats_cost(api):
    steps = api.post("/api/tokenizers/replay", json={"tokenizer": "ours", "word": " quick"}).json()["steps"]
    assert len(steps) >= 2 and "".join(steps[-1]["pieces"]) == "Ġquick"
    cmp = api.post("/api/tokenizers/compare", json={"tokenizers": ["ours", "wp"], "text": TEXT[:200]}).json()
    assert [r["name"] for r in cmp["tokenizers"]] == ["ours", "wp"]
    st = api.post("/api/tokenizers/stats", json={"tokenizer": "ours", "text": TEXT, "top_k": 5}).json()
    assert st["n_tokens"] > 0 and len(st["top_tokens"]) == 5
    priced = api.post("/api/tokenizers/cost", json={
        "tokenizer": "ours", "text": "hello world",
        "presets": [{"name": "mine", "input_per_1k": 1.0, "output_per_1k": 2.0}]}).json()
    n = priced["n_tokens"]
    assert priced["presets"][0]["input_cost"] == pytest.approx(n / 1000 * 1.0)


def test_upload_then_stats_and_cost(api, ws):
    up = api.post("/api/uploads?name=corpus.txt", content=TEXT.encode("utf-8"))
    assert up.status_code == 201 and up.json()["chars"] == len(TEXT)
    upload_id = up.json()["upload"]
    assert (ws.root / "uploads" / f"{upload_id}.txt").read_text(encoding="utf-8") == TEXT
    by_upload = api.post("/api/tokenizers/stats", json={"tokenizer": "ours", "upload": upload_id}).json()
    by_text = api.post("/api/tokenizers/stats", json={"tokenizer": "ours", "text": TEXT}).json()
    assert by_upload["n_tokens"] == by_text["n_tokens"]
    assert api.post("/api/tokenizers/cost", json={"tokenizer": "ours", "upload": upload_id}).status_code == 200


def test_bad_input_is_a_4xx_naming_the_field(api, ws, monkeypatch):
    assert_error(api.post("/api/tokenizers/encode", json={"tokenizer": "ours", "text": ""}), 400, "text")
    assert_error(api.post("/api/tokenizers/encode", json={"tokenizer": "nope", "text": "x"}), 404, "tokenizer")
    assert_error(api.post("/api/tokenizers/encode", json={"tokenizer": "ours"}), 400, "text")
    assert_error(api.post("/api/tokenizers/compare", json={"tokenizers": ["ours"], "text": "x"}), 400, "tokenizers")
    assert_error(api.post("/api/uploads", content=b"ok \xff\xfe bad"), 400, "file")
    assert_error(api.post("/api/tokenizers/stats", json={"tokenizer": "ours", "upload": "0" * 16}), 400, "upload")
    assert_error(api.post("/api/tokenizers/stats", json={"tokenizer": "ours", "text": "a", "upload": "b"}), 400, "body")
    up = api.post("/api/uploads", content=TEXT.encode()).json()["upload"]
    msg = assert_error(api.post("/api/tokenizers/train", json={"source": {"upload": up}, "vocab_size": 100}),
                 400, "vocab_size")
    assert "256" in msg
    assert_error(api.post("/api/tokenizers/train", json={"source": {"upload": up}, "trainer": "scratch",
                                                   "model": "unigram"}), 400, "model")
    assert_error(api.post("/api/tokenizers/train", json={"source": {"upload": up}, "name": "ours"}), 400, "name")
    assert_error(api.post("/api/tokenizers/train", json={"source": {"dataset": "nope"}}), 400, "source.dataset")
    monkeypatch.setattr(uploads, "MAX_TEXT_BYTES", 100)
    assert_error(api.post("/api/uploads", content=b"x" * 101), 413, "file")
    assert not any(p.name.startswith(".") for p in (ws.root / "uploads").iterdir())  # no half-written file


def test_datasets_lists_text_snapshots_only(api, ws):
    """Instruction data (kind "instructions", training/posttrain/sft_data.py) trains no tokenizer."""
    import json

    for name, kind in (("text-1", "snapshot"), ("instructions-1", "instructions")):
        (ws.datasets / name).mkdir(parents=True, exist_ok=True)
        (ws.datasets / name / "manifest.json").write_text(json.dumps({"kind": kind, "counts": {"train": 1}}))
    ids = [d["id"] for d in api.get("/api/datasets").json()]
    assert "text-1" in ids and "instructions-1" not in ids
