"""The prompt library: every curated template, strict rendering, versions in the workspace (atomic,
immutable, diff, revert), the few-shot builder, the A/B test against a stub OpenAI server whose
answers are known, and the routes' error bodies."""

from __future__ import annotations

import doctest
import json
import math
import re
from pathlib import Path

import pytest
import yaml
from fastapi import FastAPI, Request
from fastapi.testclient import TestClient
from scipy.stats import binomtest

from services.llm import harden
from services.prompts import abtest, fewshot, store, templates
from services.prompts.templates import CATEGORIES, PromptTemplate, count_curated, curated, render, render_template
from services.prompts_api import router
from tests.unit.apihelp import assert_error
from tests.unit.ui_stub import start_stub
from training.errors import UserError
from training.workspace import Workspace

ROOT = Path(__file__).resolve().parents[2]
CURATED = sorted((ROOT / "configs" / "prompts").glob("*.yaml"))


@pytest.mark.parametrize("module", [templates, fewshot, abtest])
def test_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0


# ---------------------------------------------------------------------------- curated templates


@pytest.mark.parametrize("path", CURATED, ids=lambda p: p.name)
def test_every_curated_template_validates_and_its_example_renders(path):
    data = yaml.safe_load(path.read_text())
    t = PromptTemplate.model_validate(data)  # extra="forbid": an unknown key fails here
    assert t.name == path.stem and t.category in CATEGORIES and t.title and t.when_it_helps
    pattern = re.compile(r"\{\{\s*(\w+)\s*\}\}")
    used = set(pattern.findall(t.template)) | set(pattern.findall(t.system or ""))
    assert used == set(t.variables), "every placeholder declared, every declared variable used"
    assert all(v.description for v in t.variables.values())
    assert t.example is not None, "an example shows the template at work"
    out = render_template(t, t.example)
    assert "{{" not in out["text"] and "{{" not in (out["system"] or "")


def test_at_least_twenty_templates_and_two_per_category():
    assert count_curated() == len(CURATED) >= 20
    per = {c: sum(t.category == c for t in curated().values()) for c in CATEGORIES}
    assert min(per.values()) >= 2, per


# ---------------------------------------------------------------------------- rendering


def _t(**kw) -> PromptTemplate:
    base = {"name": "t", "template": "Say {{ word }} to {{who}}.",
            "variables": {"word": {"description": "w"}, "who": {"default": "everyone"}}}
    return PromptTemplate.model_validate(base | kw)


def test_render_fills_spacing_defaults_and_escapes():
    assert render_template(_t(), {"word": "hi"}) == {"system": None, "text": "Say hi to everyone."}
    assert render_template(_t(), {"word": "hi", "who": "  "})["text"] == "Say hi to everyone."  # blank: default
    assert render(r"\{{x}} is {{x}}", {"x": "{{y}}"}) == "{{x}} is {{y}}"  # escaped; values never re-read


def test_render_is_strict():
    with pytest.raises(UserError, match=r"^variables\.word: not filled; template 't' needs it \(w\)"):
        render_template(_t(), {"who": "you"})
    with pytest.raises(UserError, match=r"^variables\.wrod: template 't' has no such variable"):
        render_template(_t(), {"word": "hi", "wrod": "x"})
    assert render_template(_t(), {"word": "hi", "extra": "x"}, extra="ignore")["text"] == "Say hi to everyone."


@pytest.mark.parametrize("bad, message", [
    ({"template": "{{a}} {{b}}", "variables": {"a": {}}}, "variables: b used in the text but not declared"),
    ({"variables": {"word": {}, "who": {}, "extra": {}}}, "variables: extra declared but never used"),
    ({"template": "{{ bad name }}", "variables": {}}, "template: '{{ bad name }}' is not a placeholder"),
    ({"example": {"who": "x"}}, "example.word: not filled"),
    ({"category": "poetry"}, "category: Input should be"),
    ({"colour": "red"}, "colour: Extra inputs are not permitted"),
])
def test_a_bad_template_is_refused_naming_the_field(bad, message):
    base = {"name": "t", "template": "Say {{ word }} to {{who}}.", "variables": {"word": {}, "who": {}}}
    with pytest.raises(UserError) as e:
        templates.validate(base | bad)
    assert str(e.value).startswith(message), str(e.value)


# ---------------------------------------------------------------------------- the store


MINE = {"name": "greet", "title": "Greeting", "category": "dialogue", "template": "Hello {{name}}!",
        "variables": {"name": {"description": "who"}}}


def test_versions_are_immutable_and_numbered(tmp_path):
    ws = Workspace(tmp_path)
    v1 = store.save(ws, MINE, note="first")
    v2 = store.save(ws, MINE | {"template": "Hi {{name}}, welcome."}, note="friendlier")
    assert (v1["version"], v2["version"], v2["latest"]) == (1, 2, 2) and v2["note"] == "friendlier"
    assert store.get(ws, "greet", 1)["template"] == "Hello {{name}}!"
    assert store.get(ws, "greet")["template"] == "Hi {{name}}, welcome."
    assert sorted(p.name for p in (tmp_path / "prompts" / "greet").iterdir()) == [".lock", "v0001.json",
                                                                                  "v0002.json"]
    d = store.diff(ws, "greet", 1, 2)
    assert d["changed"] and d["fields"] == ["template"]
    assert "-template: Hello {{name}}!\n+template: Hi {{name}}, welcome.\n" in d["diff"]
    assert d["diff"].startswith("--- greet v1\n+++ greet v2\n")
    v3 = store.revert(ws, "greet", 1)
    assert (v3["version"], v3["parent"], v3["template"]) == (3, 1, "Hello {{name}}!")
    assert [h["version"] for h in store.history(ws, "greet")] == [1, 2, 3]
    assert not store.diff(ws, "greet", 1, 3)["changed"]


def test_saving_over_a_curated_name_starts_at_version_two(tmp_path):
    ws = Workspace(tmp_path)
    cur = store.get(ws, "sentiment")
    assert (cur["version"], cur["source"], cur["curated"]) == (1, "curated", True)
    mine = {k: cur[k] for k in PromptTemplate.model_fields} | {"template": cur["template"] + "\nOne word only."}
    v2 = store.save(ws, mine)
    assert (v2["version"], v2["source"]) == (2, "saved")
    assert store.get(ws, "sentiment", 1)["source"] == "curated"  # the curated text stays one revert away
    listed = {t["name"]: t for t in store.list_templates(ws)}
    assert listed["sentiment"]["version"] == 2 and listed["sentiment"]["versions"] == 2
    assert len(listed) == count_curated()
    assert {t["category"] for t in store.list_templates(ws, "dialogue")} == {"dialogue"}


@pytest.mark.parametrize("where", ["write", "replace"])
def test_a_failed_save_leaves_nothing_half_written(tmp_path, monkeypatch, where):
    ws = Workspace(tmp_path)
    store.save(ws, MINE)

    def boom(*a, **k):
        raise OSError("disk full")

    if where == "replace":
        monkeypatch.setattr(store.os, "replace", boom)
    else:
        monkeypatch.setattr(store.os, "fsync", boom)  # after part of the file was written
    with pytest.raises(OSError, match="disk full"):
        store.save(ws, MINE | {"template": "Yo {{name}}"})
    monkeypatch.undo()
    folder = tmp_path / "prompts" / "greet"
    assert sorted(p.name for p in folder.iterdir()) == [".lock", "v0001.json"]  # no temp file, no v2
    assert store.save(ws, MINE | {"template": "Yo {{name}}"})["version"] == 2


def test_an_invalid_template_writes_nothing(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(UserError, match="^variables: who used in the text"):
        store.save(ws, MINE | {"template": "Hello {{who}}"})
    assert not (tmp_path / "prompts").exists()
    with pytest.raises(UserError, match="^name: 'Bad Name' is not a template name"):
        store.save(ws, MINE | {"name": "Bad Name"})
    with pytest.raises(UserError, match="^name: 'render' is reserved"):
        store.save(ws, MINE | {"name": "render"})


def test_unknown_template_and_version_name_the_field(tmp_path):
    ws = Workspace(tmp_path)
    with pytest.raises(UserError, match="^name: no template 'nope'"):
        store.get(ws, "nope")
    with pytest.raises(UserError, match=r"^version: no version 5 of template 'sentiment' \(it has 1\)"):
        store.get(ws, "sentiment", 5)
    with pytest.raises(UserError, match="^b: no version 9"):
        store.diff(ws, "sentiment", 1, 9)


# ---------------------------------------------------------------------------- few-shot


POOL = [{"instruction": f"What is {i} plus {i + 1}?", "output": str(2 * i + 1)} for i in range(12)] + [
    {"instruction": "Where does a turtle live?", "output": "In a pond."},
    {"instruction": "Which river flows through Quell?", "output": "The Pell."}]


def test_fewshot_random_is_seeded(tmp_path):
    ws = Workspace(tmp_path)
    a = fewshot.build(ws, query="What is 2 plus 2?", examples=POOL, k=3, seed=7)
    assert a == fewshot.build(ws, query="What is 2 plus 2?", examples=POOL, k=3, seed=7)
    assert a["examples"] != fewshot.build(ws, query="What is 2 plus 2?", examples=POOL, k=3, seed=8)["examples"]
    assert a["prompt"].endswith("Input: What is 2 plus 2?\nOutput:") and a["prompt"].count("Output:") == 4
    assert a["tokens"] == len(a["prompt"].split()) and a["tokenizer"].startswith("words")


def test_fewshot_similar_picks_the_nearest_and_never_the_query_itself(tmp_path, monkeypatch):
    ws = Workspace(tmp_path)
    out = fewshot.build(ws, query="Which river flows through Varnia?", examples=POOL, k=2, method="similar",
                        instruction="Answer briefly.")
    assert out["examples"][-1]["input"] == "Which river flows through Quell?"  # nearest, last
    assert out["examples"][-1]["similarity"] > out["examples"][0]["similarity"]
    assert out["prompt"].startswith("Answer briefly.\n\nInput: ")
    dup = fewshot.build(ws, query="Where does a turtle live?", examples=POOL, k=14, method="similar")
    assert "Where does a turtle live?" not in [e["input"] for e in dup["examples"]] and dup["k"] == 13


def test_fewshot_from_a_workspace_dataset_counts_with_the_model_tokenizer(tmp_path):
    from tokenizers import Tokenizer, models, pre_tokenizers

    ws = Workspace(tmp_path)
    (tmp_path / "datasets" / "instr-1").mkdir(parents=True)
    (tmp_path / "datasets" / "instr-1" / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in POOL))
    tok = Tokenizer(models.WordLevel({"[UNK]": 0, "what": 1}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()  # words and punctuation apart: more tokens than words
    (tmp_path / "models" / "m").mkdir(parents=True)
    tok.save(str(tmp_path / "models" / "m" / "tokenizer.json"))
    out = fewshot.build(ws, query="What is 1 plus 1?", dataset="instr-1", k=2, model="m")
    assert out["tokens"] == len(tok.encode(out["prompt"]).ids) > len(out["prompt"].split())
    assert out["tokenizer"].startswith("m ")
    assert fewshot.list_datasets(ws) == [{"id": "instr-1", "splits": ["train"], "fields": ["instruction", "output"]}]
    with pytest.raises(UserError, match="^split: no split 'val' in dataset 'instr-1' \\(it has: train\\)"):
        fewshot.build(ws, query="q", dataset="instr-1", split="val")
    with pytest.raises(UserError, match="^model: no model 'gone'"):
        fewshot.count_tokens(ws, "x", "gone")
    with pytest.raises(UserError, match="^input_field: no example has both 'question' and 'output'"):
        fewshot.build(ws, query="q", examples=POOL, input_field="question")


# ---------------------------------------------------------------------------- A/B test


A = {"name": "tpl-a", "template": "A: {{x}}", "variables": {"x": {}}}
B = {"name": "tpl-b", "template": "B: {{x}}", "variables": {"x": {}}}
ROWS = [{"x": f"item{i}", "answer": f"ans{i}"} for i in range(10)]
A_RIGHT, B_RIGHT = set(range(8)), {0, 1, 2, 9}  # only A: 3..7 (5 rows), only B: 9 (1 row)


def _llm_stub() -> FastAPI:
    app = FastAPI()
    app.state.asked = []

    @app.get("/v1/models")
    def models():
        return {"object": "list", "data": [{"id": "m", "object": "model"}]}

    @app.post("/v1/chat/completions")
    async def chat(request: Request):
        body = await request.json()
        app.state.asked.append((request.headers.get("authorization"), body))
        side, item = body["messages"][-1]["content"].split(": ")
        i = int(item.removeprefix("item"))
        right = i in (A_RIGHT if side == "A" else B_RIGHT)
        return {"choices": [{"message": {"role": "assistant", "content": f"Ans{i}." if right else "no idea"}}]}

    return app


@pytest.fixture(scope="module")
def llm():
    s = start_stub(_llm_stub())
    yield s
    s.stop()


def test_ab_test_accuracies_intervals_and_mcnemar_are_known(tmp_path, llm):
    ws = Workspace(tmp_path)
    store.save(ws, A), store.save(ws, B)
    out = abtest.ab_test(ws, {"name": "tpl-a"}, {"name": "tpl-b", "version": 1}, ROWS, model="m",
                         endpoint=f"{llm.url}/v1", api_key="k", iters=2000)
    assert (out["a"]["correct"], out["b"]["correct"], out["n"]) == (8, 4, 10)
    assert out["a"]["accuracy"] == 0.8 and out["b"]["accuracy"] == 0.4
    ci = binomtest(8, 10).proportion_ci(method="wilson")  # pinned to scipy's Wilson interval
    assert out["a"]["ci95"] == pytest.approx([ci.low, ci.high], abs=1e-6)
    mc = out["comparison"]["mcnemar"]
    assert (mc["only_a"], mc["only_b"]) == (5, 1)
    assert mc["p_value"] == pytest.approx(2 * (math.comb(6, 0) + math.comb(6, 1)) / 2 ** 6)  # 0.21875
    assert out["comparison"]["bootstrap"]["diff"] == pytest.approx(0.4)
    assert out["verdict"].startswith("No significant difference between A (tpl-a v1) and B (tpl-b v1)")
    asked = llm.app.state.asked[-20:]
    assert all(h == "Bearer k" and b["temperature"] == 0.0 and b["model"] == "m" for h, b in asked)
    assert [it["a"]["correct"] for it in out["items"]] == [i in A_RIGHT for i in range(10)]


def test_ab_test_bad_input(tmp_path, llm):
    ws = Workspace(tmp_path)
    store.save(ws, A), store.save(ws, B)
    url = f"{llm.url}/v1"
    with pytest.raises(UserError, match=r"^items\[1\]\.x: not filled"):
        abtest.ab_test(ws, {"name": "tpl-a"}, {"name": "tpl-b"}, [ROWS[0], {"answer": "y"}], model="m", endpoint=url)
    with pytest.raises(UserError, match=r"^items\[0\]\.answer: the expected answer is needed"):
        abtest.ab_test(ws, {"name": "tpl-a"}, {"name": "tpl-b"}, [{"x": "1"}], model="m", endpoint=url)
    with pytest.raises(UserError, match="^b.version: no version 4 of template 'tpl-b'"):
        abtest.ab_test(ws, {"name": "tpl-a"}, {"name": "tpl-b", "version": 4}, ROWS, model="m", endpoint=url)
    with pytest.raises(UserError, match="^b: the same template and version as a"):
        abtest.ab_test(ws, {"name": "tpl-a"}, {"name": "tpl-a", "version": 1}, ROWS, model="m", endpoint=url)
    with pytest.raises(abtest.EndpointError, match="^model: 'other' is not served") as e:
        abtest.ab_test(ws, {"name": "tpl-a"}, {"name": "tpl-b"}, ROWS, model="other", endpoint=url)
    assert e.value.status == 409


# ---------------------------------------------------------------------------- the routes


@pytest.fixture
def api(tmp_path, llm, monkeypatch):
    monkeypatch.setenv("PLAYGROUND_API_KEY", "k")
    app = FastAPI()
    app.include_router(router, prefix="/api")
    harden(app, set(), None)  # as services/api.py does: validation errors become 400s naming the field
    app.state.workspace = Workspace(tmp_path)
    app.state.llm_url = f"{llm.url}/v1"
    return TestClient(app)


def test_routes_round_trip(api):
    listed = api.get("/api/prompts", params={"category": "classification"}).json()
    assert {t["category"] for t in listed} == {"classification"} and len(listed) >= 2
    r = api.post("/api/prompts/render", json={"name": "sentiment", "variables": {"review": "Lovely."}})
    assert r.status_code == 200 and r.json()["text"].endswith("Review: Lovely.\nSentiment:")
    assert r.json()["tokens"] == len((r.json()["system"] + "\n\n" + r.json()["text"]).split())
    cur = api.get("/api/prompts/sentiment").json()
    assert cur["history"] == [{"version": 1, "source": "curated", "created_at": None,
                               "note": "curated (configs/prompts)", "parent": None}]
    body = {k: cur[k] for k in PromptTemplate.model_fields} | {"title": "Mine", "note": "renamed"}
    r = api.post("/api/prompts", json=body)
    assert r.status_code == 201 and r.json()["version"] == 2
    d = api.get("/api/prompts/sentiment/diff", params={"a": 1, "b": 2}).json()
    assert d["fields"] == ["title"] and "+title: Mine" in d["diff"]
    r = api.post("/api/prompts/sentiment/revert", json={"version": 1})
    assert r.status_code == 201 and r.json()["version"] == 3 and r.json()["title"] == cur["title"]
    assert api.get("/api/prompts/sentiment", params={"version": 2}).json()["title"] == "Mine"
    fs = api.post("/api/prompts/fewshot", json={"query": "What is 2 plus 3?", "examples": POOL, "k": 2,
                                                "method": "similar"}).json()
    assert fs["k"] == 2 and fs["prompt"].endswith("Input: What is 2 plus 3?\nOutput:")
    for t in (A, B):
        assert api.post("/api/prompts", json=t).status_code == 201
    jsonl = "\n".join(json.dumps(r) for r in ROWS)
    ab = api.post("/api/prompts/ab-test", json={"a": {"name": "tpl-a"}, "b": {"name": "tpl-b"}, "model": "m",
                                                "text": jsonl})
    assert ab.status_code == 200, ab.text
    assert (ab.json()["a"]["correct"], ab.json()["b"]["correct"]) == (8, 4)


def test_routes_error_bodies(api):
    assert "review" in assert_error(api.post("/api/prompts/render", json={"name": "sentiment", "variables": {}}),
                                    400, "variables.review")
    assert_error(api.post("/api/prompts/render", json={"name": "nope", "variables": {}}), 404, "name")
    assert_error(api.get("/api/prompts/sentiment", params={"version": 3}), 404, "version")
    assert_error(api.get("/api/prompts/nope"), 404, "name")
    assert_error(api.get("/api/prompts/sentiment/diff", params={"a": 1, "b": 2}), 404, "b")
    assert_error(api.post("/api/prompts/sentiment/revert", json={"version": 2}), 404, "version")
    assert_error(api.get("/api/prompts", params={"category": "poetry"}), 400, "category")
    assert_error(api.post("/api/prompts", json=MINE | {"template": "Hi {{who}}"}), 400, "variables")
    assert_error(api.post("/api/prompts/render", json={"name": "sentiment", "variables": {"review": "x"},
                                                       "model": "ghost"}), 404, "model")
    for t in (A, B):
        api.post("/api/prompts", json=t)
    ab = {"a": {"name": "tpl-a"}, "b": {"name": "tpl-b"}, "model": "m"}
    assert_error(api.post("/api/prompts/ab-test", json=ab | {"items": [{"answer": "1"}]}), 400, "items[0].x")
    assert_error(api.post("/api/prompts/ab-test", json=ab | {"text": '{"x": 1}\nnot json'}), 400, "text")
    assert_error(api.post("/api/prompts/ab-test", json=ab | {"items": ROWS, "model": "ghost"}), 409, "model")
    assert_error(api.post("/api/prompts/ab-test", json=ab | {"a": {"name": "zzz"}, "items": ROWS}), 404, "a.name")
    assert_error(api.post("/api/prompts/ab-test", json=ab | {"items": ROWS, "endpoint": "http://127.0.0.1:9/v1"}),
                 503, "endpoint")
    assert_error(api.post("/api/prompts/ab-test", json=ab), 400, "items")
