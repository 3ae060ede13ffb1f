"""Model cards (training/registry/card.py) for a lineage the test writes: a pretrained model, its SFT
(LoRA) child, a DPO grandchild that was evaluated, an int8 variant of it, and a bare imported folder.
Each card must parse back with huggingface_hub's ModelCard.load, metadata included."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from huggingface_hub import ModelCard

from evaluation import records
from training.registry import card
from training.workspace import Workspace

PRETRAIN_CFG = {"model": {"arch": "gpt2", "n_layer": 2, "n_head": 2, "n_embd": 32, "vocab_size": 64,
                          "block_size": 32},
                "train": {"max_steps": 10, "batch_size": 4, "lr": 0.002, "warmup_steps": 2, "seed": 7},
                "scale": {"num_workers": 1}}


def save_tiny(path: Path) -> int:
    """A tiny GPT-2 with a tokenizer; returns its number of parameters."""
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32))
    model.save_pretrained(path)
    vocab = {t: i for i, t in enumerate(["<pad>", "<s>", "</s>", "<unk>"] + [f"w{i}" for i in range(40)])}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>",
                            unk_token="<unk>").save_pretrained(path)
    return sum(p.numel() for p in model.parameters())


def _write(path: Path, data, as_yaml: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data) if as_yaml else json.dumps(data))


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    """(workspace, parameter count) with the five models described at the top."""
    ws = Workspace(tmp_path_factory.mktemp("cardws"))
    n = save_tiny(ws.model("pre"))
    for model_id in ("pre-sft", "pre-dpo", "pre-dpo-int8"):
        shutil.copytree(ws.model("pre"), ws.model(model_id))
    ws.model("bare").mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy2(ws.model("pre") / name, ws.model("bare") / name)

    _write(ws.model("pre") / "playground.json", {"run_id": "pre", "step": 10, "val_loss": 2.5,
                                                 "checkpoint": "runs/pre/checkpoint_000010", "config": PRETRAIN_CFG})
    _write(ws.run("pre") / "run.json", {"run_id": "pre", "dataset": "snap-1", "snapshot": None, "tokenizer": "tok-1"})
    _write(ws.dataset("snap-1") / "manifest.json", {
        "kind": "snapshot", "id": "snap-1", "sources": ["synthetic"],
        "counts": {"read": {"in": 100, "out": 100}, "quality": {"in": 100, "out": 80},
                   "exact_dedup": {"in": 80, "out": 75}},
        "outputs": {"train.jsonl": {"docs": 70}, "val.jsonl": {"docs": 5}}})

    _write(ws.model("pre-sft") / "playground.json", {"run_id": "pre-sft", "step": 6, "val_loss": 1.5, "lineage": {
        "kind": "sft", "method": "lora", "base_model": "pre", "data_snapshot": "inst-1", "run_id": "pre-sft"}})
    _write(ws.run("pre-sft") / "config.yaml", {"method": "lora", "lora": {"r": 8, "alpha": 16, "dropout": 0.0},
                                               "train": {"max_steps": 6, "lr": 0.0002, "batch_size": 2}}, True)
    _write(ws.dataset("inst-1") / "manifest.json", {"kind": "instructions", "counts": {"train": 50, "val": 5}})

    # No run folder for the DPO model: its beta comes from the lineage in playground.json.
    _write(ws.model("pre-dpo") / "playground.json", {"run_id": "pre-dpo", "step": 4, "lineage": {
        "kind": "dpo", "method": "dpo", "adapter": "full", "base_model": "pre-sft",
        "preference_snapshot": "pref-1", "run_id": "pre-dpo", "beta": 0.1, "loss_type": "sigmoid"}})
    _write(ws.model("pre-dpo-int8") / "playground.json", {"quantization": {
        "method": "int8", "format": "compressed-tensors", "scheme": "W8A8", "group_size": 128, "source": "pre-dpo"}})

    row = records.score_row("pre-dpo", "facts", "facts", {"acc": 0.6, "acc_stderr": 0.05}, 100, 0.25)
    records.write_record(ws, {"eval_id": "ev1", "name": "ev1", "status": "SUCCEEDED", "created_at": "2026-12-01",
                              "finished_at": "2026-12-01", "config": {"models": ["pre-dpo"], "tasks": ["facts"],
                                                                      "backend": "hf"}, "rows": [row], "groups": []})
    return ws, n


def test_card_facts_follow_the_lineage_back_to_the_data(lab):
    ws, n = lab
    f = card.card_facts(ws, ws.model("pre-dpo"))
    assert (f["id"], f["kind"], f["parent"], f["parents"]) == ("pre-dpo", "dpo", "pre-sft", ["pre-sft", "pre"])
    a = f["architecture"]
    assert (a["class"], a["layers"], a["heads"], a["width"], a["vocab"], a["context"]) == \
        ("GPT2LMHeadModel", 2, 2, 32, 64, 32)
    assert f["parameters"] == n and f["bytes"] > f["weights_bytes"] > 4 * n * 0.9
    assert f["tokenizer"]["vocab_size"] == 44 and f["tokenizer"]["eos"] == "</s>"
    pre, sft, dpo = f["stages"]
    assert (pre["kind"], sft["kind"], dpo["kind"]) == ("pretrained", "sft", "dpo")
    assert pre["hyperparameters"]["lr"] == 0.002 and pre["tokenizer"] == "tok-1"
    assert pre["data"]["stages"][1] == {"stage": "quality", "in": 100, "out": 80, "removed": 20}
    assert pre["data"]["splits"] == {"train": 70, "val": 5}
    assert sft["hyperparameters"]["lora_r"] == 8 and sft["hyperparameters"]["adapter"] == "lora"
    assert dpo["hyperparameters"]["beta"] == 0.1 and dpo["data"]["known"] is False  # pref-1 has no manifest
    assert f["datasets"] == ["snap-1", "inst-1", "pref-1"]
    [ev] = f["evaluations"]
    assert (ev["task"], ev["metric"], ev["score"], ev["eval_id"]) == ("facts", "acc", 0.6, "ev1")
    assert ev["ci95"] == pytest.approx([0.6 - 1.959964 * 0.05, 0.6 + 1.959964 * 0.05])
    json.dumps(f)  # JSON-ready, for the API


def test_the_written_card_round_trips_through_modelcard_load(lab):
    ws, _ = lab
    folder = ws.model("pre-dpo")
    path = card.write_card(ws, folder)
    assert path == folder / "README.md"
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temp file left
    loaded = ModelCard.load(path)
    d = loaded.data
    assert (d.license, d.language, d.library_name, d.pipeline_tag) == ("apache-2.0", "en", "transformers",
                                                                         "text-generation")
    assert d.base_model == "pre-sft" and "dpo" in d.tags and "llm-playground" in d.tags
    assert d.datasets == ["snap-1", "inst-1", "pref-1"]
    [result] = d.eval_results
    assert (result.dataset_name, result.metric_type, result.metric_value) == ("facts", "acc", 0.6)
    text = loaded.text
    for needed in ("## Model description", "## Tokenizer", "## Training data", "## Training recipe",
                   "## Evaluation", "## Lineage", "## Intended use and limitations", "## How to use",
                   "[0.502, 0.698]", "quality: 100 in, 80 kept, 20 removed", "beta=0.1", "lora_r=8",
                   "`pre-dpo` <- `pre-sft` <- `pre`", "POST http://127.0.0.1:8000/api/deployments",
                   "not use it in\nproduction"):
        assert needed in text, needed
    assert path.read_text() == str(card.build_card(ws, folder))


def test_a_quantized_model_card_names_its_scheme_and_source(lab):
    ws, _ = lab
    c = card.build_card(ws, ws.model("pre-dpo-int8"))
    assert c.data.base_model == "pre-dpo" and "int8" in c.data.tags and "quantized" in c.data.tags
    for needed in ("## Quantization", "- method: int8", "- format: compressed-tensors", "- scheme: W8A8",
                   "- group size: 128", "- source: pre-dpo"):
        assert needed in c.text, needed
    assert card.card_facts(ws, ws.model("pre-dpo-int8"))["parents"] == ["pre-dpo", "pre-sft", "pre"]


def test_a_bare_folder_still_gets_a_valid_card(lab, tmp_path):
    ws, n = lab
    f = card.card_facts(ws, ws.model("bare"))
    assert (f["kind"], f["parent"], f["parameters"], f["tokenizer"], f["evaluations"]) == \
        ("imported", None, n, None, [])
    path = tmp_path / "README.md"
    card.build_card(ws, ws.model("bare")).save(path)
    loaded = ModelCard.load(path)
    assert loaded.data.library_name == "transformers" and loaded.data.base_model is None
    assert loaded.data.eval_results is None and "Not evaluated yet" in loaded.text


def test_build_card_writes_nothing(lab):
    ws, _ = lab

    def listing():
        return sorted((str(p), p.stat().st_mtime_ns) for p in ws.root.rglob("*"))

    before = listing()
    for model_id in ("pre", "pre-sft", "bare"):
        card.build_card(ws, ws.model(model_id))
        card.card_facts(ws, ws.model(model_id))
    assert listing() == before
