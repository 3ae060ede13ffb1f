"""The model registry (training/registry/registry.py, checkpoints.py, mlflow_sync.py) on a workspace the
test builds with the project's own pieces: a tokenizer, a pretraining run with two checkpoints, a model
exported from one of them, an SFT model made from that, and a fine-tuning run's TRL checkpoint."""

from __future__ import annotations

import json
import shutil
from dataclasses import asdict

import pytest
import torch

from training.errors import UserError
from training.model import checkpoint
from training.model.transformer import ModelConfig, Transformer
from training.registry import checkpoints, mlflow_sync, registry
from training.workspace import Workspace

RUN, FT = "pre", "ft"


def build_workspace(w: Workspace) -> Workspace:
    from training.tokenizers import tokenlab

    tok = tokenlab.train(w, "the quick brown fox jumps over the lazy dog. " * 40, trainer="scratch",
                         vocab_size=300, name="tok")
    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=300, block_size=64)
    for step, loss in ((2, 5.0), (4, 4.0)):
        torch.manual_seed(step)
        model = Transformer(cfg)
        checkpoint.save(w.run(RUN) / f"checkpoint_{step:06d}", model=model,
                        optimizer=torch.optim.AdamW(model.parameters()), step=step,
                        config={"model": asdict(cfg)}, rng_states=[],
                        meta={"run_id": RUN, "tokenizer_dir": tok["path"], "val_loss": loss})
    (w.run(RUN) / "config.yaml").write_text("model:\n  n_layer: 2\n")
    (w.run(RUN) / "run.json").write_text(json.dumps({"run_id": RUN, "dataset": "synthetic-1234", "tokenizer": "tok"}))
    checkpoints.export_checkpoint(w, RUN, 4, "base")
    # An SFT model made from `base`, with the lineage training/posttrain/sft_setup.py writes.
    shutil.copytree(w.model("base"), w.model("chat"))
    lineage = {"kind": "sft", "method": "full", "base_model": "base", "data_snapshot": "instructions-abcd",
               "replay_snapshot": "synthetic-1234", "run_id": FT, "parent_run": RUN}  # SFT with data.replay
    (w.model("chat") / "playground.json").write_text(json.dumps({"run_id": FT, "step": 3, "lineage": lineage}))
    ft = w.run(FT) / "checkpoints" / "checkpoint-3"
    shutil.copytree(w.model("chat"), ft)
    (ft / "optimizer.pt").write_bytes(b"0" * 100)
    (ft / "trainer_state.json").write_text(json.dumps({"log_history": [{"eval_loss": 2.5}]}))
    (w.run(FT) / "config.yaml").write_text("base:\n  model: base\n")
    (w.run(FT) / "run.json").write_text(json.dumps({"run_id": FT, "kind": "sft", "lineage": lineage}))
    return w


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return build_workspace(Workspace(tmp_path_factory.mktemp("regws")))


def test_every_model_has_a_kind_and_a_parent(ws):
    rows = {r["id"]: r for r in registry.list_models(ws, {"chat"})}
    assert {k: (r["kind"], r["parent"], r["deployed"]) for k, r in rows.items()} == {
        "base": ("pretrained", None, False), "chat": ("sft", "base", True)}
    assert rows["base"]["step"] == 4 and rows["base"]["architecture"] == "GPT2LMHeadModel"
    assert rows["base"]["size_bytes"] > 50_000
    assert [r["id"] for r in registry.list_models(ws, kind="sft")] == ["chat"]
    with pytest.raises(UserError, match=r"^kind: 'lora' is not one of pretrained"):
        registry.list_models(ws, kind="lora")
    assert registry.children(ws, "base") == ["chat"] and registry.count_parameters(ws.model("base")) > 10_000


@pytest.mark.parametrize("info, kind, parent", [
    ({"run_id": "r", "checkpoint": "/x", "step": 3}, "pretrained", None),
    ({"run_id": "r", "sweep": "s", "trial": "t"}, "sweep", None),
    ({"lineage": {"kind": "dpo", "base_model": "sft-1"}}, "dpo", "sft-1"),
    ({"kind": "reward_model", "lineage": {"kind": "reward", "base_model": "sft-1"}}, "reward", "sft-1"),
    ({"run_id": "r", "quantization": {"method": "int8", "source": "sft-1"}}, "quantized", "sft-1"),
    ({"kind": "imported", "source": "/data/m"}, "imported", None),
    ({}, "imported", None),
])
def test_kind_and_parent_come_from_playground_json(info, kind, parent):
    assert (registry.kind_of(info), registry.parent_of(info)) == (kind, parent)


def test_the_lineage_runs_from_the_data_to_deployments_and_evaluations(ws):
    evals = [{"task": "world_facts", "score": 0.5, "eval_id": "e1"}]
    g = registry.lineage_graph(ws, "chat", deployed={"chat"}, evaluations=evals)
    assert g["ancestors"] == ["base"] and g["children"] == []
    edges = {(e["source"], e["target"], e["label"]) for e in g["edges"]}
    assert {("dataset:synthetic-1234", "tokenizer:tok", "trained on"), ("tokenizer:tok", f"run:{RUN}", "tokenizer"),
            ("dataset:synthetic-1234", f"run:{RUN}", "data"), (f"run:{RUN}", "model:base", "step 4"),
            ("model:base", f"run:{FT}", "base"), ("dataset:instructions-abcd", f"run:{FT}", "data"),
            ("dataset:synthetic-1234", f"run:{FT}", "replay"),
            (f"run:{FT}", "model:chat", "saved"), ("model:chat", "deployment:chat", "deployed"),
            ("model:chat", "eval:e1/world_facts", "evaluated")} <= edges
    assert [n["id"] for n in g["nodes"] if n.get("current")] == ["model:chat"]
    dot = registry.to_dot(g)
    assert dot.startswith("digraph lineage {") and '"model:base" -> "run:ft" [label="base"];' in dot
    down = registry.lineage_graph(ws, "base")
    assert down["children"] == ["chat"] and ("model:base", f"run:{FT}", "base") in {
        (e["source"], e["target"], e["label"]) for e in down["edges"]}
    with pytest.raises(UserError, match=r"^model: no model 'nope'"):
        registry.lineage_graph(ws, "nope")


def test_the_checkpoint_browser_lists_and_exports_any_checkpoint(ws):
    from transformers import AutoModelForCausalLM

    rows = checkpoints.run_checkpoints(ws, RUN)
    assert [(c["name"], c["kind"], c["val_loss"], c["exported_as"]) for c in rows] == [
        ("pre@2", "pretrain", 5.0, []), ("pre@4", "pretrain", 4.0, ["base"])]
    assert all(c["size_bytes"] > 10_000 for c in rows)
    out = checkpoints.export_checkpoint(ws, RUN, 2)
    assert out["model"] == "pre-step2" and json.loads((ws.model("pre-step2") / "playground.json").read_text())["step"] == 2
    assert AutoModelForCausalLM.from_pretrained(out["path"]).config.n_layer == 2
    assert checkpoints.run_checkpoints(ws, RUN)[0]["exported_as"] == ["pre-step2"]
    with pytest.raises(UserError, match=r"^model: 'pre-step2' already exists"):
        checkpoints.export_checkpoint(ws, RUN, 2)
    with pytest.raises(UserError, match=r"^step: no checkpoint at step 3 in run 'pre' \(its steps: 2, 4\)"):
        checkpoints.export_checkpoint(ws, RUN, 3)
    with pytest.raises(UserError, match=r"^run: no run 'nope'"):
        checkpoints.run_checkpoints(ws, "nope")
    # A fine-tuning checkpoint: the model files without the optimizer, and the run's lineage.
    ft = checkpoints.export_checkpoint(ws, FT, 3, "chat-step3")
    files = {p.name for p in ws.model("chat-step3").iterdir()}
    assert "model.safetensors" in files and not files & {"optimizer.pt", "trainer_state.json"}
    row = registry.model_row(ws, ws.model(ft["model"]))
    assert (row["kind"], row["parent"], row["step"]) == ("sft", "base", 3)
    registry.delete_model(ws, "pre-step2")
    registry.delete_model(ws, "chat-step3")


def test_refs_name_models_or_checkpoints(ws):
    assert checkpoints.resolve_ref(ws, "base") == ws.model("base")
    assert checkpoints.resolve_ref(ws, f"{RUN}@2") == ws.run(RUN) / "checkpoint_000002"
    with pytest.raises(UserError, match=r"^b: no checkpoint at step 9 in run 'pre'"):
        checkpoints.resolve_ref(ws, f"{RUN}@9", "b")
    with pytest.raises(UserError, match=r"^a: no model or checkpoint 'ghost'"):
        checkpoints.resolve_ref(ws, "ghost")
    with pytest.raises(UserError, match=r"^a: '\.\./runs' is not a model id"):
        checkpoints.resolve_ref(ws, "../runs")


def test_delete_refuses_a_deployed_model_and_leaves_nothing_half_deleted(ws):
    shutil.copytree(ws.model("base"), ws.model("spare"))
    with pytest.raises(UserError, match=r"^model: 'spare' is deployed; undeploy it first"):
        registry.delete_model(ws, "spare", {"spare"})
    assert registry.is_model(ws.model("spare"))
    assert registry.delete_model(ws, "spare") == {"deleted": "spare", "children": []}
    assert not ws.model("spare").exists() and not [p for p in ws.models.iterdir() if p.name.startswith(".")]
    with pytest.raises(UserError, match=r"^model: no model 'spare'"):
        registry.delete_model(ws, "spare")


def test_mlflow_registry_follows_the_workspace(ws):
    """A registered model per workspace model, a new version when the weights change, the `deployed`
    alias on the served one, and the registered model deleted with the workspace model."""
    shutil.copytree(ws.model("base"), ws.model("mirror"))
    first = mlflow_sync.sync(ws, {"chat"})
    assert {"base", "chat", "mirror"} <= set(first["registered"]) and first["deployed"] == {"chat": "1"}
    again = mlflow_sync.sync(ws, {"chat"})
    assert again == {"registered": [], "new_versions": [], "deleted": [], "deployed": {"chat": "1"}}
    assert mlflow_sync.registered(ws, "chat")["aliases"] == {"deployed": "1"}
    weights = ws.model("mirror") / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # rewritten: a new state of the weights
    import os
    os.utime(weights, ns=(weights.stat().st_atime_ns, weights.stat().st_mtime_ns + 10**9))
    changed = mlflow_sync.sync(ws, set())
    assert changed["new_versions"] == ["mirror/2"] and changed["deployed"] == {}
    reg = mlflow_sync.registered(ws, "chat")
    assert reg["aliases"] == {} and [v["kind"] for v in reg["versions"]] == ["sft"]
    registry.delete_model(ws, "mirror")
    assert mlflow_sync.sync(ws, set())["deleted"] == ["mirror"] and mlflow_sync.registered(ws, "mirror") is None
