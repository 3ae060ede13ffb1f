"""Unit tests for training/model/transformer.py: tiny fp32 models on CPU."""

import math

import pytest
import torch

from training.model.transformer import (
    KVCache,
    ModelConfig,
    Transformer,
    flops_per_token,
    param_breakdown,
    sample_next_token,
)

VOCAB, BLOCK = 128, 32



ARCHS = [
    pytest.param({"arch": "gpt2"}, id="gpt2"),
    pytest.param({"arch": "llama"}, id="llama"),
    pytest.param({"arch": "llama", "n_kv_head": 2}, id="llama-gqa"),
    pytest.param({"arch": "llama", "n_kv_head": 1}, id="llama-mqa"),
]


def tiny_cfg(**kw) -> ModelConfig:
    base = dict(vocab_size=VOCAB, block_size=BLOCK, n_layer=2, n_head=4, n_embd=32)
    base.update(kw)
    return ModelConfig(**base)


def tiny_model(seed: int = 0, **kw) -> Transformer:
    torch.manual_seed(seed)
    return Transformer(tiny_cfg(**kw)).eval()


def randint(shape, seed=1, high=VOCAB):
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- config


@pytest.mark.parametrize("kwargs, field", [
    ({"n_embd": 30, "n_head": 4}, "n_embd"),
    ({"arch": "llama", "n_head": 4, "n_kv_head": 3}, "n_kv_head"),
    ({"arch": "gpt2", "n_head": 4, "n_kv_head": 3}, "n_kv_head"),
    ({"vocab_size": 0}, "vocab_size"),
    ({"block_size": -1}, "block_size"),
    ({"n_layer": 0}, "n_layer"),
    ({"n_kv_head": 0, "arch": "llama"}, "n_kv_head"),
    ({"intermediate_size": 0}, "intermediate_size"),
    ({"dropout": 1.0}, "dropout"),
    ({"norm_eps": 0.0}, "norm_eps"),
    ({"arch": "bert"}, "arch"),
    ({"attention": "flash"}, "attention"),
    ({"arch": "llama", "n_embd": 36, "n_head": 4}, "head_dim"),  # odd head_dim: no RoPE pairs
])
def test_config_validation_names_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        ModelConfig(**kwargs)


def test_config_properties():
    assert ModelConfig(n_embd=128).mlp_hidden == 512
    assert ModelConfig(arch="llama", n_embd=128).mlp_hidden == 352  # int(1024/3)=341 -> 352
    assert ModelConfig(arch="llama", n_embd=96, intermediate_size=200).mlp_hidden == 200
    cfg = ModelConfig(arch="llama", n_embd=64, n_head=8, n_kv_head=2)
    assert (cfg.head_dim, cfg.kv_heads) == (8, 2)
    assert ModelConfig(n_head=4, n_kv_head=4).kv_heads == 4
    assert "__pydantic_config__" not in ModelConfig.__dataclass_fields__


def test_pydantic_forbids_unknown_keys_and_runs_post_init():
    pydantic = pytest.importorskip("pydantic")
    adapter = pydantic.TypeAdapter(ModelConfig)
    assert adapter.validate_python({"arch": "llama", "n_kv_head": 2}).kv_heads == 2
    with pytest.raises(pydantic.ValidationError, match="bogus"):
        adapter.validate_python({"bogus": 1})
    with pytest.raises(pydantic.ValidationError, match="n_embd"):
        adapter.validate_python({"n_embd": 30})


# ----------------------------------------------------------------------------- forward


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes_and_initial_loss(arch):
    model = tiny_model(**arch)
    idx, targets = randint((3, 20)), randint((3, 20), seed=2)
    logits, loss = model(idx)
    assert logits.shape == (3, 20, VOCAB) and loss is None
    logits, loss = model(idx, targets)
    # Small random init -> near-uniform predictions -> loss close to ln(vocab).
    assert abs(loss.item() - math.log(VOCAB)) < 0.1
    # ignore_index=-100: masked positions do not count.
    masked = targets.clone()
    masked[:, 10:] = -100
    expected = torch.nn.functional.cross_entropy(logits[:, :10].reshape(-1, VOCAB),
                                                 targets[:, :10].reshape(-1))
    torch.testing.assert_close(model(idx, masked)[1], expected)


def test_forward_rejects_too_long_sequences():
    model = tiny_model()
    model(randint((1, BLOCK)))  # exactly the context length is fine
    with pytest.raises(ValueError, match="block_size"):
        model(randint((1, BLOCK + 1)))
    with pytest.raises(ValueError, match="block_size"):
        model(randint((1, 4)), start_pos=BLOCK - 3)


@pytest.mark.parametrize("arch", ARCHS)
def test_sdpa_and_math_attention_agree(arch):
    sdpa = tiny_model(**arch, attention="sdpa")
    math_ = tiny_model(**arch, attention="math")
    math_.load_state_dict(sdpa.state_dict())
    idx = randint((2, 24))
    with torch.no_grad():
        full = sdpa(idx)[0]
        torch.testing.assert_close(math_(idx)[0], full, atol=1e-5, rtol=0)
        # Chunked forward through a KV cache (several new tokens on top of a cache needs
        # the explicit offset causal mask) must reproduce the full-sequence logits.
        for model in (sdpa, math_):
            cache = KVCache(model.config, 2)
            first = model(idx[:, :10], kv_cache=cache)[0]
            second = model(idx[:, 10:17], kv_cache=cache, start_pos=10)[0]
            third = model(idx[:, 17:], kv_cache=cache, start_pos=17)[0]
            torch.testing.assert_close(torch.cat([first, second, third], 1), full,
                                       atol=1e-5, rtol=0)


def test_dropout_only_in_training_mode():
    model = tiny_model(dropout=0.5)
    idx = randint((2, 16))
    model.train()
    assert not torch.equal(model(idx)[0], model(idx)[0])
    model.eval()
    assert torch.equal(model(idx)[0], model(idx)[0])


# ----------------------------------------------------------------------------- generation


def greedy_without_cache(model: Transformer, idx: torch.Tensor, n: int) -> torch.Tensor:
    for _ in range(n):
        logits = model(idx)[0]
        idx = torch.cat([idx, logits[:, -1].argmax(-1, keepdim=True)], dim=1)
    return idx


@pytest.mark.parametrize("arch", ARCHS)
def test_kv_cache_generation_matches_full_recompute(arch):
    model = tiny_model(**arch)
    prompt = randint((2, 5))
    with torch.no_grad():
        expected = greedy_without_cache(model, prompt, 12)
    out = model.generate(prompt, 12, temperature=0)
    assert out.shape == (2, 17)
    assert torch.equal(out, expected)


@pytest.mark.parametrize("arch", ARCHS[:2])
def test_generation_stops_at_block_size(arch):
    model = tiny_model(**arch)
    out = model.generate(randint((2, BLOCK - 3)), max_new_tokens=10, temperature=0)
    assert out.shape == (2, BLOCK)
    full = randint((1, BLOCK))
    assert torch.equal(model.generate(full, 5), full)  # no room left: prompt unchanged
    with pytest.raises(ValueError, match="block_size"):
        model.generate(randint((1, BLOCK + 1)), 1)


def test_top_k_1_equals_greedy():
    model = tiny_model(arch="llama", n_kv_head=2)
    prompt = randint((2, 4))
    greedy = model.generate(prompt, 10, temperature=0)
    gen = torch.Generator().manual_seed(0)
    assert torch.equal(model.generate(prompt, 10, temperature=0.7, top_k=1, generator=gen), greedy)


def test_seeded_sampling_is_reproducible():
    model = tiny_model()
    prompt = randint((2, 4))

    def sample(seed):
        gen = torch.Generator().manual_seed(seed)
        return model.generate(prompt, 20, temperature=1.0, top_k=50, top_p=0.95, generator=gen)

    assert torch.equal(sample(123), sample(123))
    assert not torch.equal(sample(123), sample(456))


def test_top_p_keeps_only_the_nucleus():
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    logits = probs.log().repeat(200, 1)
    gen = torch.Generator().manual_seed(0)
    picked = sample_next_token(logits, top_p=0.7, generator=gen)
    assert set(picked.tolist()) == {0, 1}  # 0.5 + 0.3 >= 0.7: tokens 2, 3 are cut
    assert set(sample_next_token(logits, top_p=0.1, generator=gen).tolist()) == {0}
    assert set(sample_next_token(logits, top_k=2, generator=gen).tolist()) == {0, 1}


def test_generation_stops_at_eos_and_pads_finished_rows():
    model = tiny_model()
    prompt = randint((1, 4))
    free = model.generate(prompt, 12, temperature=0)[0, 4:].tolist()
    eos = free[2]
    stop = free.index(eos) + 1
    out = model.generate(prompt, 12, temperature=0, eos_token_id=eos)
    assert out[0, 4:].tolist() == free[:stop]
    # Two rows: the row that finishes first is padded with eos until the other finishes.
    prompts = torch.cat([prompt, randint((1, 4), seed=9)])
    out = model.generate(prompts, 6, temperature=0, eos_token_id=eos)
    row = out[0, 4:].tolist()
    assert row[:stop] == free[:stop] and all(t == eos for t in row[stop:])


def test_generate_restores_training_mode_and_validates_args():
    model = tiny_model(dropout=0.1).train()
    model.generate(randint((1, 3)), 2)
    assert model.training
    for bad in ({"temperature": -1.0}, {"top_k": 0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(ValueError):
            model.generate(randint((1, 3)), 2, **bad)


# ----------------------------------------------------------------------------- accounting


@pytest.mark.parametrize("arch", ARCHS[:3])
def test_param_breakdown_and_tying(arch):
    tied, untied = tiny_model(**arch), tiny_model(**arch, tie_embeddings=False)
    for model in (tied, untied):
        b = param_breakdown(model)
        total = b.pop("total")
        assert sum(b.values()) == total == model.num_params()
        assert total == sum(p.numel() for p in model.parameters())  # unique tensors
    bt, bu = param_breakdown(tied), param_breakdown(untied)
    assert bt["lm_head"] == 0 and bu["lm_head"] == VOCAB * 32
    assert bu["total"] - bt["total"] == VOCAB * 32
    assert tied.lm_head.weight is tied.tok_emb.weight
    assert (bt["position_embedding"] == BLOCK * 32) == (arch["arch"] == "gpt2")
    assert tied.num_params(exclude_embeddings=True) == (
        bt["total"] - bt["token_embedding"] - bt["position_embedding"])


def test_flops_per_token_formula():
    cfg = tiny_cfg(tie_embeddings=False)
    b = param_breakdown(Transformer(cfg))
    n = b["total"] - b["position_embedding"]
    assert flops_per_token(cfg) == 6 * n + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size


def test_parameter_names_and_init():
    model = tiny_model(n_embd=64, n_layer=2)
    names = dict(model.named_parameters())
    for name in ("tok_emb.weight", "pos_emb.weight", "blocks.1.attn.q_proj.weight",
                 "blocks.1.attn.k_proj.bias", "blocks.0.attn.o_proj.weight",
                 "blocks.0.mlp.up_proj.weight", "blocks.0.norm1.weight", "norm_f.bias"):
        assert name in names
    std = model.config.init_std
    assert names["blocks.0.attn.q_proj.weight"].std().item() == pytest.approx(std, rel=0.1)
    # residual projections are scaled down by 1/sqrt(2 * n_layer)
    assert names["blocks.0.attn.o_proj.weight"].std().item() == pytest.approx(std / 2, rel=0.1)
    assert names["blocks.0.mlp.down_proj.weight"].std().item() == pytest.approx(std / 2, rel=0.1)
    assert torch.count_nonzero(names["blocks.0.attn.q_proj.bias"]) == 0
    llama = dict(tiny_model(arch="llama").named_parameters())
    assert not any(n.endswith(".bias") for n in llama)
    assert "blocks.0.mlp.gate_proj.weight" in llama and "pos_emb.weight" not in llama


# ----------------------------------------------------------------------------- training


@pytest.mark.parametrize("arch", ARCHS[:3])
def test_nano_model_overfits_one_batch(arch):
    torch.manual_seed(0)
    model = Transformer(tiny_cfg(**arch)).train()
    data = randint((4, 33), seed=5)
    x, y = data[:, :-1], data[:, 1:]
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    for _ in range(200):
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if loss.item() < 0.05:
            break
    assert loss.item() < 0.1
