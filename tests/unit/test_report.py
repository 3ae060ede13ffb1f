"""The report card (evaluation/report.py): figures read back from a workspace written by hand in the
formats each stage writes, a chain that stopped early, report.md, keeping and comparing cards, and
the demo's stage bookkeeping."""

from __future__ import annotations

import doctest
import json
import math
import platform
import statistics

import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from evaluation import records, report_md
from evaluation import report as rep
from training.errors import UserError
from training.workspace import Workspace

RUN, SFT, EVAL, DATASET, TOKENIZER = "demo-1", "demo-1-sft", "demo-1-eval", "synth-1a2b3c4d", "word64-synth-1a2b3c4d"
VAL = ["the cat sat on the mat", "a dog ran to the bärn", "héllo wörld | the end"]
TRAIN = ["the cat ran", "a dog sat on a mat", "the end of the story", "héllo again"]
MODEL = {"arch": "gpt2", "vocab_size": 64, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}
# step, train loss, tokens/s, val loss (the last evaluation is worse than the best one)
METRICS = [(10, 4.0, 100.0, None), (20, 3.0, 300.0, 3.2), (30, 2.5, 200.0, None), (40, 2.0, 400.0, 3.4)]
STAGES = [{"name": "data", "seconds": 2.5, "command": "playground data prepare --config c.yaml"},
          {"name": "tokenizer", "seconds": 1.5, "command": "playground tokenizer train --config c.yaml"},
          {"name": "pretrain", "seconds": 60.0, "command": f"playground pretrain --config c.yaml run_name={RUN}"}]
LATER = [{"name": "sft", "seconds": 30.0, "command": "playground sft"},
         {"name": "eval", "seconds": 6.0, "command": "playground eval"}]


def _write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else json.dumps(data))


def _jsonl(path, rows) -> None:
    _write(path, "".join(json.dumps(r) + "\n" for r in rows))


def _dataset(ws: Workspace) -> None:
    """What `playground data run` writes (training/data/snapshot.py): 3 of 10 documents removed."""
    folder = ws.dataset(DATASET)
    _jsonl(folder / "val.jsonl", [{"text": t} for t in VAL])
    _jsonl(folder / "train.jsonl", [{"text": t} for t in TRAIN])
    outputs = {"train.jsonl": {"docs": len(TRAIN), "chars": sum(map(len, TRAIN))},
               "val.jsonl": {"docs": len(VAL), "chars": sum(map(len, VAL))}, "test.jsonl": {"docs": 0, "chars": 0}}
    _write(folder / "manifest.json", {"kind": "snapshot", "id": DATASET, "driver": "ray", "sources": ["synthetic"],
                                      "counts": {"read": {"in": 10, "out": 10}}, "outputs": outputs})
    stages = [{"stage": "read", "in": 10, "out": 10, "removed": 0, "chars_removed": 0, "reasons": {}},
              {"stage": "quality", "in": 10, "out": 8, "removed": 2, "chars_removed": 90, "reasons": {"min_words": 2}},
              {"stage": "exact_dedup", "in": 8, "out": 7, "removed": 1, "chars_removed": 11,
               "reasons": {"exact_dup": 1}}]
    _write(folder / "stats.json", {"input": {"docs": 10, "chars": 500}, "stages": stages})


def _tokenizer(ws: Workspace) -> None:
    """A word-level tokenizer: one token per whitespace-separated word, so the expected counts are plain."""
    words = sorted({w for t in VAL + TRAIN for w in t.split()})
    tok = Tokenizer(models.WordLevel({w: i for i, w in enumerate(["[UNK]", *words])}, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    folder = ws.tokenizer(TOKENIZER)
    folder.mkdir(parents=True)
    tok.save(str(folder / "tokenizer.json"))
    _write(folder / "training_meta.json", {"actual_vocab_size": len(words) + 1, "model": "wordlevel", "trainer": "hf",
                                           "num_docs": len(TRAIN), "num_chars": sum(map(len, TRAIN))})


def _pretrain(ws: Workspace) -> None:
    """run.json, metrics.jsonl and samples.jsonl (training/pretrain), the export's playground.json."""
    _write(ws.run(RUN) / "run.json", {"run_id": RUN, "config": {"model": MODEL, "train": {"max_steps": 40}},
                                      "seed": 7, "dataset": DATASET, "tokenizer": TOKENIZER})
    rows = []
    for step, loss, tps, val in METRICS:
        rows.append({"step": step, "loss": loss, "tokens_per_s": tps, "tokens_seen": step * 64, "precision": "fp32"}
                    | ({"val_loss": val, "perplexity": math.exp(val)} if val else {}))
    _jsonl(ws.run(RUN) / "metrics.jsonl", rows)
    _jsonl(ws.run(RUN) / "samples.jsonl", [{"step": 40, "samples": [{"prompt": "Once", "text": " upon a time"}]}])
    _write(ws.model(RUN) / "playground.json", {"run_id": RUN, "step": 40, "val_loss": 3.4})
    _write(ws.model(RUN) / "model.safetensors", "x" * 2048)


def _reply(q: str, expected: str, reply: str) -> dict:
    return {"instruction": q, "input": "", "expected": expected, "reply": reply, "correct": reply == expected}


def _sft(ws: Workspace) -> None:
    """results.json, run.json and metrics.jsonl of `playground sft` (training/posttrain/sft.py)."""
    template = [_reply("Capital of Varnia?", "Torvik", "Torvik"), _reply("3 plus 4?", "7", "8")]
    val = [_reply("Plural of cat?", "cats", "cats | dogs")]
    base = {"heldout_template": [{**r, "reply": "once upon", "correct": False} for r in template],
            "val": [{**val[0], "reply": "the", "correct": False}]}
    _write(ws.run(SFT) / "results.json", {
        "model": SFT, "method": "lora", "trainable_params": 250, "total_params": 1000,
        "base": {"heldout_template": 0.1, "val": 0.2}, "sft": {"heldout_template": 0.6, "val": 0.7},
        "replies": {"base": base, "sft": {"heldout_template": template, "val": val}}})
    _write(ws.run(SFT) / "run.json", {"run_id": SFT, "kind": "sft", "snapshot": "instructions-1",
                                      "lineage": {"base_model": RUN}, "train_rows": 50})
    _jsonl(ws.run(SFT) / "metrics.jsonl", [{"step": 10, "loss": 2.0}, {"step": 20, "loss": 1.0},
                                           {"step": 20, "val_loss": 1.2, "perplexity": 3.3},
                                           {"step": 20, "sft_val_accuracy": 0.7}])


def _eval(ws: Workspace) -> None:
    """eval.json as `playground eval` writes it, its rows made by records.score_row."""
    rows = [records.score_row(SFT, "world_facts", "world_facts", {"acc": 0.75, "acc_stderr": 0.05}, 100, 0.25),
            records.score_row(SFT, "world_stories", "world_stories", {"acc": 0.5, "acc_stderr": 0.1}, 40, 0.5)]
    records.write_record(ws, {"eval_id": EVAL, "name": EVAL, "status": "SUCCEEDED", "seconds": 12.5,
                              "config": {"backend": "served", "models": [SFT], "tasks": ["world_facts"]},
                              "rows": rows, "groups": [], "errors": []})


def _workspace(tmp_path, *, later: bool = True) -> Workspace:
    ws = Workspace(tmp_path / "ws")
    for write in (_dataset, _tokenizer, _pretrain, *((_sft, _eval) if later else ())):
        write(ws)
    return ws


@pytest.fixture
def full(tmp_path):
    ws = _workspace(tmp_path)
    return ws, rep.build_report(ws, stages=STAGES + LATER, run_id=RUN, sft_id=SFT, eval_id=EVAL, seed=None)


def test_data_and_tokenizer_figures(full):
    _, report = full
    data = report["data"]
    assert data["input"] == {"docs": 10, "chars": 500}
    assert data["kept"] == {"docs": 7, "chars": sum(map(len, TRAIN + VAL))}
    assert data["removed"] == {"docs": 3, "chars": 500 - data["kept"]["chars"]}
    assert [(f["stage"], f["removed"], f["reasons"]) for f in data["filters"]] == [
        ("quality", 2, {"min_words": 2}), ("exact_dedup", 1, {"exact_dup": 1})]  # stages that removed nothing: out
    assert data["splits"] == {"train": {"docs": 4, "chars": sum(map(len, TRAIN))},
                              "val": {"docs": 3, "chars": sum(map(len, VAL))}}
    tok = report["tokenizer"]
    words, chars, nbytes = sum(len(t.split()) for t in VAL), sum(map(len, VAL)), sum(len(t.encode()) for t in VAL)
    assert tok["vocab_size"] == len({w for t in VAL + TRAIN for w in t.split()}) + 1
    assert tok["measured"] == {"split": "val", "docs": 3, "chars": chars, "bytes": nbytes, "tokens": words}
    assert tok["chars_per_token"] == pytest.approx(chars / words)
    assert tok["bytes_per_token"] == pytest.approx(nbytes / words) != tok["chars_per_token"]  # ä, é, ö: 2 bytes


def test_pretraining_figures_and_bits_per_byte(full):
    from training.model.configurator import model_config
    from training.model.transformer import Transformer

    _, report = full
    pre = report["pretrain"]
    assert (pre["steps"], pre["max_steps"], pre["first_loss"], pre["last_loss"]) == (40, 40, 4.0, 2.0)
    assert (pre["best_val_loss"], pre["best_val_step"], pre["last_val_loss"], pre["last_val_step"]) == (3.2, 20, 3.4, 40)
    assert pre["perplexity"] == pytest.approx(math.exp(3.4))
    assert pre["tokens_per_s"] == statistics.median([m[2] for m in METRICS]) == 250.0
    assert pre["parameters"] == sum(p.numel() for p in Transformer(model_config(MODEL)).parameters())
    assert pre["export"] == {"step": 40, "val_loss": 3.4, "bytes": 2048}
    assert pre["samples"] == [{"prompt": "Once", "text": " upon a time"}]
    # nats/token -> bits/byte, the val stream's <|endoftext|> after each document counted as a token
    stream_tokens = sum(len(t.split()) for t in VAL) + len(VAL)
    nbytes = sum(len(t.encode()) for t in VAL)
    assert pre["bits_per_byte"] == pytest.approx(3.4 / math.log(2) / (nbytes / stream_tokens))
    assert "ln 2" in pre["bits_per_byte_note"] and "estimate" in pre["bits_per_byte_note"]
    assert report["seed"] == 7  # None given: the one run.json recorded


def test_finetuning_eval_and_samples(full):
    _, report = full
    sft = report["sft"]
    assert (sft["method"], sft["trainable_params"], sft["trainable_share"], sft["base_model"]) == ("lora", 250, 0.25, RUN)
    assert (sft["first_loss"], sft["last_loss"], sft["last_val_loss"], sft["steps"]) == (2.0, 1.0, 1.2, 20)
    assert [(a["split"], a["base"], a["tuned"]) for a in sft["accuracy"]] == [("heldout_template", 0.1, 0.6),
                                                                           ("val", 0.2, 0.7)]
    assert [a["change"] for a in sft["accuracy"]] == [pytest.approx(0.5)] * 2
    facts, stories = report["eval"]["rows"]
    assert (facts["task"], facts["score"], facts["n"], facts["chance"]) == ("world_facts", 0.75, 100, 0.25)
    assert facts["ci95"] == pytest.approx([0.75 - 1.959964 * 0.05, 0.75 + 1.959964 * 0.05])
    assert facts["normalized"] == pytest.approx(2 / 3)
    assert stories["normalized"] == pytest.approx(0.0)  # a 2-choice task at chance
    assert report["eval"]["status"] == "SUCCEEDED" and report["eval"]["seconds"] == 12.5
    # three answers, splits taking turns, each beside the base model's reply to the same question
    assert [(s["split"], s["question"], s["base"], s["tuned"], s["correct"]) for s in report["samples"]] == [
        ("heldout_template", "Capital of Varnia?", "once upon", "Torvik", True),
        ("val", "Plural of cat?", "the", "cats | dogs", False),
        ("heldout_template", "3 plus 4?", "once upon", "8", False)]


def test_stages_time_and_environment(full):
    _, report = full
    assert [s["name"] for s in report["stages"]] == ["data", "tokenizer", "pretrain", "sft", "eval"]
    assert report["total_seconds"] == pytest.approx(100.0)
    env = report["environment"]
    assert env["cores"] and env["versions"]["python"] == platform.python_version()
    assert set(env["versions"]) == {"python", "torch", "ray", "transformers", "vllm"}
    assert {"cpu", "memory_gib", "gpus", "git_commit", "git_dirty"} <= set(env)
    node = platform.node()
    assert "hostname" not in env and (len(node) < 6 or node not in json.dumps(env))
    json.dumps(report)  # JSON-able as it is


def test_a_partial_chain_leaves_out_what_did_not_run(tmp_path):
    ws = _workspace(tmp_path, later=False)
    report = rep.build_report(ws, stages=STAGES, run_id=RUN, sft_id=None, eval_id=None, seed=3)
    assert {"data", "tokenizer", "pretrain"} <= set(report) and not {"sft", "eval", "samples"} & set(report)
    assert report["seed"] == 3
    md = rep.render_markdown(report)
    assert "## Pretraining" in md and "## Fine-tuning" not in md and "## Evaluation" not in md

    # named but never run (or its files gone), and a chain that stopped after the tokenizer
    report = rep.build_report(ws, stages=STAGES[:2], run_id="demo-2", sft_id="demo-2-sft", eval_id="demo-2-eval",
                              seed=None, dataset_id=DATASET, tokenizer_id=TOKENIZER)
    assert {"data", "tokenizer"} <= set(report) and not {"pretrain", "sft", "eval", "samples"} & set(report)
    assert report["total_seconds"] == 4.0 and report["seed"] is None
    empty = rep.build_report(Workspace(tmp_path / "nothing"), stages=[], run_id="x", sft_id="y", eval_id="z", seed=None)
    assert not {"data", "tokenizer", "pretrain", "sft", "eval", "samples"} & set(empty)
    assert "## Stages" in rep.render_markdown(empty)


def test_broken_files_are_left_out_not_fatal(tmp_path):
    ws = _workspace(tmp_path)
    (ws.run(SFT) / "results.json").write_text("{not json")
    (ws.dataset(DATASET) / "val.jsonl").unlink()
    (ws.model(RUN) / "playground.json").unlink()
    (ws.root / "evals" / EVAL / "eval.json").write_text("")
    report = rep.build_report(ws, stages=STAGES, run_id=RUN, sft_id=SFT, eval_id=EVAL, seed=None)
    assert "sft" not in report and "samples" not in report and "eval" not in report
    for bad in ("../evil", "tasks"):  # not an evaluation's name: never read
        assert "eval" not in rep.build_report(ws, stages=[], run_id=RUN, sft_id=None, eval_id=bad, seed=None)
    assert "measured" not in report["tokenizer"] and "bits_per_byte" not in report["pretrain"]
    assert "export" not in report["pretrain"]


def test_markdown_renders_every_section(full):
    _, report = full
    md = rep.render_markdown(report)
    for heading in ("# Report card: demo-1", "## Environment", "## Stages", "## Data", "## Tokenizer",
                    "## Pretraining", "## Fine-tuning", "## Evaluation", "## Sample answers"):
        assert heading + "\n" in md
    assert "| **total** | **100.0** | 1 min 40 s |" in md
    assert "| pretrain | 60.0 | `playground pretrain --config c.yaml run_name=demo-1` |" in md
    assert "| quality | 2 | 90 | min_words 2 |" in md
    assert "| world_facts | acc | 0.750 | 0.652-0.848 | +0.667 | 100 |" in md
    assert "| heldout_template | 0.100 | 0.600 | +0.500 |" in md
    assert "| cats \\| dogs |" in md  # a pipe in a reply stays inside its cell
    assert "bits per byte" in md and "Note on bits per byte" in md
    assert "- **Once** upon a time" in md and "| Hugging Face export | step 40, 2.0 KiB of weights |" in md
    for line in md.splitlines():
        if line.startswith("|"):
            assert line.endswith("|") and line.replace("\\|", "").count("|") >= 3


def test_write_read_and_list_reports(full):
    ws, report = full
    md, js = rep.write_report(ws, report, "first")
    assert md == ws.root / "reports" / "first" / "report.md" and md.read_text() == rep.render_markdown(report)
    assert json.loads(js.read_text())["pretrain"]["last_val_loss"] == 3.4
    assert rep.read_report(ws, "latest")["name"] == "first"
    second = {**report, "run_id": "demo-2", "created_at": "2999-01-01T00:00:00+00:00"}
    rep.write_report(ws, second, "second")
    assert rep.read_report(ws, "latest")["name"] == "second"
    assert (ws.root / "reports" / "latest" / "report.md").read_text() == rep.render_markdown(second)
    assert rep.read_report(ws, "first")["run_id"] == RUN and rep.read_report(ws, "missing") is None
    assert [r["name"] for r in rep.list_reports(ws)] == ["second", "first"]  # newest first, "latest" not listed
    assert rep.list_reports(ws)[1]["stages"] == ["data", "tokenizer", "pretrain", "sft", "eval"]
    leftovers = [p.name for p in (ws.root / "reports").rglob("*") if p.name.startswith(".")]
    assert leftovers == []  # no temp file or folder left behind
    assert rep.list_reports(Workspace(ws.root / "none")) == []


@pytest.mark.parametrize("name", ["../x", "a/b", ".hidden", "", "a\\b", "..", "x" * 200])
def test_bad_report_names_are_one_line_errors(tmp_path, name):
    ws = Workspace(tmp_path)
    with pytest.raises(UserError, match="report name"):
        rep.read_report(ws, name)
    with pytest.raises(UserError, match="report name"):
        rep.write_report(ws, {}, name)


def test_latest_is_not_a_name_to_write(tmp_path):
    with pytest.raises(UserError, match="latest"):
        rep.write_report(Workspace(tmp_path), {}, "latest")


def test_compare_reports(tmp_path, full):
    _, a = full
    ws = _workspace(tmp_path / "b", later=False)
    stages = [*STAGES[:2], {**STAGES[2], "seconds": 45.0}]
    b = rep.build_report(ws, stages=stages, run_id=RUN, sft_id=None, eval_id=None, seed=None)
    b["pretrain"]["last_val_loss"] = 3.0
    rows = {(r["stage"], r["figure"]): r for r in rep.compare_reports(a, b)}
    assert rows[("pretrain", "last val loss")] == {"stage": "pretrain", "figure": "last val loss", "a": 3.4,
                                                        "b": 3.0, "change": pytest.approx(-0.4)}
    assert rows[("time", "pretrain seconds")]["change"] == -15.0
    assert rows[("time", "total seconds")]["change"] == -51.0  # 15 s less pretraining, no sft (30 s) nor eval (6 s)
    assert rows[("sft", "val tuned")] == {"stage": "sft", "figure": "val tuned", "a": 0.7, "b": None, "change": None}
    assert rows[("eval", "world_facts acc")]["a"] == 0.75 and rows[("eval", "world_facts acc")]["b"] is None
    assert rows[("tokenizer", "chars/token")]["change"] == 0
    assert all(r["change"] is None or isinstance(r["change"], (int, float)) for r in rows.values())


def test_doc_examples():
    for module in (rep, report_md):
        assert doctest.testmod(module).failed == 0


def test_demo_stage_records_time_and_command(monkeypatch):
    from cluster import demo

    calls = []
    monkeypatch.setattr(demo.subprocess, "call", lambda cmd: calls.append(cmd) or 0)
    log: list[dict] = []
    entry = demo.stage(log, "4/8 export", "export", "demo-1")
    assert calls[0][1:] == ["-m", "cluster.cli", "export", "demo-1"]
    assert log == [entry] and entry["name"] == "export" and entry["title"] == "4/8 export"
    assert entry["command"] == "playground export demo-1" and entry["rc"] == 0 and entry["seconds"] >= 0

    monkeypatch.setattr(demo.subprocess, "call", lambda cmd: 3)
    with pytest.raises(SystemExit) as e:
        demo.stage(log, "5/8 sample", "sample", "demo-1")
    assert e.value.code == 3 and log[-1]["rc"] == 3  # recorded before it exits


def test_demo_goes_on_without_a_failed_evaluation(monkeypatch, capsys):
    from cluster import demo

    commands = []
    monkeypatch.setattr(demo.subprocess, "call", lambda cmd: commands.append(cmd[3:]) or 1)
    log: list[dict] = []
    assert demo.evaluate(log, SFT, RUN) is None
    assert commands == [["eval", "--model", SFT, "--tasks", "world_facts,world_arithmetic,world_stories",
                         "--backend", "served", f"name={EVAL}"]]
    assert log[0]["rc"] == 1 and "written without it" in capsys.readouterr().out
    monkeypatch.setattr(demo.subprocess, "call", lambda cmd: 0)
    assert demo.evaluate([], SFT, RUN) == EVAL
    md = report_md.stage_table({"stages": log, "total_seconds": log[0]["seconds"]})
    assert "FAILED `playground eval --model demo-1-sft" in md


def test_demo_summary_prints_the_headline_figures(full, capsys):
    from cluster import demo

    ws, report = full
    demo.summary(ws, report)
    out = capsys.readouterr().out
    assert "val_loss:      3.200 (step 20) -> 3.400 (step 40), perplexity 30.0, " in out and "bits per byte" in out
    assert "heldout_template 0.10 -> 0.60  val 0.20 -> 0.70" in out
    assert "evaluation:    demo-1-eval (SUCCEEDED): world_facts 0.75  world_stories 0.50" in out
    demo.summary(ws, {"run_id": RUN})  # nothing but the run: no crash
