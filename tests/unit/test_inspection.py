"""training/model/inspection.py checked against independent computations.

Attention is recomputed by hand (norm, projections, RoPE, softmax) for single heads;
residual norms and sublayer contributions by a manual walk through the blocks; the
logit lens against the model's own output; head labels on hand-built models.
"""

import json
import math
import string

import pytest
import torch
import torch.nn.functional as F
from variants import BLOCK, PARAMS, VOCAB, randint, variant_cfg, variant_model

from training.errors import UserError
from training.model.inspection import (
    LABELS,
    attention_for,
    head_scores,
    inspect_ids,
    inspect_prompt,
)
from training.model.transformer import Transformer, rope_cos_sin

KEYS = {"ids", "tokens", "n_layer", "n_head", "attention", "residual_norms", "contributions",
        "logit_lens", "next_token", "head_patterns", "timings_ms"}
ALPHABET = string.ascii_letters + string.digits + " ."  # 64 characters, one per token id
assert len(ALPHABET) == VOCAB


class CharTokenizer:
    """One token per character (the shape of a Hugging Face tokenizer's encode/decode)."""

    def encode(self, text: str) -> list[int]:
        return [ALPHABET.index(c) for c in text]

    def decode(self, ids: list[int]) -> str:
        return "".join(ALPHABET[i] for i in ids)


TOK = CharTokenizer()
TEXT = "The cat sat on the mat. It was"  # 30 characters > BLOCK, so tests slice it


def prompt(n: int = 20) -> str:
    return (TEXT * 2)[:n]


# ----------------------------------------------------------------------------- structure


@pytest.mark.parametrize("kw", PARAMS)
def test_report_shape_for_every_variant(kw):
    model = variant_model(**kw)
    idx = randint((1, 20))
    with torch.no_grad():
        before = model(idx)[0]
    r = inspect_prompt(model, TOK, prompt(20), top_k=3)
    assert set(r) == KEYS
    json.loads(json.dumps(r))  # plain JSON types only
    T, L, H = 20, model.config.n_layer, model.config.n_head
    assert r["ids"] == TOK.encode(prompt(20)) and r["tokens"] == list(prompt(20))
    assert (r["n_layer"], r["n_head"]) == (L, H)
    att = torch.tensor(r["attention"], dtype=torch.float64)
    assert att.shape == (L, H, T, T)
    assert torch.all(att.triu(diagonal=1) == 0)  # the future gets exactly nothing
    assert torch.allclose(att.sum(-1), torch.ones(L, H, T, dtype=torch.float64), atol=T * 5e-5 + 1e-6)
    assert att.mul(1e4).sub(att.mul(1e4).round()).abs().max() < 1e-6  # 4 decimals
    assert len(r["residual_norms"]) == L + 1 and all(len(row) == T for row in r["residual_norms"])
    assert len(r["contributions"]) == L
    assert all(set(c) == {"attn", "mlp"} and len(c["attn"]) == len(c["mlp"]) == T for c in r["contributions"])
    assert len(r["logit_lens"]) == L + 1
    for layer in r["logit_lens"]:
        assert len(layer) == T
        for top in layer:
            assert [set(e) for e in top] == [{"id", "token", "prob"}] * 3
            assert [e["prob"] for e in top] == sorted((e["prob"] for e in top), reverse=True)
            assert all(e["token"] == ALPHABET[e["id"]] for e in top)
    assert len(r["next_token"]) == T and all(set(n) == {"top", "entropy"} for n in r["next_token"])
    assert [(p["layer"], p["head"]) for p in r["head_patterns"]] == [(layer, h) for layer in range(L) for h in range(H)]
    assert all(p["label"] in LABELS and set(p["scores"]) == set(LABELS) for p in r["head_patterns"])
    assert set(r["timings_ms"]) == {"forward", "total"} and r["timings_ms"]["total"] >= r["timings_ms"]["forward"] > 0
    # Inspection leaves the model as it was: same logits, capture off.
    with torch.no_grad():
        assert torch.equal(model(idx)[0], before)
    assert not any(b.attn.capture or b.attn.last_attention is not None for b in model.blocks)


def test_training_mode_is_restored():
    model = variant_model(arch="gpt2", dropout=0.3).train()
    a = inspect_prompt(model, TOK, prompt(10))
    b = inspect_prompt(model, TOK, prompt(10))
    assert model.training
    assert a["attention"] == b["attention"]  # no dropout during inspection


# ----------------------------------------------------------------------------- attention


def rms_norm(x, weight, eps):
    return weight * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + eps)


def rotate(x, positions, theta):
    """RoPE in the HF layout, written out: dimension i pairs with i + hd/2."""
    hd = x.size(-1)
    freqs = torch.tensor([theta ** (-2 * i / hd) for i in range(hd // 2)])
    angle = positions[:, None].float() * freqs[None]  # (T, hd/2)
    x1, x2 = x[..., : hd // 2], x[..., hd // 2:]
    return torch.cat([x1 * angle.cos() - x2 * angle.sin(), x2 * angle.cos() + x1 * angle.sin()], -1)


def attention_by_hand(model: Transformer, ids: torch.Tensor, layer: int, head: int) -> torch.Tensor:
    """softmax(q k^T / sqrt(d)) for one head, from the weights, without the model's attention code."""
    cfg = model.config
    T = ids.numel()
    pos = torch.arange(T)
    x = model.tok_emb.weight[ids]
    if model.pos_emb is not None:
        x = x + model.pos_emb.weight[:T]
    rope = rope_cos_sin(pos, cfg.head_dim, cfg.rope_theta) if model.pos_emb is None else None
    with torch.no_grad():
        for block in model.blocks[:layer]:  # earlier layers: the stream entering `layer`
            x = block(x[None], rope)[0]
    blk = model.blocks[layer]
    if cfg.layout.norm == "rmsnorm":
        h = rms_norm(x, blk.norm1.weight, cfg.norm_eps)
    else:
        h = F.layer_norm(x, (cfg.n_embd,), blk.norm1.weight, blk.norm1.bias, cfg.norm_eps)
    hd = cfg.head_dim
    kv_head = head // (cfg.n_head // cfg.kv_heads)  # GQA: the shared key head
    Wq = blk.attn.q_proj.weight[head * hd:(head + 1) * hd]
    Wk = blk.attn.k_proj.weight[kv_head * hd:(kv_head + 1) * hd]
    q, k = h @ Wq.T, h @ Wk.T
    if blk.attn.q_proj.bias is not None:
        q = q + blk.attn.q_proj.bias[head * hd:(head + 1) * hd]
        k = k + blk.attn.k_proj.bias[kv_head * hd:(kv_head + 1) * hd]
    if cfg.layout.pos_embedding == "rope":
        q, k = rotate(q, pos, cfg.rope_theta), rotate(k, pos, cfg.rope_theta)
    scores = (q @ k.T) / math.sqrt(hd)
    scores = scores.masked_fill(torch.ones(T, T, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1).detach()


@pytest.mark.parametrize("kw, layer, head", [
    ({"arch": "gpt2"}, 0, 1),
    ({"arch": "gpt2"}, 1, 3),
    ({"arch": "llama", "n_kv_head": 2}, 0, 3),
    ({"arch": "llama", "n_kv_head": 1}, 1, 2),
])
def test_attention_equals_softmax_qk_by_hand(kw, layer, head):
    model = variant_model(**kw)
    ids = randint((20,), seed=4)
    r = inspect_ids(model, ids.tolist(), lambda ids: [ALPHABET[i] for i in ids])
    expected = attention_by_hand(model, ids, layer, head)
    got = torch.tensor(attention_for(r, layer, head))
    assert (got - expected).abs().max() <= 5e-5 + 1e-6  # rounded to 4 decimals


# ----------------------------------------------------------------------------- residual stream


@pytest.mark.parametrize("kw", [{"arch": "gpt2"}, {"arch": "llama", "n_kv_head": 2},
                                {"arch": "gpt2", "norm_position": "post"}])
def test_residual_norms_and_contributions_match_a_manual_forward(kw):
    model = variant_model(**kw)
    ids = randint((1, 18), seed=6)
    r = inspect_ids(model, ids[0].tolist(), lambda ids: [ALPHABET[i] for i in ids])
    cfg = model.config
    with torch.no_grad():
        T = ids.size(1)
        x = model.tok_emb(ids)
        rope = None
        if cfg.layout.pos_embedding == "learned":
            x = x + model.pos_emb.weight[:T]
        else:
            rope = rope_cos_sin(torch.arange(T), cfg.head_dim, cfg.rope_theta)
        norms, attn_norms, mlp_norms = [x[0].norm(dim=-1)], [], []
        for b in model.blocks:
            if cfg.norm_position == "pre":
                a = b.attn(b.norm1(x), rope)
                x = x + a
                m = b.mlp(b.norm2(x))
                x = x + m
            else:
                a = b.attn(x, rope)
                x = b.norm1(x + a)
                m = b.mlp(x)
                x = b.norm2(x + m)
            norms.append(x[0].norm(dim=-1))
            attn_norms.append(a[0].norm(dim=-1))
            mlp_norms.append(m[0].norm(dim=-1))
        logits = model.lm_head(model.norm_f(x))[0]
    torch.testing.assert_close(torch.tensor(r["residual_norms"], dtype=torch.float64), torch.stack(norms).double(), atol=2e-6, rtol=1e-6)
    torch.testing.assert_close(torch.tensor([c["attn"] for c in r["contributions"]], dtype=torch.float64),
                               torch.stack(attn_norms).double(), atol=2e-6, rtol=1e-6)
    torch.testing.assert_close(torch.tensor([c["mlp"] for c in r["contributions"]], dtype=torch.float64),
                               torch.stack(mlp_norms).double(), atol=2e-6, rtol=1e-6)
    torch.testing.assert_close(logits, model(ids)[0][0].detach(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("kw", [{"arch": "gpt2"}, {"arch": "llama", "tie_embeddings": False}])
def test_logit_lens_last_layer_is_the_model_output(kw):
    model = variant_model(**kw)
    ids = randint((1, 16), seed=7)
    r = inspect_ids(model, ids[0].tolist(), lambda ids: [ALPHABET[i] for i in ids], top_k=4)
    with torch.no_grad():
        probs = model(ids)[0][0].softmax(-1)  # (T, V)
    top_p, top_i = probs.topk(4, dim=-1)
    for t in range(16):
        assert [e["id"] for e in r["logit_lens"][-1][t]] == top_i[t].tolist()
        assert [e["prob"] for e in r["logit_lens"][-1][t]] == pytest.approx(top_p[t].tolist(), abs=1e-6)
        assert r["next_token"][t]["top"] == r["logit_lens"][-1][t]
        entropy = -(probs[t] * probs[t].log()).sum().item()
        assert r["next_token"][t]["entropy"] == pytest.approx(entropy, abs=1e-5)
    # An intermediate layer: final norm + head applied to the stream after block 0.
    with torch.no_grad():
        x = model.tok_emb(ids) + (model.pos_emb.weight[:16] if model.pos_emb is not None else 0)
        rope = None
        if model.pos_emb is None:
            rope = rope_cos_sin(torch.arange(16), model.config.head_dim, model.config.rope_theta)
        x = model.blocks[0](x, rope)
        lens1 = model.lm_head(model.norm_f(x))[0].softmax(-1).topk(4, dim=-1)
    assert [[e["id"] for e in top] for top in r["logit_lens"][1]] == lens1.indices.tolist()


# ----------------------------------------------------------------------------- head labels


def hand_built(prev_head: bool = True) -> Transformer:
    """One layer, two heads, all weights zero except: position p is the one-hot vector
    e_p; head 0's query at position i is e_{i-1} and its key at j is e_j (so it looks at
    the previous token); head 1's query is always e_0 (so it looks at the first token)."""
    cfg = variant_cfg(arch="gpt2", norm="rmsnorm", bias=False, n_layer=1, n_head=2, n_embd=64)
    model = Transformer(cfg).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        for norm in (model.blocks[0].norm1, model.blocks[0].norm2, model.norm_f):
            norm.weight.fill_(1.0)
        model.pos_emb.weight[:, :BLOCK] = torch.eye(BLOCK)
        attn, hd = model.blocks[0].attn, cfg.head_dim  # hd = 32 >= BLOCK positions
        for i in range(BLOCK):
            attn.k_proj.weight[i, i] = 1.0  # head 0 key: e_j
            attn.k_proj.weight[hd + i, i] = 1.0  # head 1 key: e_j
            attn.q_proj.weight[hd + 0, i] = 1.0  # head 1 query: e_0 wherever we are
            if prev_head and i >= 1:
                attn.q_proj.weight[i - 1, i] = 1.0  # head 0 query: e_{i-1}
    return model


def test_hand_built_heads_are_labelled():
    r = inspect_ids(hand_built(), list(range(20)), lambda ids: [ALPHABET[i] for i in ids])
    head0, head1 = r["head_patterns"]
    assert head0["label"] == "previous_token" and head0["scores"]["previous_token"] > 0.95
    assert head1["label"] == "first_token" and head1["scores"]["first_token"] > 0.95
    assert attention_for(r, 0, 0)[10][9] > 0.95 and attention_for(r, 0, 1)[10][0] > 0.95
    # Without its query weights head 0 attends uniformly: diffuse, normalised entropy 1.
    r = inspect_ids(hand_built(prev_head=False), list(range(20)), lambda ids: [ALPHABET[i] for i in ids])
    assert r["head_patterns"][0]["label"] == "diffuse"
    assert r["head_patterns"][0]["scores"]["diffuse"] == pytest.approx(1.0, abs=1e-4)


def test_head_scores_on_known_matrices():
    T = 8
    prev = torch.zeros(T, T)
    prev[0, 0] = 1
    prev[torch.arange(1, T), torch.arange(T - 1)] = 1
    s = head_scores(prev)
    assert s["previous_token"] == 1 and s["local"] == 1 and s["first_token"] == 0
    local = torch.zeros(T, T)
    for i in range(T):
        local[i, max(0, i - 2):i + 1] = 1 / min(3, i + 1)
    s = head_scores(local)
    assert s["local"] == pytest.approx(1.0) and s["previous_token"] == pytest.approx(1 / 3)
    one = head_scores(torch.ones(1, 1))
    assert one["first_token"] == 1 and one["previous_token"] == 0


def test_one_token_prompt():
    r = inspect_prompt(variant_model(), TOK, "a")
    assert r["attention"] == [[[[1.0]]] * 4] * 2
    assert {p["label"] for p in r["head_patterns"]} == {"first_token"}


# ----------------------------------------------------------------------------- errors


def test_prompt_length_errors():
    model = variant_model()
    with pytest.raises(UserError, match=r"^prompt: 0 tokens .*the model's context is 24$"):
        inspect_prompt(model, TOK, "")
    with pytest.raises(UserError, match=r"^prompt: 25 tokens, the model's context is 24$"):
        inspect_prompt(model, TOK, "x" * 25)
    inspect_prompt(model, TOK, "x" * 24)  # exactly the context is fine
    with pytest.raises(UserError, match="top_k"):
        inspect_prompt(model, TOK, "abc", top_k=0)


def test_attention_for_errors_name_the_argument():
    r = inspect_prompt(variant_model(), TOK, "abc")
    assert attention_for(r, 1, 3) == r["attention"][1][3]
    for layer, head, name in ((2, 0, "layer"), (-1, 0, "layer"), (0, 4, "head"), (0, -1, "head"),
                              ("0", 0, "layer"), (0, 1.0, "head")):
        with pytest.raises(UserError, match=f"^{name} must be"):
            attention_for(r, layer, head)


def test_inspects_a_loaded_export(tmp_path):
    pytest.importorskip("transformers")
    from training.model.export import export_hf, load_export

    model = variant_model(arch="llama", n_kv_head=2)
    out = export_hf(model, tmp_path / "m")
    a = inspect_prompt(model, TOK, prompt(16))
    b = inspect_prompt(load_export(out), TOK, prompt(16))
    assert a["attention"] == b["attention"]
    assert [[e["id"] for e in t] for t in a["logit_lens"][-1]] == [[e["id"] for e in t] for t in b["logit_lens"][-1]]
