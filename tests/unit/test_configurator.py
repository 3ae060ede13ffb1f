"""training/model/configurator.py: counts that equal the real model, memory and time formulas."""

import json
from pathlib import Path

import pytest
import torch
from variants import PARAMS, variant_cfg

from training.config import read_yaml
from training.errors import UserError
from training.model import configurator as cz
from training.model.transformer import ModelConfig, Transformer, flops_per_token, param_breakdown

ROOT = Path(__file__).resolve().parents[2]

# Published totals (Hugging Face's GPT-2 uploads; Meta's Llama model cards).
KNOWN_TOTALS = {
    "gpt2-small": 124_439_808,
    "gpt2-medium": 354_823_168,
    "gpt2-large": 774_030_080,
    "llama-1b": 1_235_814_400,
    "llama2-7b": 6_738_415_616,
}


def built_on_meta(cfg: ModelConfig) -> Transformer:
    with torch.device("meta"):  # shapes only: a 7B model costs no memory
        return Transformer(cfg)


@pytest.mark.parametrize("name", list(cz.PRESETS))
def test_preset_counts_equal_the_built_model(name):
    cfg = cz.preset(name)
    model = built_on_meta(cfg)
    counts = cz.count_params(name)
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    if name in KNOWN_TOTALS:
        assert counts["total"] == KNOWN_TOTALS[name]
    b = param_breakdown(model)  # the model's own breakdown, by module name
    assert counts["embeddings"] == b["token_embedding"] + b["position_embedding"]
    assert (counts["attention"], counts["mlp"], counts["norms"], counts["head"]) == (
        b["attention"], b["mlp"], b["norms"], b["lm_head"])
    final_norm = counts["norms"] // (2 * cfg.n_layer + 1)  # all presets are pre-norm
    assert counts["per_layer"] * cfg.n_layer == (
        counts["attention"] + counts["mlp"] + counts["norms"] - final_norm)


def test_llama2_7b_shape():
    cfg = cz.preset("llama2-7b")
    assert (cfg.n_layer, cfg.n_embd, cfg.n_head, cfg.mlp_hidden, cfg.vocab_size, cfg.block_size) == (
        32, 4096, 32, 11008, 32000, 4096)
    assert not cfg.tie_embeddings and cfg.layout.norm == "rmsnorm" and cfg.layout.mlp == "swiglu"
    assert cfg.layout.pos_embedding == "rope"


@pytest.mark.parametrize("name", ["nano", "micro"])
def test_small_presets_are_the_config_files(name):
    assert cz.preset(name) == ModelConfig(**read_yaml(ROOT / f"configs/pretrain/{name}.yaml")["model"])


@pytest.mark.parametrize("kw", PARAMS)
def test_count_params_equals_numel_for_every_variant(kw):
    for extra in ({}, {"tie_embeddings": not kw.get("tie_embeddings", True)}):
        cfg = variant_cfg(**{**kw, **extra})
        model = Transformer(cfg)
        counts = cz.count_params(cfg)
        assert counts["total"] == sum(p.numel() for p in model.parameters())
        b = param_breakdown(model)
        assert counts["attention"] == b["attention"] and counts["mlp"] == b["mlp"]
        assert counts["norms"] == b["norms"] and counts["head"] == b["lm_head"]


@pytest.mark.parametrize("kw", PARAMS)
def test_flops_per_token_matches_the_model(kw):
    cfg = variant_cfg(**kw)
    assert cz.flops_per_token(cfg) == flops_per_token(cfg)
    assert cz.flops_per_token(cfg, 8) == flops_per_token(cfg, 8)
    n = cz.count_params(cfg)["total"] - (cfg.block_size * cfg.n_embd if cfg.layout.pos_embedding == "learned" else 0)
    assert cz.flops_per_token(cfg, 10) == 6 * n + 12 * cfg.n_layer * cfg.n_embd * 10


def test_activations_follow_korthikanti():
    """GPT-2 block, 16-bit, dropout on: exactly 34 sbh + 5 a s^2 b bytes per layer."""
    cfg = ModelConfig(arch="gpt2", n_layer=3, n_head=4, n_embd=64, block_size=128, vocab_size=100, dropout=0.1)
    s, b, h, a = 128, 3, 64, 4
    per_layer = cz.activation_bytes_per_layer(cfg, b, s, "bf16")
    assert per_layer["total"] == 34 * s * b * h + 5 * a * s * s * b
    assert per_layer["attention"] == 11 * s * b * h + 5 * a * s * s * b
    assert per_layer["mlp"] == 19 * s * b * h and per_layer["norms"] == 4 * s * b * h
    # no dropout: no masks, no dropped copy of the probabilities
    no_drop = cz.activation_bytes_per_layer(ModelConfig(**{**cfg.__dict__, "dropout": 0.0}), b, s, "bf16")
    assert no_drop["total"] == 32 * s * b * h + 2 * a * s * s * b
    flash = cz.activation_bytes_per_layer(cfg, b, s, "bf16", flash_attention=True)
    assert flash["total"] == 34 * s * b * h
    fp32 = cz.activation_bytes_per_layer(ModelConfig(**{**cfg.__dict__, "dropout": 0.0}), b, s, "fp32")
    assert fp32["total"] == 2 * no_drop["total"]
    # GQA shrinks k and v; SwiGLU keeps more hidden-width tensors
    gqa = cz.activation_bytes_per_layer(ModelConfig(**{**cfg.__dict__, "n_kv_head": 1}), b, s, "bf16")
    assert per_layer["attention"] - gqa["attention"] == 2 * 2 * s * b * (h - h // a)


def test_memory_estimate_conventions():
    cfg = cz.preset("gpt2-small")
    n = cz.count_params(cfg)["total"]
    mixed = cz.memory_estimate(cfg, 8, 1024, "bf16")
    assert (mixed["weights"], mixed["gradients"], mixed["optimizer"]) == (2 * n, 2 * n, 12 * n)
    assert mixed["bytes_per_param"] == 16
    full = cz.memory_estimate(cfg, 8, 1024, "fp32")
    assert (full["weights"], full["gradients"], full["optimizer"]) == (4 * n, 4 * n, 8 * n)
    sgd = cz.memory_estimate(cfg, 8, 1024, "fp16", optimizer="sgd")
    assert sgd["optimizer"] == 4 * n  # fp32 master weights only
    assert mixed["activations"] == 12 * mixed["activations_per_layer"] + mixed["logits"]
    assert mixed["logits"] == 8 * 1024 * 50257 * (2 + 4)
    assert mixed["total"] == sum(mixed[k] for k in ("weights", "gradients", "optimizer", "activations"))
    assert mixed["readable"]["total"].endswith("GiB")
    json.dumps(mixed)
    # activations grow with the batch, the rest does not
    bigger = cz.memory_estimate(cfg, 16, 1024, "bf16")
    assert bigger["weights"] == mixed["weights"] and bigger["activations"] == 2 * mixed["activations"]


def test_training_time():
    t = cz.training_time("gpt2-small", 1e9, "a100-80gb", 0.5, n_gpus=2)
    expected = 1e9 * cz.flops_per_token("gpt2-small") / (2 * 312e12 * 0.5)
    assert t["seconds"] == pytest.approx(expected)
    assert t["readable"] == cz.readable_duration(expected)
    assert cz.training_time("gpt2-small", 1e9, "h200", 0.5)["seconds"] == pytest.approx(
        cz.training_time("gpt2-small", 1e9, "h100-sxm", 0.5)["seconds"])  # same compute
    json.dumps(t)
    assert cz.readable_duration(42) == "42 s" and cz.readable_duration(90) == "1.5 min"
    assert cz.readable_duration(3 * 86400) == "3.0 days" and cz.readable_duration(0.25) == "250 ms"
    assert cz.readable_duration(2 * 365.25 * 86400) == "2.0 years"


def test_block_diagram():
    d = cz.block_diagram("llama-1b")
    kinds = [s["kind"] for s in d["stages"]]
    assert kinds == ["input", "embedding", "position", "block", "norm", "head", "output"]
    block = d["stages"][3]
    assert block["repeat"] == 16 and [c["kind"] for c in block["children"]] == [
        "norm", "attention", "add", "norm", "mlp", "add"]
    assert "grouped-query" in block["children"][1]["label"] and "RoPE" in block["children"][1]["label"]
    assert "1,235,814,400" in d["text"] and "tied" in d["text"]
    post = cz.block_diagram(variant_cfg(norm_position="post", n_kv_head=1, pos_embedding="none"))
    assert [s["kind"] for s in post["stages"]] == ["input", "embedding", "position", "block", "head", "output"]
    assert [c["kind"] for c in post["stages"][3]["children"]] == ["attention", "add", "norm", "mlp", "add", "norm"]
    assert "multi-query" in post["text"]
    json.dumps(post)


def test_summary_is_json():
    s = cz.summary("micro", batch_size=4, gpu="l4", mfu=0.3)
    assert s["params"]["total"] == 10_101_760
    assert s["training_time"]["tokens"] == 20 * s["params"]["total"]
    assert json.loads(json.dumps(s))["layout"]["pos_embedding"] == "learned"


@pytest.mark.parametrize("call, field", [
    (lambda: cz.count_params({"n_layer": 0}), "model.n_layer"),
    (lambda: cz.count_params({"n_layers": 4}), "model.n_layers: unknown key"),
    (lambda: cz.count_params({"mlp": "tanh"}), "model.mlp"),
    (lambda: cz.count_params({"n_embd": 100, "n_head": 3}), "n_embd"),
    (lambda: cz.count_params("gpt5"), "preset"),
    (lambda: cz.count_params(42), "model"),
    (lambda: cz.memory_estimate("nano", 8, 128, "fp8"), "precision"),
    (lambda: cz.memory_estimate("nano", 8, 128, "bf16", optimizer="lion"), "optimizer"),
    (lambda: cz.memory_estimate("nano", 0, 128, "bf16"), "batch_size"),
    (lambda: cz.memory_estimate("nano", 8, 129, "bf16"), "seq_len"),
    (lambda: cz.flops_per_token("nano", -1), "seq_len"),
    (lambda: cz.training_time("nano", 1e9, "tpu", 0.4), "gpu"),
    (lambda: cz.training_time("nano", 1e9, "l4", 1.5), "mfu"),
    (lambda: cz.training_time("nano", 0, "l4", 0.4), "tokens"),
    (lambda: cz.training_time("nano", 1e9, "l4", 0.4, n_gpus=0), "n_gpus"),
])
def test_validation_names_the_field(call, field):
    with pytest.raises(UserError, match=field):
        call()


def test_dict_specs_are_validated_like_run_configs():
    cfg = cz.model_config({"arch": "llama", "n_kv_head": 2, "n_embd": "64", "n_head": 4})
    assert cfg.n_embd == 64 and cfg.kv_heads == 2
    assert cz.count_params({"arch": "gpt2"}) == cz.count_params(ModelConfig())
