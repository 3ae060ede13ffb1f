"""evaluation/online_tasks.py: lm-eval's HellaSwag, TruthfulQA, ARC and GSM8K by their names (they read the
Hub), and each as `<name>_sample`: lm-eval's installed task over hand-written rows in evaluation/samples/,
run here through lm-eval's real `hf` backend on a tiny model, as a Ray worker of `playground eval` runs it."""

from __future__ import annotations

import json
import math
import os
import re

import pytest
import torch
from tinytok import byte_bpe
from transformers import GPT2Config, GPT2LMHeadModel

from evaluation import online_tasks, suites
from evaluation.config import EvalConfig
from evaluation.harness import model_source, run_suite
from evaluation.online_tasks import TASKS
from training.errors import UserError
from training.workspace import Workspace

SAMPLES = list(online_tasks.SAMPLE_TASKS)
_STR_LIST = (list, str)  # a list of strings
# The fields of the Hub dataset (and config) each sample file stands in for, with their types.
FIELDS = {
    "hellaswag.jsonl": {  # Rowan/hellaswag
        "ind": int, "activity_label": str, "ctx_a": str, "ctx_b": str, "ctx": str, "endings": _STR_LIST,
        "source_id": str, "split": str, "split_type": str, "label": str},
    "truthful_qa-multiple_choice.jsonl": {"question": str, "mc1_targets": dict, "mc2_targets": dict},
    "truthful_qa-generation.jsonl": {
        "type": str, "category": str, "question": str, "best_answer": str, "correct_answers": _STR_LIST,
        "incorrect_answers": _STR_LIST, "source": str},
    "ai2_arc-ARC-Easy.jsonl": {"id": str, "question": str, "choices": dict, "answerKey": str},
    "ai2_arc-ARC-Challenge.jsonl": {"id": str, "question": str, "choices": dict, "answerKey": str},
    "gsm8k-main.jsonl": {"question": str, "answer": str},
}
# What each sample must score every row with (a gsm8k row once per answer filter).
METRICS = {"hellaswag_sample": ("acc", "acc_norm"), "truthfulqa_mc1_sample": ("acc",),
           "truthfulqa_mc2_sample": ("acc",), "truthfulqa_gen_sample": ("bleu_max", "bleu_acc", "rouge1_acc"),
           "arc_easy_sample": ("acc", "acc_norm"), "arc_challenge_sample": ("acc", "acc_norm"),
           "gsm8k_sample": ("exact_match[strict-match]", "exact_match[flexible-extract]")}


def _typed(value, kind) -> bool:
    if isinstance(kind, tuple):  # (list, str): a list of strings
        return isinstance(value, list) and bool(value) and all(isinstance(v, kind[1]) and v for v in value)
    return isinstance(value, kind) and not isinstance(value, bool)


@pytest.mark.parametrize("name", sorted(FIELDS))
def test_each_sample_file_has_the_fields_of_its_dataset(name):
    task = next(t for t in TASKS.values() if t.sample_file == name)
    rows = online_tasks.rows(task.name)
    assert 5 <= len(rows) <= 10
    for row in rows:
        assert set(row) == set(FIELDS[name]), row
        assert all(_typed(row[k], kind) for k, kind in FIELDS[name].items()), row
        if name == "hellaswag.jsonl":
            assert len(row["endings"]) == 4 and row["label"] in "0123" and row["split"] == "val"
            assert row["ctx"] == f"{row['ctx_a']} {row['ctx_b']}".strip()
        elif name == "truthful_qa-multiple_choice.jsonl":
            for key in ("mc1_targets", "mc2_targets"):
                t = row[key]
                assert set(t) == {"choices", "labels"} and len(t["choices"]) == len(t["labels"]) >= 4
                assert set(t["labels"]) == {0, 1} and t["labels"] == sorted(t["labels"], reverse=True)  # true first
            assert sum(row["mc1_targets"]["labels"]) == 1 and sum(row["mc2_targets"]["labels"]) >= 2
        elif name.startswith("ai2_arc"):
            c = row["choices"]
            assert set(c) == {"text", "label"} and len(c["text"]) == len(c["label"]) in (3, 4, 5)
            assert row["answerKey"] in c["label"]
        elif name == "gsm8k-main.jsonl":
            steps, number = row["answer"].rsplit("\n#### ", 1)
            assert re.fullmatch(r"-?\d+", number) and "<<" in steps
            for expr, result in re.findall(r"<<([^=]+)=([^>]+)>>", steps):  # the calculator notes add up
                assert eval(expr) == float(result)  # our own digits and + - * /
    if name.startswith("ai2_arc"):  # the shapes ARC has: 3 to 5 choices, letters and digits as labels
        assert {len(r["choices"]["label"]) for r in rows} >= {4} and any(r["answerKey"].isdigit() for r in rows)


@pytest.mark.parametrize("name", list(TASKS))
def test_a_sample_is_lm_evals_installed_task_with_only_the_data_redirected(name):
    installed = online_tasks.installed(name)
    dataset = installed["dataset_path"].split("/")[-1] + (f"-{installed['dataset_name']}"
                                                          if installed.get("dataset_name") else "")
    assert TASKS[name].sample_file == f"{dataset}.jsonl" and installed["task"] == name
    assert TASKS[name].dataset == installed["dataset_path"]
    assert TASKS[name].kind == installed["output_type"]
    cfg = online_tasks.sample_config(name)
    assert cfg["include"] == str(online_tasks.yaml_path(name)) and os.path.isfile(cfg["include"])
    assert set(cfg) == {"include", "task", "tag", "dataset_path", "dataset_name", "dataset_kwargs",
                        "test_split", "fewshot_split"}
    named = {installed[k] for k in ("training_split", "validation_split", "test_split", "fewshot_split")
             if installed.get(k)}
    files = cfg["dataset_kwargs"]["data_files"]
    assert set(files) == named and set(files.values()) == {str(online_tasks.SAMPLES / TASKS[name].sample_file)}
    assert cfg["test_split"] == cfg["fewshot_split"] == (installed.get("test_split") or "validation")


def test_names_known_to_expand_units_catalog_and_chance(tmp_path):
    assert suites.expand(["hellaswag", "gsm8k_sample", "world_facts"]) == ["hellaswag", "gsm8k_sample", "world_facts"]
    assert suites.units(["arc_easy", "truthfulqa_mc2_sample"]) == \
        {"arc_easy": ["arc_easy"], "truthfulqa_mc2_sample": ["truthfulqa_mc2_sample"]}
    rows = {r["name"]: r for r in suites.catalog()}
    for t in TASKS.values():
        assert rows[t.name]["hub"] and not rows[t.sample]["hub"] and rows[t.name]["kind"] == rows[t.sample]["kind"]
        assert t.sample in rows[t.name]["description"]
    assert not rows["world_facts"]["hub"]
    assert suites.chance("hellaswag") == suites.chance("arc_challenge_sample") == 0.25
    assert suites.chance("gsm8k") == suites.chance("truthfulqa_gen_sample") == 0
    # one true answer among 5 or 6 (the dataset: 4-5 false ones); MC2: the share of true answers
    assert suites.chance("truthfulqa_mc1") == suites.chance("truthfulqa_mc1_sample") == pytest.approx(17 / 90)
    assert 0.3 < suites.chance("truthfulqa_mc2") < 0.5 and rows["truthfulqa_mc1"]["n_choices"] is None
    assert suites.needs_hub(["world", "gsm8k"]) and not suites.needs_hub(["world", "gsm8k_sample"])
    root = suites.prepare(tmp_path / "tasks", ["hellaswag", "hellaswag_sample", "arc_challenge_sample"])
    assert sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()) == \
        ["arc_challenge_sample/arc_challenge_sample.yaml", "hellaswag_sample/hellaswag_sample.yaml"]
    text = (root / "hellaswag_sample" / "hellaswag_sample.yaml").read_text()
    assert f"include: {online_tasks.yaml_path('hellaswag')}\n" in text and "dataset_path: json" in text


def test_lm_evals_default_index_only_for_a_hub_name(tmp_path, monkeypatch):
    import lm_eval.tasks

    made = []
    monkeypatch.setattr(lm_eval.tasks, "TaskManager", lambda **kw: made.append(kw["include_defaults"]))
    for names in (["hellaswag_sample", "world_facts"], ["hellaswag"], ["world", "gsm8k"]):
        suites.task_manager(tmp_path / "tasks", names)
    suites.task_manager(tmp_path / "tasks", ["gsm8k"], include_defaults=False)
    assert made == [False, True, True, False]


def test_datasets_is_offline_unless_a_task_reads_the_hub(monkeypatch):
    import datasets
    from huggingface_hub import constants

    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", datasets.config.HF_HUB_OFFLINE)  # restored after
    monkeypatch.setattr(datasets.config, "HF_DATASETS_OFFLINE", datasets.config.HF_DATASETS_OFFLINE)
    monkeypatch.setattr(online_tasks, "_set_here", False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    assert online_tasks.datasets_offline(["world_facts", "hellaswag_sample"])
    assert os.environ["HF_DATASETS_OFFLINE"] == "1" and datasets.config.HF_HUB_OFFLINE
    # the next task in the same Ray worker reads the Hub: our 1 is taken back, in datasets' config too
    assert not online_tasks.datasets_offline(["hellaswag"])
    assert "HF_DATASETS_OFFLINE" not in os.environ
    assert datasets.config.HF_HUB_OFFLINE == constants.HF_HUB_OFFLINE
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")  # the user's own setting stays
    assert online_tasks.datasets_offline(["hellaswag"]) and datasets.config.HF_HUB_OFFLINE


def test_hub_errors_name_the_task_only_for_its_dataset():
    with pytest.raises(UserError) as e, online_tasks.hub_errors(["world_facts", "arc_challenge"]):
        raise ConnectionError("Couldn't reach 'allenai/ai2_arc' on the Hub (LocalEntryNotFoundError)")
    assert str(e.value).startswith("tasks: arc_challenge reads allenai/ai2_arc from the Hugging Face Hub")
    with pytest.raises(ConnectionError), online_tasks.hub_errors(["hellaswag"]):
        raise ConnectionError("Couldn't reach 'someone/else' on the Hub (OfflineModeIsEnabled)")
    with pytest.raises(ConnectionError), online_tasks.hub_errors(["hellaswag_sample"]):
        raise ConnectionError("Couldn't reach 'Rowan/hellaswag' on the Hub (OfflineModeIsEnabled)")


# ---- through lm-eval's hf backend, on a tiny model -----------------------------------------------


@pytest.fixture(autouse=True)
def offline(monkeypatch, tmp_path_factory):
    import datasets

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf-datasets")


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    """A tiny GPT-2 (random weights) as test_eval_harness.py builds it; its BPE learns the samples' words,
    so prompts are short in tokens, and its context (1,024) holds gsm8k's 5 shots after lm-eval's cut."""
    text = [json.dumps(row) for name in TASKS for row in online_tasks.rows(name)]
    tokenizer = byte_bpe(text, vocab_size=1000)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer), n_positions=1024,
                                       bos_token_id=0, eos_token_id=0))
    w = Workspace(tmp_path_factory.mktemp("ws"))
    model.save_pretrained(w.model("tiny"))
    tokenizer.save_pretrained(w.model("tiny"))
    return w


@pytest.fixture(scope="module")
def ran(ws, tmp_path_factory) -> dict:
    """All the samples in one lm-eval run (one model load), through the recipe's own functions."""
    import datasets

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("HF_DATASETS_OFFLINE", "1")
        mp.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path_factory.getbasetemp() / "hf-datasets")
        cfg = EvalConfig(models=["tiny"], tasks=SAMPLES, backend="hf")
        tasks = suites.expand(cfg.tasks)
        tm = suites.task_manager(ws.root / "evals" / "tasks", tasks)
        return run_suite(cfg, model_source(ws, "tiny"), tasks, tm)


@pytest.mark.parametrize("sample", SAMPLES)
def test_every_sample_runs_lm_evals_task_and_scores_every_row(ran, sample):
    base = online_tasks.sample_of(sample)
    rows, items = online_tasks.rows(base), ran["samples"][sample]
    assert ran["n"][sample] == len(rows)
    assert set(METRICS[sample]) <= set(ran["tasks"][sample])
    # one record per row (gsm8k: per row and answer filter), each with its score
    assert sorted(r["doc_id"] for r in items) == sorted(list(range(len(rows))) * (2 if base == "gsm8k" else 1))
    for metric in {m.split("[")[0] for m in METRICS[sample]}:
        assert all(isinstance(r[metric], (int, float)) for r in items), metric
    first, row = items[0], rows[0]
    if base == "hellaswag":  # lm-eval's process_docs: "<label>: <ctx_a> <Ctx_b>", brackets cleaned
        assert first["prompt"] == f"{row['activity_label']}: {row['ctx_a']} {row['ctx_b'].capitalize()}"
        assert not any("[" in r["prompt"] for r in items) and len(first["loglikelihoods"]) == 4
    elif base.startswith("truthfulqa"):  # after lm-eval's six fixed questions
        assert first["prompt"].startswith("Q: What is human life expectancy")
        assert first["prompt"].endswith(f"\n\nQ: {row['question']}" + ("" if base == "truthfulqa_gen" else "\nA:"))
    elif base.startswith("arc"):
        assert first["prompt"] == f"Question: {row['question']}\nAnswer:"
        assert [len(r["loglikelihoods"]) for r in items] == [len(r["choices"]["text"]) for r in rows]
    elif base == "gsm8k":  # 5 shots from the same rows, never the question being asked
        for r in items:
            asked = rows[r["doc_id"]]["question"]
            assert r["prompt"].count("Question: ") == 6 and r["prompt"].count(asked) == 1
            assert r["prompt"].endswith(f"Question: {asked}\nAnswer:")
    if base == "truthfulqa_mc2":  # lm-eval's process_results_mc2: the probability mass on the true answers
        for r in items:
            p = [math.exp(x) for x in r["loglikelihoods"]]
            labels = rows[r["doc_id"]]["mc2_targets"]["labels"]
            assert r["acc"] == pytest.approx(sum(q for q, y in zip(p, labels, strict=True) if y) / sum(p))


def test_a_hub_name_offline_is_one_line_naming_its_sample(ws, monkeypatch):
    """lm-eval's own hellaswag (its installed folder indexed alone: the full index takes ~30 s) with the Hub
    out of reach: `datasets` refuses, and the run says so in one line."""
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(online_tasks.yaml_path("hellaswag").parent), include_defaults=False)
    cfg = EvalConfig(models=["tiny"], tasks=["hellaswag"], backend="hf", limit=2)
    with pytest.raises(UserError) as e:
        run_suite(cfg, model_source(ws, "tiny"), ["hellaswag"], tm)
    assert str(e.value) == ("tasks: hellaswag reads Rowan/hellaswag from the Hugging Face Hub, which this machine "
                            "cannot reach; run hellaswag_sample to try the same task on a local sample")


def test_a_ray_worker_runs_a_sample_as_playground_eval_does(ws):
    """The recipe's Ray task, called here without Ray: lm-eval's index of our files only, datasets offline."""
    from evaluation.recipe import evaluate_one

    root = suites.prepare(ws.root / "evals" / "tasks", ["arc_easy_sample"])
    cfg = EvalConfig(models=["tiny"], tasks=["arc_easy_sample"], backend="hf", limit=3)
    out = evaluate_one(cfg.model_dump(mode="json"), model_source(ws, "tiny"), "arc_easy_sample", ["arc_easy_sample"],
                       str(root))
    assert out["n"]["arc_easy_sample"] == 3 and {"acc", "acc_norm"} <= set(out["tasks"]["arc_easy_sample"])
