"""Architecture-lab variants shared by test_variants, test_inspection and test_configurator.

Each entry is (id, ModelConfig overrides) on top of a tiny base model. Together they
cover every value of every lab field at least once, on both arches.
"""

import pytest
import torch

from training.model.transformer import ModelConfig, Transformer

VOCAB, BLOCK = 64, 24
BASE = {"vocab_size": VOCAB, "block_size": BLOCK, "n_layer": 2, "n_head": 4, "n_embd": 32}

VARIANTS = [
    ("gpt2", {"arch": "gpt2"}),
    ("llama", {"arch": "llama"}),
    ("pos-sinusoidal", {"arch": "gpt2", "pos_embedding": "sinusoidal"}),
    ("pos-rope-gpt2", {"arch": "gpt2", "pos_embedding": "rope"}),
    ("pos-none", {"arch": "gpt2", "pos_embedding": "none"}),
    ("pos-alibi", {"arch": "gpt2", "pos_embedding": "alibi"}),
    # ALiBi with 6 heads (not a power of two: the slopes' second rule) sharing 2 k/v heads.
    ("pos-alibi-llama-gqa", {"arch": "llama", "pos_embedding": "alibi", "n_embd": 24, "n_head": 6,
                             "n_kv_head": 2}),
    ("pos-learned-llama", {"arch": "llama", "pos_embedding": "learned"}),
    ("rmsnorm-gpt2", {"arch": "gpt2", "norm": "rmsnorm"}),
    ("layernorm-llama", {"arch": "llama", "norm": "layernorm"}),
    ("post-norm-gpt2", {"arch": "gpt2", "norm_position": "post"}),
    ("post-norm-llama", {"arch": "llama", "norm_position": "post"}),
    ("relu", {"arch": "gpt2", "mlp": "relu"}),
    ("swiglu-gpt2", {"arch": "gpt2", "mlp": "swiglu"}),
    ("gelu-llama", {"arch": "llama", "mlp": "gelu"}),
    ("mlp-ratio", {"arch": "gpt2", "mlp_ratio": 2.5}),
    ("gqa-gpt2", {"arch": "gpt2", "n_kv_head": 2}),
    ("mqa-gpt2", {"arch": "gpt2", "n_kv_head": 1}),
    ("gqa-llama", {"arch": "llama", "n_kv_head": 2}),
    ("mqa-llama", {"arch": "llama", "n_kv_head": 1}),
    ("bias-llama", {"arch": "llama", "bias": True}),
    ("no-bias-gpt2", {"arch": "gpt2", "bias": False}),
    ("untied-gpt2", {"arch": "gpt2", "tie_embeddings": False}),
    ("untied-llama-mqa", {"arch": "llama", "tie_embeddings": False, "n_kv_head": 1}),
    ("math-attention", {"arch": "llama", "attention": "math", "n_kv_head": 2}),
    ("everything-swapped", {"arch": "gpt2", "pos_embedding": "none", "norm": "rmsnorm",
                            "norm_position": "post", "mlp": "relu", "n_kv_head": 2,
                            "bias": False, "tie_embeddings": False, "mlp_ratio": 3}),
]
PARAMS = [pytest.param(kw, id=name) for name, kw in VARIANTS]


def variant_cfg(**kw) -> ModelConfig:
    return ModelConfig(**{**BASE, **kw})


def variant_model(seed: int = 0, **kw) -> Transformer:
    """A tiny model with weights larger than the 0.02 init, so every component matters
    (and logits are not all ~0)."""
    torch.manual_seed(seed)
    model = Transformer(variant_cfg(**kw))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def randint(shape, seed: int = 1, high: int = VOCAB) -> torch.Tensor:
    return torch.randint(0, high, shape, generator=torch.Generator().manual_seed(seed))
