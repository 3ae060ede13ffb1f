"""POST /api/decoding (services/decoding_api.py) on the real `Inspector` class and a tiny exported model,
without Serve (a stand-in handle calls the class in-process; /api/decoding through Serve and vLLM is in
the integration tests), and training/decoding/report.py's JSON against the functions it reports."""

from __future__ import annotations

import json

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient
from ui_stub import KEY, SFT_RUN, make_app, start_stub

from benchmarks.decoding import InProcessHandle
from services.llm import harden
from training.decoding.beam import beam_search
from training.model.export import export_hf
from training.model.transformer import ModelConfig, Transformer
from training.workspace import Workspace

M = SFT_RUN  # a model id the UI stub's GET /api/models lists, so the page test can pick it


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from services.decoding_api import router
    from services.inspector import Inspector
    from training.tokenizers import tokenlab

    ws = Workspace(tmp_path_factory.mktemp("decws"))
    tok = tokenlab.train(ws, "the quick brown fox jumps over the lazy dog. " * 40, trainer="scratch",
                         vocab_size=300, name="tok")
    torch.manual_seed(0)
    model = Transformer(ModelConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=300, block_size=48))
    export_hf(model, ws.model(M), tokenizer_dir=tok["path"],
              extra_files={"playground.json": json.dumps({"run_id": "r"})})
    inspector = Inspector.func_or_class(str(ws.root))
    app = FastAPI()
    app.include_router(router, prefix="/api")
    app.state.inspector, app.state.llm_url = InProcessHandle(inspector), "http://127.0.0.1:9/v1"
    harden(app, set(), None)
    return TestClient(app), inspector, ws


def test_strategies_side_by_side_with_every_stage_and_the_beam_tree(setup):
    client, inspector, _ = setup
    r = client.post("/api/decoding", json={"model": M, "prompt": "the quick", "max_new_tokens": 6, "strategies": [
        {"name": "greedy", "strategy": "greedy"},
        {"name": "hot", "strategy": "sample", "temperature": 1.5, "top_k": 10, "top_p": 0.9, "seed": 3},
        {"name": "beam3", "strategy": "beam", "num_beams": 3}]})
    assert r.status_code == 200, r.text
    out = r.json()
    cols = {c["name"]: c for c in out["strategies"]}
    assert list(cols) == ["greedy", "hot", "beam3"] and out["prompt_tokens"]
    hot = cols["hot"]
    assert [s["name"] for s in hot["steps"][0]["stages"]] == ["raw", "temperature", "top_k", "top_p"]
    for step in hot["steps"]:
        assert len(step["stages"][0]["top"]) == 20 and len(step["stages"][2]["top"]) <= 10
        assert sum(t["p"] for t in step["stages"][-1]["top"]) <= 1 + 1e-5
        assert step["stages"][-1]["chosen_p"] > 0  # the chosen token survived every filter
    greedy = cols["greedy"]
    assert all(s["token"] == s["stages"][0]["top"][0]["token"] for s in greedy["steps"])  # the argmax each time
    # The same request twice: the same sample (seeded), token for token.
    again = client.post("/api/decoding", json={"model": M, "prompt": "the quick", "max_new_tokens": 6,
                                               "strategies": [{"name": "hot", "strategy": "sample", "temperature": 1.5,
                                                               "top_k": 10, "top_p": 0.9, "seed": 3}]}).json()
    assert again["strategies"][0]["tokens"] == hot["tokens"]

    beam = cols["beam3"]
    statuses = {n["status"] for n in beam["tree"]}
    assert {"root", "kept", "pruned"} <= statuses
    model, tokenizer = inspector._load(M)
    ref = beam_search(model, tokenizer.encode("the quick"), num_beams=3, max_new_tokens=6,
                      eos_token_id=tokenizer.eos_token_id)
    assert beam["beams"][0]["tokens"] == ref.beams[0].tokens
    assert beam["beams"][0]["score"] == pytest.approx(ref.beams[0].score)
    chosen = [beam["tree"][i] for i in beam["chosen"]]
    assert chosen[0]["status"] == "root" and [n["token"] for n in chosen[1:]] == ref.beams[0].tokens


def test_served_column_reports_an_endpoint_that_is_not_there(setup):
    client, _, _ = setup
    r = client.post("/api/decoding", json={"model": M, "prompt": "the", "max_new_tokens": 2, "served": True})
    assert r.status_code == 200 and "no answer from http://127.0.0.1:9/v1" in r.json()["served"]["error"]


@pytest.mark.parametrize("body,status,param", [
    ({"strategies": [{"strategy": "nucleus"}]}, 400, "strategies.0.strategy"),
    ({"strategies": [{"strategy": "beam", "num_beams": 9}]}, 400, "strategies.0.num_beams"),
    ({"strategies": [{"strategy": "sample", "top_p": 0}]}, 400, "strategies.0.top_p"),
    ({"prompt": "the " * 60}, 400, "prompt"),
    ({"model": "ghost"}, 404, "model"),
    ({"strategies": [{"name": "a"}, {"name": "a"}]}, 400, "strategies"),
    ({"strategies": [{"strategy": "beam", "num_beams": 2, "num_return_sequences": 3}]}, 400, "num_return_sequences"),
])
def test_bad_input_is_a_4xx_naming_the_field(setup, body, status, param):
    client, _, _ = setup
    r = client.post("/api/decoding", json={"model": M, "prompt": "the quick"} | body)
    assert r.status_code == status, r.text
    assert r.json()["error"]["param"] == param


def test_the_page_shows_columns_stages_and_the_beam_tree(setup, monkeypatch):
    """The Decoding page (Streamlit AppTest) against the real /api/decoding on the UI stub's server."""
    from services.decoding_api import router
    from tests.ui_checks import open_page

    _, inspector, _ = setup
    app = make_app()
    app.include_router(router, prefix="/api")
    app.state.inspector = InProcessHandle(inspector)
    server = start_stub(app)
    monkeypatch.setenv("PLAYGROUND_URL", server.url)
    monkeypatch.setenv("PLAYGROUND_API_KEY", KEY)
    try:
        at = open_page("pages/12_Decoding.py")
        assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
        at.selectbox(key="dec_model").set_value(M)
        at.text_area(key="dec_prompt").set_value("the quick")
        at.number_input(key="dec_new").set_value(5)
        at.button[0].click().run()  # the form's Decode button
        assert not at.exception and not at.error, [e.value for e in [*at.exception, *at.error]]
        assert [h.value for h in at.subheader][:3] == ["greedy-1", "sample-2", "beam-3"]
        assert any(h.value == "Beam search tree: beam-3" for h in at.subheader)
        assert len(at.get("plotly_chart")) == 3  # a sampling column's step, the greedy one's, the tree
        at.slider(key="dec_step_1").set_value(3).run()
        frame = at.dataframe[1].value  # the greedy column's numbers, then the sampling column's
        assert list(frame.columns)[:2] == ["token", "raw"] and frame["token"].str.contains("chosen").sum() == 1
    finally:
        server.stop()
