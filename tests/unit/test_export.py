"""Unit tests for training/model/export.py: our tiny models must round-trip through HF exactly."""

import json

import pytest
import torch
from torch import nn

transformers = pytest.importorskip("transformers")
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

from training.errors import UserError  # noqa: E402
from training.model import export as export_mod  # noqa: E402
from training.model.export import export_hf, hf_config, hf_state_dict  # noqa: E402
from training.model.transformer import ModelConfig, Transformer  # noqa: E402

VOCAB, BLOCK = 128, 48



CASES = [
    pytest.param({"arch": "gpt2"}, id="gpt2"),
    pytest.param({"arch": "llama", "n_head": 4, "n_kv_head": 2}, id="llama-gqa"),
    pytest.param({"arch": "llama", "tie_embeddings": False}, id="llama-untied"),
    pytest.param({"arch": "gpt2", "tie_embeddings": False}, id="gpt2-untied"),
]


def tiny_model(seed=0, **kw) -> Transformer:
    base = dict(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32)
    base.update(kw)
    torch.manual_seed(seed)
    model = Transformer(ModelConfig(**base))
    # Bigger weights than the 0.02 init so logits (and argmax margins) are not all ~0.
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model.eval()


def ids(shape, seed=1):
    return torch.randint(0, VOCAB, shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("case", CASES)
def test_export_roundtrip_matches_hf(case, tmp_path):
    model = tiny_model(**case)
    out = export_hf(model, tmp_path / "hf")
    assert out == (tmp_path / "hf").absolute()
    assert {p.name for p in tmp_path.iterdir()} == {"hf"}  # no temp siblings left behind
    assert {"config.json", "model.safetensors", "generation_config.json"} <= {
        p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["architectures"] == [
        "GPT2LMHeadModel" if case["arch"] == "gpt2" else "LlamaForCausalLM"]
    assert config["tie_word_embeddings"] == case.get("tie_embeddings", True)

    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    idx = ids((2, 40))
    with torch.no_grad():
        diff = (model(idx)[0] - hf(idx).logits).abs().max().item()
    assert diff < 1e-4, f"max abs logits diff {diff}"

    prompt = idx[:, :6]
    ours = model.generate(prompt, 12, temperature=0)
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                         max_new_tokens=12, use_cache=True)
    assert torch.equal(ours, theirs)


def test_hf_state_dict_layout():
    cfg_model = tiny_model(arch="gpt2")
    sd = hf_state_dict(cfg_model)
    c_attn = sd["transformer.h.0.attn.c_attn.weight"]
    assert c_attn.shape == (32, 96) and c_attn.is_contiguous()  # Conv1D: (in, out), fused qkv
    assert all(t.is_contiguous() for t in sd.values())
    # clones: editing the export does not touch the model
    sd["transformer.wte.weight"].zero_()
    assert cfg_model.tok_emb.weight.abs().sum() > 0

    class Wrapper(nn.Module):  # DDP-style wrapper is unwrapped
        def __init__(self, m):
            super().__init__()
            self.module = m

    llama = tiny_model(arch="llama", n_kv_head=1)
    sd = hf_state_dict(Wrapper(llama))
    assert sd["model.layers.1.self_attn.k_proj.weight"].shape == (8, 32)
    assert torch.equal(sd["lm_head.weight"], sd["model.embed_tokens.weight"])


def test_hf_config_fields():
    cfg = ModelConfig(arch="llama", n_embd=64, n_head=8, n_kv_head=2, block_size=128,
                      rope_theta=500000.0, norm_eps=1e-6, tie_embeddings=False)
    hc = hf_config(cfg, bos_token_id=1, eos_token_id=2)
    assert (hc.num_key_value_heads, hc.head_dim, hc.max_position_embeddings) == (2, 8, 128)
    assert hc.rope_parameters["rope_theta"] == 500000.0 and hc.rms_norm_eps == 1e-6
    assert hc.intermediate_size == cfg.mlp_hidden and not hc.tie_word_embeddings
    assert (hc.bos_token_id, hc.eos_token_id, hc.pad_token_id) == (1, 2, None)
    g = hf_config(ModelConfig(arch="gpt2", n_embd=64, dropout=0.1))
    assert g.n_inner == 256 and g.activation_function == "gelu_new"
    assert g.resid_pdrop == g.embd_pdrop == g.attn_pdrop == 0.0
    assert g.bos_token_id is None and g.eos_token_id is None  # not GPT-2's 50256
    assert g.dtype == torch.float32


def test_export_with_tokenizer(tokenizer_dir, tmp_path):
    out = export_hf(tiny_model(arch="llama"), tmp_path / "m", tokenizer_dir=tokenizer_dir)
    for f in tokenizer_dir.iterdir():
        assert (out / f.name).read_bytes() == f.read_bytes()
    config = json.loads((out / "config.json").read_text())
    gen = json.loads((out / "generation_config.json").read_text())
    for d in (config, gen):
        assert (d["bos_token_id"], d["eos_token_id"], d["pad_token_id"]) == (1, 2, 0)
    tok = AutoTokenizer.from_pretrained(out)
    assert tok("w3 w7")["input_ids"] == [7, 11]


def test_extra_files(tmp_path):
    out = export_hf(tiny_model(), tmp_path / "m",
                    extra_files={"playground.json": '{"run_id": "r1"}', "blob.bin": b"\x00\x01"})
    assert json.loads((out / "playground.json").read_text()) == {"run_id": "r1"}
    assert (out / "blob.bin").read_bytes() == b"\x00\x01"
    for bad in ("config.json", "../escape.txt", "sub/file.txt"):
        with pytest.raises(ValueError, match="extra_files"):
            export_hf(tiny_model(), tmp_path / "m", extra_files={bad: "x"})
    assert (out / "playground.json").exists()  # failed exports left the good one alone
    assert {p.name for p in tmp_path.iterdir()} == {"m"}


def test_export_bf16(tmp_path):
    from safetensors import safe_open

    out = export_hf(tiny_model(arch="gpt2"), tmp_path / "m", dtype=torch.bfloat16)
    assert json.loads((out / "config.json").read_text())["dtype"] == "bfloat16"
    with safe_open(out / "model.safetensors", "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()}  # noqa: SIM118  (safetensors' handle is no dict) == {torch.bfloat16}


def test_reexport_replaces_existing_dir(tmp_path):
    out = tmp_path / "m"
    export_hf(tiny_model(seed=0, arch="llama"), out)
    (out / "stale.txt").write_text("from the previous export")
    second = tiny_model(seed=1, arch="llama")
    export_hf(second, out)
    assert not (out / "stale.txt").exists()
    assert {p.name for p in tmp_path.iterdir()} == {"m"}
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    idx = ids((1, 10))
    with torch.no_grad():
        assert (second(idx)[0] - hf(idx).logits).abs().max().item() < 1e-4


def test_failed_export_leaves_previous_export_intact(tmp_path, monkeypatch):
    out = tmp_path / "m"
    export_hf(tiny_model(arch="gpt2"), out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def half_written(model, dest, tokenizer_dir, dtype, extra_files):
        (dest / "config.json").write_text("{}")
        raise RuntimeError("disk full")

    monkeypatch.setattr(export_mod, "_write_checkpoint", half_written)
    with pytest.raises(RuntimeError, match="disk full"):
        export_hf(tiny_model(arch="gpt2", seed=3), out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert {p.name for p in tmp_path.iterdir()} == {"m"}


def test_export_user_errors(tmp_path, tokenizer_dir):
    with pytest.raises(UserError, match="does not exist"):
        export_hf(tiny_model(), tmp_path / "m", tokenizer_dir=tmp_path / "nope")
    small = Transformer(ModelConfig(vocab_size=16, block_size=8, n_layer=1, n_head=2, n_embd=8))
    with pytest.raises(UserError, match="vocab_size"):
        export_hf(small, tmp_path / "m", tokenizer_dir=tokenizer_dir)
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="not a directory"):
        export_hf(small, tmp_path / "file")
    assert {p.name for p in tmp_path.iterdir()} == {"file"}


# ----------------------------------------------------------------------------- load_export


def test_load_export_of_a_playground_export(tmp_path):
    """What `playground export` / `bench serve` write: playground.json holds the run config."""
    from training.config import load_config
    from training.model.export import load_export

    cfg = load_config(None, ["model.vocab_size=128", "model.block_size=48", "model.n_layer=2",
                             "model.n_head=4", "model.n_embd=32", "model.arch=llama", "model.n_kv_head=2"])
    torch.manual_seed(0)
    model = Transformer(cfg.model).eval()  # random weights, like bench-micro
    info = {"run_id": None, "step": 0, "config": cfg.model_dump(mode="json")}
    out = export_hf(model, tmp_path / "m", extra_files={"playground.json": json.dumps(info)})
    back = load_export(out)
    assert back.config == cfg.model and not back.training
    assert back.lm_head.weight is back.tok_emb.weight
    idx = ids((2, 20))
    with torch.no_grad():
        assert torch.equal(back(idx)[0], model(idx)[0])
    assert torch.equal(back.generate(idx[:, :4], 8, temperature=0), model.generate(idx[:, :4], 8, temperature=0))
    half = load_export(export_hf(model, tmp_path / "bf16", dtype=torch.bfloat16))
    assert {p.dtype for p in half.parameters()} == {torch.float32}  # upcast on load


@pytest.mark.parametrize("case", CASES)
def test_load_export_of_a_sharded_hf_folder(case, tmp_path):
    """A plain (sharded) Hugging Face folder: the config comes from config.json."""
    from training.model.export import load_export

    model = tiny_model(**case)
    hf = AutoModelForCausalLM.from_pretrained(export_hf(model, tmp_path / "m")).eval()
    hf.save_pretrained(tmp_path / "sharded", max_shard_size="20KB")
    assert (tmp_path / "sharded" / "model.safetensors.index.json").is_file()
    back = load_export(tmp_path / "sharded")
    idx = ids((1, 30))
    with torch.no_grad():
        assert (back(idx)[0] - model(idx)[0]).abs().max().item() < 1e-5
    assert back.config.kv_heads == model.config.kv_heads
    assert back.config.tie_embeddings == model.config.tie_embeddings


def test_load_export_errors(tmp_path):
    from training.model.export import load_export

    with pytest.raises(UserError, match="missing config.json"):
        load_export(tmp_path / "nowhere")
    out = export_hf(tiny_model(), tmp_path / "m")
    (out / "model.safetensors").rename(tmp_path / "weights.safetensors")
    with pytest.raises(UserError, match="no model.safetensors"):
        load_export(out)
    (tmp_path / "weights.safetensors").rename(out / "model.safetensors")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "model_type": "bert"}))
    with pytest.raises(UserError, match="unsupported model type 'bert'"):
        load_export(out)
    (out / "config.json").write_text(json.dumps({**config, "scale_attn_by_inverse_layer_idx": True}))
    with pytest.raises(UserError, match="attention scaling"):
        load_export(out)
    (out / "config.json").write_text(json.dumps({**config, "n_embd": 64}))
    with pytest.raises(UserError, match="do not fit"):
        load_export(out)
    (out / "config.json").write_text(json.dumps(config))
    (out / "playground.json").write_text(json.dumps({"config": {"model": {"n_layers": 2}}}))
    with pytest.raises(UserError, match="playground.json"):
        load_export(out)
    (out / "playground.json").write_text(json.dumps({"config": {"model": {
        **{k: v for k, v in tiny_model().config.__dict__.items()}, "arch": "llama"}}}))
    with pytest.raises(UserError, match="config.json says"):
        load_export(out)
