"""Comparing two models tensor by tensor (training/registry/diff.py), on tiny models the tests save:
one layer perturbed moves that layer only; a checkpoint and its export are the same weights."""

from __future__ import annotations

import doctest
import shutil
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from evaluation import records
from training.errors import UserError
from training.registry import diff
from training.workspace import Workspace


def save_gpt2(path: Path, seed: int = 0, **kw) -> Path:
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    cfg = dict(vocab_size=64, n_embd=32, n_layer=2, n_head=2, n_positions=32) | kw
    GPT2LMHeadModel(GPT2Config(**cfg)).save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def base(tmp_path_factory) -> Path:
    return save_gpt2(tmp_path_factory.mktemp("a") / "base")


def copy_with(base: Path, dest: Path, change) -> Path:
    """A copy of `base` whose weights went through `change(state)`."""
    shutil.copytree(base, dest)
    state = load_file(dest / "model.safetensors")
    change(state)
    save_file(state, dest / "model.safetensors", metadata={"format": "pt"})
    return dest


def test_layer_of_groups_hf_and_our_names():
    assert doctest.testmod(diff).failed == 0
    assert diff.layer_of("blocks.3.attn.q_proj.weight") == "blocks.3"
    assert diff.layer_of("tok_emb.weight") == "embeddings" and diff.layer_of("norm_f.weight") == "final_norm"


def test_identical_models_differ_by_zero_everywhere(base, tmp_path):
    same = copy_with(base, tmp_path / "same", lambda s: None)
    out = diff.weight_diff(base, same)
    assert out["overall"] == {"params": sum(t["params"] for t in out["tensors"]), "relative_change": 0.0,
                              "cosine": 1.0}
    assert [r["layer"] for r in out["layers"]] == ["embeddings", "h.0", "h.1", "final_norm"]  # lm_head is tied
    assert all(r["relative_change"] == 0.0 and r["cosine"] == 1.0 for r in out["layers"])
    assert all(t["relative_change"] in (0.0, None) for t in out["tensors"])  # None: a bias of zeros in a


def test_perturbing_one_layer_moves_that_layer_only(base, tmp_path):
    name = "transformer.h.1.mlp.c_fc.weight"

    def nudge(state):
        state[name] = state[name] + 0.01 * torch.randn_like(state[name])

    out = diff.weight_diff(base, copy_with(base, tmp_path / "nudged", nudge))
    layers = {r["layer"]: r for r in out["layers"]}
    assert 0 < layers["h.1"]["relative_change"] < 1 and layers["h.1"]["cosine"] < 1
    assert all(r["relative_change"] == 0.0 for k, r in layers.items() if k != "h.1")
    moved = [t["name"] for t in out["tensors"] if t["relative_change"]]
    assert moved == [name]
    a = load_file(base / "model.safetensors")[name].double()
    b = load_file(tmp_path / "nudged" / "model.safetensors")[name].double()
    [row] = [t for t in out["tensors"] if t["name"] == name]
    assert row["relative_change"] == pytest.approx(float((b - a).norm() / a.norm()))
    assert row["params"] == a.numel() and row["shape"] == list(a.shape)
    assert 0 < out["overall"]["relative_change"] < layers["h.1"]["relative_change"]  # pooled over everything


def test_a_rescaled_tensor_keeps_cosine_one(base, tmp_path):
    name = "transformer.h.0.attn.c_attn.weight"
    out = diff.weight_diff(base, copy_with(base, tmp_path / "x2", lambda s: s.update({name: s[name] * 2})))
    [row] = [t for t in out["tensors"] if t["name"] == name]
    assert row["relative_change"] == pytest.approx(1.0) and row["cosine"] == pytest.approx(1.0)


def test_different_shapes_or_names_are_refused_naming_the_tensor(base, tmp_path):
    wider_vocab = save_gpt2(tmp_path / "vocab", vocab_size=80)
    with pytest.raises(UserError, match=r"^cannot compare: tensor 'transformer.wte.weight' is \[64, 32\] in a "
                                        r"but \[80, 32\] in b$"):
        diff.weight_diff(base, wider_vocab)
    deeper = save_gpt2(tmp_path / "deeper", n_layer=3)
    with pytest.raises(UserError, match=r"^cannot compare: tensor 'transformer.h.2.\S+' is in b but not in a"):
        diff.weight_diff(base, deeper)


def test_a_path_that_is_not_a_model_is_refused(base, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"^b: not a model: .*empty has no config\.json$"):
        diff.weight_diff(base, tmp_path / "empty")
    with pytest.raises(UserError, match=r"^a: not a model: .*nowhere is not a folder$"):
        diff.weight_diff(tmp_path / "nowhere", base)
    shutil.copytree(base, tmp_path / "noweights", ignore=shutil.ignore_patterns("*.safetensors"))
    with pytest.raises(UserError, match=r"^b: not a model: .*has no weights"):
        diff.weight_diff(base, tmp_path / "noweights")


def test_a_pretraining_checkpoint_equals_its_export_under_hf_names(tmp_path):
    from training.model import checkpoint
    from training.model.export import export_hf
    from training.model.transformer import ModelConfig, Transformer

    cfg = ModelConfig(n_layer=2, n_head=2, n_embd=32, vocab_size=64, block_size=32)
    torch.manual_seed(0)
    model = Transformer(cfg)
    ckpt = checkpoint.save(tmp_path / "run" / "checkpoint_000010", model=model,
                           optimizer=torch.optim.AdamW(model.parameters()), step=10,
                           config={"model": asdict(cfg)}, rng_states=[])
    exported = export_hf(model, tmp_path / "export")
    out = diff.weight_diff(ckpt, exported)
    assert out["overall"]["relative_change"] == 0.0 and out["overall"]["cosine"] == 1.0
    assert "transformer.h.1.attn.c_attn.weight" in {t["name"] for t in out["tensors"]}  # HF names
    assert out["overall"]["params"] == sum(p.numel() for p in model.parameters())


def test_score_diff_pairs_the_tasks_both_models_were_scored_on(tmp_path):
    ws = Workspace(tmp_path)
    row = lambda m, t, acc: records.score_row(m, t, t, {"acc": acc, "acc_stderr": 0.02}, 100, 0.25)  # noqa: E731
    records.write_record(ws, {"eval_id": "e1", "name": "e1", "status": "SUCCEEDED", "created_at": "2026-12-01",
                              "finished_at": "2026-12-01", "config": {"models": [], "tasks": [], "backend": "hf"},
                              "rows": [row("a", "facts", 0.40), row("b", "facts", 0.55), row("a", "only_a", 0.3)],
                              "groups": []})
    [facts] = diff.score_diff(ws, "a", "b")
    assert (facts["task"], facts["metric"], facts["a"], facts["b"]) == ("facts", "acc", 0.40, 0.55)
    assert facts["delta"] == pytest.approx(0.15) and facts["ci95_a"] is not None
    assert diff.score_diff(ws, "a", "ghost") == []
