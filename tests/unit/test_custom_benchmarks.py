"""Custom benchmarks (evaluation/custom.py): every bad line named, the registry, a real lm-eval run, CLI, HTTP."""

import json
import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from cluster.cli import main
from evaluation import custom, suites
from training.errors import UserError
from training.workspace import Workspace

MC_ROW = {"question": "What is the capital of France?", "choices": ["Lyon", "Paris", "Nice"], "answer": 1}
GEN_ROW = {"prompt": "Say lol:", "answer": "lol"}


def jsonl(*rows) -> str:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


def mc(**change) -> dict:
    return {k: v for k, v in (MC_ROW | change).items() if v is not ...}


def gen(**change) -> dict:
    return {k: v for k, v in (GEN_ROW | change).items() if v is not ...}


GOOD = [MC_ROW] * 6  # six good lines, so the bad one below is line 7

BAD = [  # (rows, the exact error)
    ([*GOOD, mc(answer=4)], "line 7: answer: 4 is out of range for 3 choices"),
    ([*GOOD, mc(answer=-1)], "line 7: answer: -1 is out of range for 3 choices"),
    ([*GOOD, mc(answer=True)], "line 7: answer: a choice's index (0-2) or its text, got true"),
    ([*GOOD, mc(answer="Marseille")],
     "line 7: answer: 'Marseille' is not one of the choices (its text, exactly, or its index)"),
    ([*GOOD, "{\"question\": \"q\","], ("line 7: not JSON (Expecting property name enclosed in double quotes "
                                       "at column 18)")),
    ([*GOOD, "[1, 2]"], "line 7: a row is a JSON object ({...}), got a list"),
    ([*GOOD, '"text"'], "line 7: a row is a JSON object ({...}), got 'text'"),
    ([*GOOD, {"q": "x"}], ('line 7: a row is {"question", "choices", "answer"} (multiple choice) or '
                          '{"prompt", "answer"} (generation); this one has q')),
    ([*GOOD, mc(answer=...)], 'line 7: answer: missing (a multiple-choice row is {"question", "choices", "answer"})'),
    ([*GOOD, mc(question=...)],
     'line 7: question: missing (a multiple-choice row is {"question", "choices", "answer"})'),
    ([*GOOD, mc(hint="x")], ("line 7: hint: unknown field; a multiple-choice row has question, choices, answer "
                            "and optionally id, category")),
    ([*GOOD, mc(question=3)], "line 7: question: a non-empty string, got a number"),
    ([*GOOD, mc(question="  ")], "line 7: question: a non-empty string, got '  '"),
    ([*GOOD, mc(choices=["a"])], "line 7: choices: a list of 2 to 10 strings, got 1"),
    ([*GOOD, mc(choices=[str(i) for i in range(11)])], "line 7: choices: a list of 2 to 10 strings, got 11"),
    ([*GOOD, mc(choices="Lyon, Paris")], "line 7: choices: a list of 2 to 10 strings, got 'Lyon, Paris'"),
    ([*GOOD, mc(choices=["Lyon", None, "Nice"])], "line 7: choices[1]: a non-empty string, got null"),
    ([*GOOD, mc(choices=["Lyon", "Paris", "Lyon"])], "line 7: choices[2]: 'Lyon' is already choices[0]"),
    ([*GOOD, gen()], 'line 7: a generation row in a multiple-choice benchmark (line 1 is one): one kind per file'),
    ([*GOOD, mc(id=[1])], "line 7: id: a string or an integer, got a list"),
    ([*GOOD, mc(category="")], "line 7: category: a non-empty string, got ''"),
    ([mc(id="q1"), *GOOD[1:], mc(id="q1")], "line 7: id: 'q1' is already the id of line 1"),
    ([gen()] * 6 + [gen(answer=12)], "line 7: answer: a non-empty string, got a number"),
    ([gen()] * 6 + [gen(target="lol", answer=...)],
     'line 7: answer: missing (a generation row is {"prompt", "answer"})'),
    ([gen()] * 6 + [gen(target="lol")], ('line 7: target: unknown field (the reference answer goes in "answer"); '
                                        'a generation row has prompt, answer and optionally id, category')),
    ([gen()] * 6 + [mc()],
     "line 7: a multiple-choice row in a generation benchmark (line 1 is one): one kind per file"),
]


@pytest.mark.parametrize("rows,message", BAD, ids=[m.split(": ", 1)[1][:40] for _, m in BAD])
def test_check_rows_names_the_line_and_the_field(rows, message):
    with pytest.raises(UserError) as e:
        custom.check_rows(jsonl(*rows))
    assert str(e.value) == message


def test_blank_lines_count_empty_files_and_the_row_cap(monkeypatch):
    with pytest.raises(UserError, match=r"^line 4: answer: 4 is out of range"):  # blank lines still count
        custom.check_rows(jsonl(MC_ROW, "", "   ", mc(answer=4)))
    for text in ("", "\n\n  \n", "\ufeff"):
        with pytest.raises(UserError, match=r"^text: no rows \(a benchmark is one JSON object per line\)$"):
            custom.check_rows(text)
    monkeypatch.setattr(custom, "MAX_ROWS", 3)
    assert len(custom.check_rows(jsonl(*[MC_ROW] * 3))[1]) == 3
    with pytest.raises(UserError, match=r"^line 5: more than 3 rows; split the benchmark in two$"):
        custom.check_rows(jsonl(MC_ROW, MC_ROW, "", MC_ROW, MC_ROW))


def test_check_rows_normalises():
    text = "\ufeff" + jsonl(mc(answer="Nice", category="geo"), mc(id=7)).replace("\n", "\r\n")
    kind, rows = custom.check_rows(text)
    assert kind == "multiple_choice"
    assert rows == [{"id": "line-1", "question": MC_ROW["question"], "choices": MC_ROW["choices"], "answer": 2,
                     "category": "geo"},
                    {"id": "7", "question": MC_ROW["question"], "choices": MC_ROW["choices"], "answer": 1,
                     "category": ""}]
    kind, rows = custom.check_rows(jsonl(gen(prompt="a\u2028b")))  # U+2028 inside a string is no line break
    assert kind == "generate_until" and rows[0]["prompt"] == "a\u2028b" and rows[0]["id"] == "line-1"


def test_register_list_remove(tmp_path):
    meta = custom.register(tmp_path, "capitals", jsonl(MC_ROW, mc(choices=["a", "b"], answer=0, category="x")),
                           description="  capitals  ")
    assert {k: meta[k] for k in ("name", "task", "kind", "metric", "n", "n_choices", "categories", "description")} \
        == {"name": "capitals", "task": "custom_capitals", "kind": "multiple_choice", "metric": "acc", "n": 2,
            "n_choices": None, "categories": ["x"], "description": "capitals"}
    assert meta["chance"] == pytest.approx((1 / 3 + 1 / 2) / 2) and meta["created_at"]
    folder = tmp_path / "evals" / "custom"
    assert sorted(p.name for p in folder.iterdir()) == ["capitals.json", "capitals.jsonl"]  # no temporary files
    assert json.loads((folder / "capitals.jsonl").read_text().splitlines()[0])["answer"] == 1
    assert custom.list_custom(tmp_path) == {"capitals": meta}
    assert meta["data_file"] == str((folder / "capitals.jsonl").resolve())

    again = custom.register(tmp_path, "capitals", jsonl(GEN_ROW, gen(answer="two\nlines")), metric="contains")
    assert (again["kind"], again["metric"], again["n"], again["chance"]) == ("generate_until", "contains", 2, 0.0)
    assert again["generation"] == {"until": [], "max_gen_toks": 64}  # an answer spans lines: stop at EOS
    assert custom.register(tmp_path, "one_line", jsonl(gen(answer="x" * 300)))["generation"] == \
        {"until": ["\n"], "max_gen_toks": 300}
    assert list(custom.list_custom(tmp_path)) == ["capitals", "one_line"]

    (tmp_path / "evals" / "tasks" / "custom_capitals").mkdir(parents=True)
    assert custom.remove(tmp_path, "capitals")["n"] == 2
    assert list(custom.list_custom(tmp_path)) == ["one_line"]
    assert not (folder / "capitals.jsonl").exists() and not (tmp_path / "evals" / "tasks" / "custom_capitals").exists()
    with pytest.raises(UserError, match=r"^name: no custom benchmark 'capitals' \(`playground benchmark list`"):
        custom.remove(tmp_path, "capitals")


@pytest.mark.parametrize("name,why", [
    ("Capitals", "is not a benchmark name"), ("a", "is not a benchmark name"), ("9lives", "is not a benchmark name"),
    ("../x", "is not a benchmark name"), ("x" * 42, "is not a benchmark name"),
    ("world", "is reserved for the built-in suites (world, world_*, mmlu, mmlu_*"), ("world_facts", "is reserved"),
    ("humaneval", "is reserved"), ("mmlu_anatomy", "is reserved"), ("custom_x", "is reserved")])
def test_register_refuses_bad_names(tmp_path, name, why):
    with pytest.raises(UserError, match="^" + re.escape(f"name: {name!r} {why}")):
        custom.register(tmp_path, name, jsonl(MC_ROW))
    assert not (tmp_path / "evals").exists()


def test_every_built_in_name_is_reserved():
    """custom.py does not import suites.py (suites imports it): its RESERVED families must cover every built-in."""
    for name in [*suites.SUITES, *suites.ALIASES, "mmlu_anatomy", "mmlu_stem"]:
        with pytest.raises(UserError, match="is reserved for the built-in suites"):
            custom.check_name(name)
    assert custom.check_name("worldwide") == "worldwide"


def test_register_checks_metric_and_description_before_writing(tmp_path):
    with pytest.raises(UserError, match=r"^metric: a multiple-choice benchmark is scored by acc \(and acc_norm, "
                                        r"reported beside it\), not 'f1'$"):
        custom.register(tmp_path, "caps", jsonl(MC_ROW), metric="f1")
    with pytest.raises(UserError, match=r"^metric: a generation benchmark is scored by exact_match or contains or "
                                        r"f1, not 'bleu'$"):
        custom.register(tmp_path, "says", jsonl(GEN_ROW), metric="bleu")
    with pytest.raises(UserError, match=r"^description: a string of at most 500 characters$"):
        custom.register(tmp_path, "says", jsonl(GEN_ROW), description="x" * 501)
    with pytest.raises(UserError, match=r"^line 2: "):
        custom.register(tmp_path, "says", jsonl(GEN_ROW, "oops"))
    assert custom.list_custom(tmp_path) == {}


def test_generation_scores():
    doc = {"answer": " Paris "}
    assert custom.exact_match_results(doc, ["Paris\n"]) == {"exact_match": 1}
    assert custom.exact_match_results(doc, ["paris"]) == {"exact_match": 0}
    assert custom.contains_results(doc, ["It is PARIS."]) == {"contains": 1}
    assert custom.contains_results(doc, ["Lyon"]) == {"contains": 0}
    assert custom.f1_results({"answer": "a cat sat down"}, ["the cat sat"]) == {"f1": pytest.approx(0.8)}


def test_suites_know_registered_benchmarks(tmp_path):
    custom.register(tmp_path, "caps", jsonl(MC_ROW, MC_ROW), description="capitals")
    custom.register(tmp_path, "says", jsonl(GEN_ROW), metric="f1")
    reg = custom.list_custom(tmp_path)
    assert suites.expand(["caps", "custom_says", "world_facts"], reg) == ["custom_caps", "custom_says", "world_facts"]
    assert suites.units(["world", "caps"], reg)["caps"] == ["custom_caps"]
    assert suites.chance("custom_caps", reg) == pytest.approx(1 / 3) and suites.chance("custom_says", reg) == 0
    assert suites.is_chat("says", reg) and not suites.is_chat("caps", reg)
    assert suites.engine("caps") == "lm_eval"
    with pytest.raises(UserError, match=r"unknown eval suite 'caps' \(known: world, mmlu, world_facts"):
        suites.expand(["caps"])  # without the workspace's registry, only the built-ins
    with pytest.raises(UserError, match=r"unknown eval suite 'nope' \(known: .*, caps, says\)$"):
        suites.expand(["nope"], reg)
    rows = {r["name"]: r for r in suites.catalog(reg)}
    assert rows["caps"]["custom"] and rows["caps"]["kind"] == "multiple_choice" and rows["caps"]["n_choices"] == 3
    assert rows["says"]["description"] == "1 items, scored by f1" and "custom" not in rows["world_facts"]
    assert [r["name"] for r in suites.catalog()] == [r["name"] for r in suites.catalog(reg)][:-2]
    root = suites.prepare(tmp_path / "tasks", ["caps"], reg)
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == \
        ["custom_caps/custom_caps.yaml"]  # the rows stay in evals/custom/
    assert f"test: {reg['caps']['data_file']}" in (root / "custom_caps" / "custom_caps.yaml").read_text()


def test_the_recipe_passes_the_registry_on(tmp_path):
    from evaluation import recipe

    ws = Workspace(tmp_path)
    reg = {"caps": custom.register(tmp_path, "caps", jsonl(MC_ROW))}
    record = {"eval_id": "e1", "rows": [], "groups": [], "custom": reg}
    out = {"tasks": {"custom_caps": {"acc": 0.5, "acc_stderr": 0.1}}, "groups": {}, "n": {"custom_caps": 1},
           "samples": {}}
    recipe.add_result(ws, record, "m", "caps", out)
    assert record["rows"][0]["chance"] == pytest.approx(1 / 3) and record["rows"][0]["metric"] == "acc"


def test_lm_eval_runs_registered_benchmarks(tmp_path, monkeypatch):
    """A real lm-eval run with its `dummy` model (random log-likelihoods; it always writes "lol")."""
    import datasets
    import lm_eval

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf")  # read at import: set it too
    custom.register(tmp_path, "caps", jsonl(mc(question="Who {{wrote}} it?"), MC_ROW, mc(choices=["x", "y"], answer=1),
                                            MC_ROW))
    custom.register(tmp_path, "says", jsonl(GEN_ROW, gen(answer="LOL"), gen(answer="no")), metric="contains")
    custom.register(tmp_path, "overlap", jsonl(gen(answer="lol cat")), metric="f1")
    reg = custom.list_custom(tmp_path)
    tasks = suites.expand(["caps", "says", "overlap"], reg)
    tm = suites.task_manager(tmp_path / "tasks", tasks, reg)
    out = lm_eval.simple_evaluate(model="dummy", tasks=tasks, limit=3, task_manager=tm)
    results = out["results"]
    assert {k for k in results["custom_caps"] if k.endswith(",none")} == \
        {"acc,none", "acc_stderr,none", "acc_norm,none", "acc_norm_stderr,none"}
    assert results["custom_caps"]["sample_len"] == 3 and 0 <= results["custom_caps"]["acc,none"] <= 1
    assert results["custom_says"]["contains,none"] == pytest.approx(2 / 3)  # "lol" contains lol, LOL; not "no"
    assert results["custom_overlap"]["f1,none"] == pytest.approx(2 / 3)  # precision 1, recall 1/2
    prompt, continuation = out["samples"]["custom_caps"][0]["arguments"][0]
    assert (prompt, continuation) == ("Who {{wrote}} it?\nAnswer:", " Lyon")  # the question as written
    prompt, kwargs = out["samples"]["custom_says"][0]["arguments"][0]
    assert prompt == "Say lol:" and kwargs["until"] == ["\n"]


# ---------------------------------------------------------------- CLI


def test_cli_add_list_remove(tmp_path, capsys):
    data = tmp_path / "caps.jsonl"
    data.write_text(jsonl(MC_ROW, MC_ROW))
    ws = ["--workspace", str(tmp_path / "ws")]
    assert main([*ws, "benchmark", "add", "--file", str(data), "--name", "caps", "--description", "capitals"]) == 0
    assert "registered caps: 2 multiple choice items, scored by acc" in capsys.readouterr().out
    assert main([*ws, "benchmark", "list"]) == 0
    assert "caps" in capsys.readouterr().out
    assert main([*ws, "benchmark", "list", "--json"]) == 0
    assert [m["name"] for m in json.loads(capsys.readouterr().out)] == ["caps"]
    assert main([*ws, "benchmark", "remove", "caps"]) == 0
    assert "removed caps (2 items)" in capsys.readouterr().out
    assert main([*ws, "benchmark", "list"]) == 0
    assert "no custom benchmarks" in capsys.readouterr().out


@pytest.mark.parametrize("content,args,error", [
    (jsonl(*GOOD, mc(answer=4)), [], "{file}: line 7: answer: 4 is out of range for 3 choices"),
    ("\n", [], "{file}: no rows (a benchmark is one JSON object per line)"),
    (jsonl(MC_ROW), ["--metric", "f1"], "--metric: a multiple-choice benchmark is scored by acc"),
    (jsonl(MC_ROW), ["--name", "world"], "--name: 'world' is reserved for the built-in suites"),
    (None, [], "--file: cannot read {file} (No such file or directory)"),
    (b"\xff\xfe", [], "--file: {file} is not UTF-8 text (byte 0)"),
])
def test_cli_add_errors_exit_2(tmp_path, capsys, content, args, error):
    data = tmp_path / "bad.jsonl"
    if content is not None:
        data.write_bytes(content if isinstance(content, bytes) else content.encode())
    argv = ["--workspace", str(tmp_path / "ws"), "benchmark", "add", "--file", str(data), "--name", "caps", *args]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: " + error.format(file=data)) and err.count("\n") == 1
    written = tmp_path / "ws" / "evals" / "custom"
    assert not written.exists() or not list(written.iterdir())


def test_cli_remove_unknown_exits_2(tmp_path, capsys):
    assert main(["--workspace", str(tmp_path), "benchmark", "remove", "nope"]) == 2
    assert capsys.readouterr().err == "error: name: no custom benchmark 'nope' (`playground benchmark list` " \
                                      "shows them)\n"


# ---------------------------------------------------------------- HTTP


@pytest.fixture
def api(tmp_path):
    from services.evals_api import router

    app = FastAPI()
    app.include_router(router, prefix="/api")
    app.state.workspace = Workspace(tmp_path)
    return TestClient(app)


def test_api_register_list_delete(api, tmp_path):
    r = api.post("/api/eval-tasks", json={"name": "says", "text": jsonl(GEN_ROW, GEN_ROW), "metric": "f1",
                                          "description": "say things"})
    assert r.status_code == 201, r.text
    assert {k: r.json()[k] for k in ("name", "task", "kind", "metric", "n")} == \
        {"name": "says", "task": "custom_says", "kind": "generate_until", "metric": "f1", "n": 2}
    tasks = {t["name"]: t for t in api.get("/api/eval-tasks").json()}
    assert {"world", "mmlu", "says"} <= set(tasks) and tasks["says"]["custom"] and tasks["says"]["chance"] == 0
    assert tasks["says"]["description"] == "say things"
    r = api.delete("/api/eval-tasks/says")
    assert r.status_code == 200 and r.json()["name"] == "says"
    assert "says" not in {t["name"] for t in api.get("/api/eval-tasks").json()}
    r = api.delete("/api/eval-tasks/says")
    assert r.status_code == 404
    assert r.json()["error"]["param"] == "name" and r.json()["error"]["code"] == "not_found"


@pytest.mark.parametrize("body,param,message", [
    ({"name": "caps", "text": jsonl(*GOOD, mc(answer=4))}, "text", "line 7: answer: 4 is out of range for 3 choices"),
    ({"name": "caps", "text": ""}, "text", "text: no rows"),
    ({"name": "Caps!", "text": jsonl(MC_ROW)}, "name", "name: 'Caps!' is not a benchmark name"),
    ({"name": "world_facts", "text": jsonl(MC_ROW)}, "name", "name: 'world_facts' is reserved for the built-in suites"),
    ({"name": "caps", "text": jsonl(MC_ROW), "metric": "f1"}, "metric", "metric: a multiple-choice benchmark"),
])
def test_api_register_errors(api, tmp_path, body, param, message):
    r = api.post("/api/eval-tasks", json=body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["param"] == param and err["message"].startswith(message) and err["type"] == "invalid_request_error"
    assert custom.list_custom(tmp_path) == {}


def test_api_evals_accept_registered_benchmarks(api, tmp_path):
    from services.evals_api import check_request

    custom.register(tmp_path, "caps", jsonl(MC_ROW))
    model = Workspace(tmp_path).model("tiny")
    model.mkdir(parents=True)
    (model / "config.json").write_text('{"n_positions": 64}')
    cfg = check_request(Workspace(tmp_path), {"models": ["tiny"], "tasks": ["caps", "world"]})
    assert cfg.tasks == ["caps", "world"]
    r = api.post("/api/evals", json={"models": ["tiny"], "tasks": ["capz"]})
    assert r.status_code == 404 and r.json()["error"]["param"] == "tasks"
    assert "known: " in r.json()["error"]["message"] and r.json()["error"]["message"].endswith(", caps)")
