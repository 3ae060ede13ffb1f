"""Architecture-lab variants of training/model/transformer.py: every component swap is a working model.

For each variant: shapes, causal masking, gradients reaching every parameter, KV-cache
generation, sdpa == math attention; where Hugging Face has the same architecture, logits
equal to GPT2LMHeadModel / LlamaForCausalLM through export_hf and back through
load_export; where it has not, export_hf refuses with a UserError.
"""

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from variants import BLOCK, PARAMS, VARIANTS, VOCAB, randint, variant_cfg, variant_model

from training.config import load_config, read_yaml
from training.errors import UserError
from training.model.transformer import (
    ARCH_DEFAULTS,
    KVCache,
    ModelConfig,
    Transformer,
    alibi_bias,
    alibi_slopes,
    sinusoidal_embedding,
)

ROOT = Path(__file__).resolve().parents[2]


# ----------------------------------------------------------------------------- config


def test_defaults_are_the_arch_layouts():
    for arch, usual in ARCH_DEFAULTS.items():
        layout = asdict(ModelConfig(arch=arch).layout)
        assert layout == {**usual, "norm_position": "pre"}
    assert ModelConfig(arch="gpt2").mlp_hidden == 4 * 128
    assert ModelConfig(arch="gpt2", mlp="swiglu").mlp_hidden == 352  # the SwiGLU 2/3 rule
    assert ModelConfig(arch="llama", mlp="gelu").mlp_hidden == 4 * 128
    assert ModelConfig(n_embd=128, mlp_ratio=2.5).mlp_hidden == 320
    assert ModelConfig(arch="gpt2", n_kv_head=1).kv_heads == 1  # MQA on gpt2 is allowed now


@pytest.mark.parametrize("path", sorted((ROOT / "configs/pretrain").glob("*.yaml")), ids=lambda p: p.name)
def test_existing_configs_keep_their_layout(path):
    """Configs written before the lab do not mention its fields: classic layouts."""
    block = read_yaml(path)["model"]
    cfg = load_config(path).model
    lab_fields = {"pos_embedding", "norm", "norm_position", "mlp", "mlp_ratio", "bias"}
    if not lab_fields & set(block):
        assert asdict(cfg.layout) == {**ARCH_DEFAULTS[cfg.arch], "norm_position": "pre"}


@pytest.mark.parametrize("kwargs, field", [
    ({"pos_embedding": "xpos"}, "pos_embedding"),
    ({"norm": "batchnorm"}, "norm"),
    ({"norm_position": "sandwich"}, "norm_position"),
    ({"mlp": "geglu"}, "mlp"),
    ({"mlp_ratio": 0}, "mlp_ratio"),
    ({"mlp_ratio": -1.5}, "mlp_ratio"),
    ({"mlp_ratio": 0.001}, "mlp_ratio"),  # rounds to zero hidden units
    ({"mlp_ratio": 2.0, "intermediate_size": 64}, "mlp_ratio"),
    ({"bias": "yes"}, "bias"),
    ({"n_kv_head": 3}, "n_kv_head"),
    ({"arch": "gpt2", "pos_embedding": "rope", "n_embd": 36, "n_head": 4}, "head_dim"),
])
def test_variant_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_odd_head_dim_is_fine_without_rope():
    ModelConfig(arch="llama", n_embd=36, n_head=4, pos_embedding="learned")  # no RoPE pairs needed


@pytest.mark.parametrize("name, kw", VARIANTS, ids=[n for n, _ in VARIANTS])
def test_every_variant_loads_from_a_run_config(name, kw):
    overrides = [f"model.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in kw.items()]
    cfg = load_config(None, overrides).model
    for key, value in kw.items():
        assert getattr(cfg, key) == value


@pytest.mark.parametrize("override, field", [
    ("model.pos_embedding=xpos", "model.pos_embedding"),
    ("model.norm_position=middle", "model.norm_position"),
    ("model.mlp=tanh", "model.mlp"),
    ("model.bias=maybe", "model.bias"),
])
def test_bad_variant_in_run_config_names_the_key(override, field):
    with pytest.raises(UserError, match=field):
        load_config(None, [override])


def test_compare_configs_differ_only_in_positions():
    kinds = ("learned", "rope", "alibi")
    files = {kind: read_yaml(ROOT / f"configs/pretrain/compare-{kind}.yaml") for kind in kinds}
    for kind, raw in files.items():
        assert raw["model"].pop("pos_embedding") == kind
    assert files["rope"] == files["learned"] == files["alibi"]
    for kind in kinds:
        cfg = load_config(ROOT / f"configs/pretrain/compare-{kind}.yaml")
        n = Transformer(cfg.model).num_params()
        assert n < 3_000_000  # trains in minutes on 2 CPU cores
        assert cfg.train.max_steps * cfg.train.batch_size * cfg.model.block_size <= 3_000_000


# ----------------------------------------------------------------------------- forward


def test_sinusoidal_table_is_the_paper_formula():
    pe = sinusoidal_embedding(torch.arange(10), 6)
    assert pe.shape == (10, 6)
    for pos in (0, 3, 9):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)
    assert sinusoidal_embedding(torch.arange(4), 5).shape == (4, 5)  # odd widths work too


def test_alibi_slopes_are_blooms():
    """The paper's slopes, pinned to transformers' BLOOM implementation, for head counts
    that are powers of two and (the second rule) that are not."""
    pytest.importorskip("transformers")
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    assert alibi_slopes(8).tolist() == [2.0 ** -k for k in range(1, 9)]  # the paper's example
    for n in (1, 2, 3, 4, 5, 6, 8, 12, 16, 20, 24, 32, 40, 96):
        at_position_1 = build_alibi_tensor(torch.ones(1, 2), n, torch.float32).reshape(n, 2)[:, 1]
        torch.testing.assert_close(alibi_slopes(n), at_position_1)


def test_alibi_bias_gives_blooms_attention():
    """BLOOM adds slope x key position (not distance) and lets softmax drop the per-row
    constant; with its causal mask applied, the attention is the same as ours."""
    pytest.importorskip("transformers")
    from transformers.models.bloom.modeling_bloom import build_alibi_tensor

    n, T = 6, 9
    scores = torch.randn(n, T, T, generator=torch.Generator().manual_seed(0))
    ours = torch.softmax(scores + alibi_bias(n, torch.arange(T), T), dim=-1)
    bloom = build_alibi_tensor(torch.ones(1, T), n, torch.float32).reshape(n, 1, T)
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    theirs = torch.softmax((scores + bloom).masked_fill(~causal, float("-inf")), dim=-1)
    torch.testing.assert_close(ours, theirs)
    # A query on top of a KV cache (position T-1, keys 0..T-1) gets the full matrix's last row.
    torch.testing.assert_close(alibi_bias(n, torch.tensor([T - 1]), T), alibi_bias(n, torch.arange(T), T)[:, -1:])


def test_alibi_alone_is_the_attention_when_queries_carry_nothing():
    """With q = 0 every content score is 0, so each head attends by softmax(bias): the
    steepest of the 4 heads (slope 1/4) mostly to the last few tokens, the flattest (1/256)
    nearly evenly."""
    model = variant_model(pos_embedding="alibi")
    with torch.no_grad():
        for block in model.blocks:
            block.attn.q_proj.weight.zero_()
            block.attn.q_proj.bias.zero_()
    attn = model.blocks[1].attn
    attn.capture = True
    model(randint((1, 12)))
    expected = torch.softmax(alibi_bias(4, torch.arange(12), 12), dim=-1)  # (4, 12, 12)
    torch.testing.assert_close(attn.last_attention[0], expected)
    last = expected[:, -1]  # the last query's weights over the 12 keys, per head
    assert last[0, -4:].sum() > 0.6 and last[3].max() - last[3].min() < 0.05


@pytest.mark.parametrize("kw", PARAMS)
def test_shapes_loss_and_parameter_layout(kw):
    model = variant_model(**kw)
    cfg, layout = model.config, model.config.layout
    logits, loss = model(randint((3, 17)), randint((3, 17), seed=2))
    assert logits.shape == (3, 17, VOCAB) and torch.isfinite(loss)
    names = dict(model.named_parameters())
    assert ("pos_emb.weight" in names) == (layout.pos_embedding == "learned")
    assert ("blocks.0.mlp.gate_proj.weight" in names) == (layout.mlp == "swiglu")
    assert ("blocks.0.attn.q_proj.bias" in names) == layout.bias
    assert ("norm_f.weight" in names) == (layout.norm_position == "pre")
    assert names["blocks.0.attn.k_proj.weight"].shape == (cfg.kv_heads * cfg.head_dim, cfg.n_embd)
    assert names["blocks.0.mlp.up_proj.weight"].shape == (cfg.mlp_hidden, cfg.n_embd)
    assert (model.lm_head.weight is model.tok_emb.weight) == cfg.tie_embeddings


@pytest.mark.parametrize("kw", PARAMS)
def test_changing_a_future_token_never_changes_earlier_logits(kw):
    model = variant_model(**kw)
    idx = randint((1, BLOCK))
    with torch.no_grad():
        base = model(idx)[0]
        for k in (1, 7, BLOCK - 1):
            changed = idx.clone()
            changed[0, k] = (changed[0, k] + 1) % VOCAB
            out = model(changed)[0]
            assert torch.equal(out[:, :k], base[:, :k]), f"position < {k} saw the change"
            assert not torch.allclose(out[:, k:], base[:, k:])  # ... which is not ignored


@pytest.mark.parametrize("kw", PARAMS)
def test_gradients_reach_every_parameter(kw):
    model = variant_model(**kw).train()
    _, loss = model(randint((2, 16)), randint((2, 16), seed=2))
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, f"no gradient for {name}"


@pytest.mark.parametrize("kw", PARAMS)
def test_kv_cache_generation_equals_full_forward(kw):
    model = variant_model(**kw)
    prompt = randint((2, 5))
    with torch.no_grad():
        expected = prompt
        for _ in range(10):
            nxt = model(expected)[0][:, -1].argmax(-1, keepdim=True)
            expected = torch.cat([expected, nxt], 1)
        # Chunks through the cache reproduce the full-sequence logits.
        idx = randint((2, 20), seed=3)
        cache = KVCache(model.config, 2)
        chunks = [model(idx[:, a:b], kv_cache=cache, start_pos=a)[0]
                  for a, b in ((0, 8), (8, 9), (9, 20))]
        torch.testing.assert_close(torch.cat(chunks, 1), model(idx)[0], atol=1e-5, rtol=0)
    assert torch.equal(model.generate(prompt, 10, temperature=0), expected)


@pytest.mark.parametrize("kw", PARAMS)
def test_sdpa_and_math_attention_agree(kw):
    sdpa = variant_model(**{**kw, "attention": "sdpa"})
    math_ = variant_model(**{**kw, "attention": "math"})
    idx = randint((2, 20))
    with torch.no_grad():
        torch.testing.assert_close(math_(idx)[0], sdpa(idx)[0], atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw", [pytest.param(kw, id=name) for name, kw in VARIANTS
                                if name in ("pos-none", "post-norm-gpt2", "everything-swapped",
                                            "mqa-gpt2", "pos-sinusoidal", "pos-alibi")])
def test_variants_learn(kw):
    torch.manual_seed(0)
    model = Transformer(variant_cfg(**kw)).train()
    data = randint((4, BLOCK + 1), seed=5)
    x, y = data[:, :-1], data[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    first = None
    for _ in range(60):
        _, loss = model(x, y)
        first = loss.item() if first is None else first
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    assert loss.item() < 0.5 * first


# ----------------------------------------------------------------------------- Hugging Face parity

HF_VARIANTS = ["gpt2", "llama", "relu", "mlp-ratio", "gqa-llama", "mqa-llama", "bias-llama",
               "untied-gpt2", "untied-llama-mqa", "math-attention"]
NO_HF = {  # variant -> a field the refusal must name
    "pos-sinusoidal": "pos_embedding", "pos-rope-gpt2": "pos_embedding", "pos-none": "pos_embedding",
    "pos-learned-llama": "pos_embedding", "pos-alibi": "pos_embedding", "pos-alibi-llama-gqa": "pos_embedding",
    "rmsnorm-gpt2": "norm", "layernorm-llama": "norm",
    "post-norm-gpt2": "norm_position", "post-norm-llama": "norm_position",
    "swiglu-gpt2": "mlp", "gelu-llama": "mlp", "gqa-gpt2": "n_kv_head", "mqa-gpt2": "n_kv_head",
    "no-bias-gpt2": "bias", "everything-swapped": "pos_embedding",
}


def test_every_variant_is_classified():
    assert set(HF_VARIANTS) | set(NO_HF) == {name for name, _ in VARIANTS}


@pytest.mark.parametrize("kw", [pytest.param(kw, id=name) for name, kw in VARIANTS if name in HF_VARIANTS])
def test_hf_parity_and_load_export_round_trip(kw, tmp_path):
    pytest.importorskip("transformers")
    from transformers import AutoModelForCausalLM

    from training.model.export import export_hf, load_export

    model = variant_model(**kw)
    info = {"config": {"model": asdict(model.config)}}  # what `playground export` writes
    out = export_hf(model, tmp_path / "m", extra_files={"playground.json": json.dumps(info)})
    hf = AutoModelForCausalLM.from_pretrained(out).eval()
    back = load_export(out)
    assert back.config == model.config
    (out / "playground.json").unlink()  # a plain HF folder: the config comes from config.json
    plain = load_export(out)
    idx = randint((2, BLOCK))
    with torch.no_grad():
        ours = model(idx)[0]
        assert (ours - hf(idx).logits).abs().max().item() < 1e-4
        assert torch.equal(ours, back(idx)[0])
        assert (ours - plain(idx)[0]).abs().max().item() < 1e-5
    for loaded in (back, plain):
        assert (loaded.lm_head.weight is loaded.tok_emb.weight) == model.config.tie_embeddings
        assert not loaded.training
    prompt = idx[:, :4]
    theirs = hf.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=False,
                         max_new_tokens=10, use_cache=True)
    assert torch.equal(model.generate(prompt, 10, temperature=0), theirs)


@pytest.mark.parametrize("name", sorted(NO_HF))
def test_export_refuses_variants_without_hf_equivalent(name, tmp_path):
    from training.model.export import export_hf

    kw = dict(VARIANTS)[name]
    with pytest.raises(UserError, match=f"no Hugging Face equivalent.*{NO_HF[name]}"):
        export_hf(variant_model(**kw), tmp_path / "m")
    assert not (tmp_path / "m").exists() and list(tmp_path.iterdir()) == []


def test_layout_not_arch_picks_the_hf_class(tmp_path):
    """A gpt2-arch config with every Llama component is a Llama, and exports as one."""
    pytest.importorskip("transformers")
    from training.model.export import hf_architecture

    llama_like = variant_cfg(arch="gpt2", pos_embedding="rope", norm="rmsnorm", mlp="swiglu", bias=False)
    assert hf_architecture(llama_like) == "llama"
    gpt2_like = variant_cfg(arch="llama", pos_embedding="learned", norm="layernorm", mlp="gelu", bias=True)
    assert hf_architecture(gpt2_like) == "gpt2"
