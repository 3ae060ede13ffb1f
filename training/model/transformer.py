"""A decoder-only transformer language model in one file (nanoGPT style).

Two classic layouts share the same skeleton and are selected by `ModelConfig.arch`:

* "gpt2"  - learned absolute position embeddings, LayerNorm, GELU MLP, biases everywhere.
* "llama" - rotary position embeddings (RoPE), RMSNorm, SwiGLU MLP, no biases and
            grouped-query attention (several query heads share one key/value head).

The skeleton is the same for both: token ids -> embeddings -> N pre-norm blocks of
(attention, MLP), each added back onto a "residual stream" -> final norm -> a linear
layer (the "lm_head") that scores every vocabulary entry as the next token.

The "architecture lab" fields of `ModelConfig` (pos_embedding, norm, norm_position,
mlp, mlp_ratio, bias, n_kv_head) swap single components so their effect can be
measured one at a time. They default to None, meaning "what `arch` uses", so a config
that does not mention them builds exactly the classic layout; `ModelConfig.layout`
holds the resolved choices.

Parameter names follow Hugging Face closely enough that `training/model/export.py` converts
a trained model to `GPT2LMHeadModel` / `LlamaForCausalLM` with a plain renaming.

Reading order: the config (`ModelConfig`, in model_config.py), the position encodings (sinusoidal,
RoPE, ALiBi, in positions.py), then this file: the leaf modules (norm, attention, MLPs), the
block, the model, and parameter/FLOP accounting. Text generation (the KV cache and sampling) is
in `training/model/generation.py`; the decoding strategies (beam search, every logits
processor) in `training/decoding/`.
"""

import math
from typing import Optional

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

# Generation (the KV cache, sampling, the decoding loop) has its own file. A relative import:
# generation.py is plain PyTorch too. KVCache and sample_next_token are re-exported here.
from . import generation as _generation
from .generation import KVCache, sample_next_token  # noqa: F401
from .model_config import ARCH_DEFAULTS, MLPS, NORM_POSITIONS, NORMS, POS_EMBEDDINGS, Layout, ModelConfig  # noqa: F401
from .positions import alibi_bias, alibi_slopes, apply_rope, rope_cos_sin, rotate_half, sinusoidal_embedding  # noqa: F401

# --------------------------------------------------------------------------- leaf modules


class RMSNorm(nn.Module):
    """LayerNorm without the mean subtraction and bias: rescale each vector to unit RMS.

    Cheaper than LayerNorm and works as well in practice. Computed in float32 (like HF
    Llama) because squaring bf16 activations loses too much precision.
    """

    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * x.to(dtype)


def make_norm(cfg: ModelConfig) -> nn.Module:
    layout = cfg.layout
    if layout.norm == "layernorm":
        return nn.LayerNorm(cfg.n_embd, eps=cfg.norm_eps, bias=layout.bias)
    return RMSNorm(cfg.n_embd, cfg.norm_eps)



class CausalSelfAttention(nn.Module):
    """Multi-head causal self-attention with optional grouped-query attention (GQA).

    Every token emits a query ("what am I looking for"), a key ("what do I contain") and
    a value ("what do I pass on"). Attention weights are softmax(q.k / sqrt(head_dim))
    over the *earlier* tokens only (causal), and the output is the weighted sum of their
    values. With GQA there are fewer key/value heads than query heads: each group of
    n_head / n_kv_head query heads shares one k/v head, shrinking the KV cache. One k/v
    head for all query heads is multi-query attention (MQA).

    Setting `capture = True` (what `training.model.inspection` does) runs the explicit math
    path even under attention="sdpa" and keeps the attention probabilities of the last
    call in `last_attention` (B, n_head, T, Tk). The fused kernel never materialises
    them; with capture off nothing changes.
    """

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.layer_idx = layer_idx
        self.n_head, self.n_kv_head, self.head_dim = cfg.n_head, cfg.kv_heads, cfg.head_dim
        self.n_rep = self.n_head // self.n_kv_head  # query heads per k/v head
        self.use_sdpa = cfg.attention == "sdpa"
        self.dropout = cfg.dropout
        self.capture = False
        self.last_attention: torch.Tensor | None = None
        bias = cfg.layout.bias
        self.q_proj = nn.Linear(cfg.n_embd, self.n_head * self.head_dim, bias=bias)
        self.k_proj = nn.Linear(cfg.n_embd, self.n_kv_head * self.head_dim, bias=bias)
        self.v_proj = nn.Linear(cfg.n_embd, self.n_kv_head * self.head_dim, bias=bias)
        self.o_proj = nn.Linear(self.n_head * self.head_dim, cfg.n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(cfg.dropout)

    def forward(self, x, rope=None, kv_cache=None, start_pos: int = 0, alibi=None):
        B, T, C = x.shape  # (B, T, C)
        # Split the channels into heads and move heads next to batch: each head attends
        # independently. (B, T, C) -> (B, n_head, T, head_dim)
        q = self.q_proj(x).view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = self.k_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = self.v_proj(x).view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if rope is not None:  # RoPE: position enters by rotating q and k
            cos, sin = rope
            q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if kv_cache is not None:
            # Generation: keys/values of earlier tokens never change, so we store them
            # and only compute them for the new token(s). k, v: (B, n_kv, start_pos+T, hd)
            k, v = kv_cache.update(self.layer_idx, start_pos, k, v)
        if self.n_rep > 1:  # GQA: query head h reads k/v head h // n_rep
            k = k.repeat_interleave(self.n_rep, dim=1)  # (B, n_head, Tk, hd)
            v = v.repeat_interleave(self.n_rep, dim=1)

        # Causal mask. Query i sits at absolute position start_pos + i and may look at
        # keys 0 .. start_pos + i. Without a cache (Tk == T) that is the usual triangle.
        Tk = k.size(2)
        is_causal = Tk == T
        mask = None
        if alibi is not None:
            # ALiBi: a float bias (n_head, T, Tk) added to the scores. Its -inf entries on
            # future keys make it the causal mask as well.
            mask, is_causal = alibi.to(q.dtype), False
        elif not is_causal and T > 1:  # several new tokens on top of a cache
            mask = torch.ones(T, Tk, dtype=torch.bool, device=x.device).tril(diagonal=Tk - T)
        dropout_p = self.dropout if self.training else 0.0

        if self.use_sdpa and not self.capture:
            # Fused kernel (flash / memory-efficient attention where available).
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p,
                                               is_causal=is_causal and T > 1)
        else:
            # The same computation spelled out. Dividing by sqrt(head_dim) keeps the dot
            # products at unit variance so the softmax does not saturate at init.
            att = (q @ k.transpose(-2, -1)) / math.sqrt(self.head_dim)  # (B, nh, T, Tk)
            if is_causal:
                mask = torch.ones(T, Tk, dtype=torch.bool, device=x.device).tril()
            if mask is not None and mask.is_floating_point():
                att = att + mask  # ALiBi's distance penalty, -inf on the future
            elif mask is not None:
                att = att.masked_fill(~mask, float("-inf"))  # no peeking at the future
            att = F.softmax(att.float(), dim=-1).to(q.dtype)
            if self.capture:
                self.last_attention = att.detach()
            att = F.dropout(att, p=dropout_p, training=self.training)
            y = att @ v  # (B, nh, T, hd)

        y = y.transpose(1, 2).contiguous().view(B, T, self.n_head * self.head_dim)  # (B, T, C)
        return self.resid_dropout(self.o_proj(y))


class MLP(nn.Module):
    """GPT-2 feed-forward: widen 4x, GELU, project back. Applied to each token separately.

    mlp="relu" swaps the nonlinearity for the original Transformer's ReLU (which
    zeroes every negative input, so those hidden units pass no gradient).
    """

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        bias = cfg.layout.bias
        self.activation = cfg.layout.mlp  # "gelu" or "relu"
        self.up_proj = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=bias)
        self.down_proj = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):  # (B, T, C)
        h = self.up_proj(x)  # (B, T, hidden)
        if self.activation == "relu":
            h = F.relu(h)
        else:
            # tanh-approximate GELU is what GPT-2 was trained with (HF calls it "gelu_new").
            h = F.gelu(h, approximate="tanh")
        return self.dropout(self.down_proj(h))  # (B, T, C)


class SwiGLU(nn.Module):
    """Llama feed-forward: a gated MLP. silu(gate(x)) decides, per hidden unit, how much
    of up(x) to let through; multiplicative gating trains better than a plain GELU MLP."""

    def __init__(self, cfg: ModelConfig):
        super().__init__()
        bias = cfg.layout.bias
        self.gate_proj = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=bias)
        self.up_proj = nn.Linear(cfg.n_embd, cfg.mlp_hidden, bias=bias)
        self.down_proj = nn.Linear(cfg.mlp_hidden, cfg.n_embd, bias=bias)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x):  # (B, T, C)
        h = F.silu(self.gate_proj(x)) * self.up_proj(x)  # (B, T, hidden)
        return self.dropout(self.down_proj(h))  # (B, T, C)


# --------------------------------------------------------------------------- the model


class Block(nn.Module):
    """One transformer layer, pre-norm: x + attn(norm(x)), then x + mlp(norm(x)).

    Normalising the *input* of each sublayer (instead of the sum, as in the original
    Transformer) leaves the residual stream an untouched highway from the embeddings to
    the output, which keeps gradients healthy in deep stacks. Attention is where tokens
    exchange information; the MLP then processes each token on its own.

    norm_position="post" builds the original Transformer's layer instead:
    norm(x + attn(x)), then norm(x + mlp(x)). Every sum passes through a norm, so there
    is no untouched path from the output back to the embeddings, and deep post-norm
    stacks only train with a careful learning-rate warmup (Xiong et al. 2020, "On Layer
    Normalization in the Transformer Architecture").
    """

    def __init__(self, cfg: ModelConfig, layer_idx: int):
        super().__init__()
        self.post_norm = cfg.norm_position == "post"
        self.norm1 = make_norm(cfg)
        self.attn = CausalSelfAttention(cfg, layer_idx)
        self.norm2 = make_norm(cfg)
        self.mlp = SwiGLU(cfg) if cfg.layout.mlp == "swiglu" else MLP(cfg)

    def forward(self, x, rope=None, kv_cache=None, start_pos: int = 0, alibi=None):  # (B, T, C)
        if self.post_norm:
            x = self.norm1(x + self.attn(x, rope, kv_cache, start_pos, alibi))
            return self.norm2(x + self.mlp(x))
        x = x + self.attn(self.norm1(x), rope, kv_cache, start_pos, alibi)
        x = x + self.mlp(self.norm2(x))
        return x


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.config = cfg
        layout = cfg.layout
        self.tok_emb = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        # gpt2 learns one vector per position; llama instead rotates q/k inside attention;
        # ALiBi biases the attention scores; sinusoidal positions are a fixed function and
        # "none" adds nothing at all.
        self.pos_emb = (nn.Embedding(cfg.block_size, cfg.n_embd)
                        if layout.pos_embedding == "learned" else None)
        self.drop = nn.Dropout(cfg.dropout)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layer))
        # A post-norm block already ends with a norm; a final one would only repeat it.
        self.norm_f = make_norm(cfg) if layout.norm_position == "pre" else nn.Identity()
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            # Weight tying: the matrix mapping a token to a vector is reused to score
            # vectors against every token. Saves vocab_size * n_embd parameters.
            self.lm_head.weight = self.tok_emb.weight
        # Training-only switch (not part of ModelConfig: it changes memory and speed,
        # never the function the model computes). See `set_grad_checkpointing`.
        self.grad_checkpointing = False
        self.apply(self._init_weights)
        # GPT-2 paper: each block adds two outputs onto the residual stream, so its
        # variance grows with depth; scale those projections by 1/sqrt(2 * n_layer).
        for name, p in self.named_parameters():
            if name.endswith(("o_proj.weight", "down_proj.weight")):
                nn.init.normal_(p, mean=0.0, std=cfg.init_std / math.sqrt(2 * cfg.n_layer))

    def set_grad_checkpointing(self, enabled: bool = True) -> None:
        """Gradient (activation) checkpointing: trade compute for memory in training.

        Backward needs the intermediate activations of every block (attention scores,
        MLP hidden states, ...), and keeping them all is usually what fills a GPU. With
        checkpointing on, each block keeps only its input; backward re-runs the block's
        forward to rebuild the rest, one block at a time. Memory for activations drops
        from ~n_layer blocks' worth to ~n_layer block inputs plus one block, for about one
        extra forward pass (~30% more compute). Results are the same: dropout masks are
        replayed because the RNG state is saved and restored around the recomputation.
        Only active in training mode with gradients enabled; evaluation and generation
        are unaffected.
        """
        self.grad_checkpointing = enabled

    def _init_weights(self, module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=self.config.init_std)
        if isinstance(module, nn.Linear) and module.bias is not None:
            nn.init.zeros_(module.bias)

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                kv_cache: Optional["KVCache"] = None, start_pos: int = 0):
        """idx: (B, T) token ids at positions start_pos .. start_pos+T-1.

        Returns (logits (B, T, vocab_size), loss or None). With targets (B, T), loss is
        the mean next-token cross-entropy; positions with target -100 are ignored.
        """
        cfg = self.config
        B, T = idx.shape
        if start_pos + T > cfg.block_size:
            raise ValueError(f"sequence of {start_pos + T} tokens (start_pos {start_pos} + "
                             f"{T}) exceeds block_size {cfg.block_size}")
        pos = torch.arange(start_pos, start_pos + T, device=idx.device)  # (T,)
        x = self.tok_emb(idx)  # (B, T, C)
        rope = alibi = None
        kind = cfg.layout.pos_embedding
        if kind == "learned":
            x = x + self.pos_emb(pos)  # (T, C) broadcasts over the batch
        elif kind == "sinusoidal":
            # Scaled so each coordinate has the RMS of a freshly initialised learned
            # embedding (init_std): swapping learned <-> sinusoidal then changes what the
            # position vectors are, not how loud they are next to the token embeddings.
            scale = cfg.init_std * math.sqrt(2.0)  # sin and cos have RMS 1/sqrt(2)
            x = x + (scale * sinusoidal_embedding(pos, cfg.n_embd)).to(x.dtype)
        elif kind == "rope":
            rope = rope_cos_sin(pos, cfg.head_dim, cfg.rope_theta)  # 2 x (T, hd)
        elif kind == "alibi":
            alibi = alibi_bias(cfg.n_head, pos, start_pos + T)  # (n_head, T, start_pos + T)
        # kind == "none": no position signal. The causal mask still lets the model work
        # out order (token i sees exactly i+1 tokens); Haviv et al. 2022, "NoPE".
        x = self.drop(x)
        checkpointing = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.blocks:
            if checkpointing and kv_cache is None:
                # use_reentrant=False: the recommended implementation (works with DDP,
                # keyword arguments and inputs that do not require grad).
                x = torch.utils.checkpoint.checkpoint(block, x, rope, None, start_pos, alibi,
                                                      use_reentrant=False)
            else:
                x = block(x, rope, kv_cache, start_pos, alibi)  # (B, T, C)
        x = self.norm_f(x)
        logits = self.lm_head(x)  # (B, T, V)
        loss = None
        if targets is not None:
            # float32 for the softmax over a large vocabulary, even under bf16 autocast.
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)),
                                   targets.reshape(-1), ignore_index=-100)
        return logits, loss

    def num_params(self, exclude_embeddings: bool = False) -> int:
        """Unique parameters (tied weights once). exclude_embeddings drops the token and
        position tables (Kaplan et al.'s "non-embedding" count; with tied embeddings
        this drops the lm_head too, as it is the same matrix)."""
        b = param_breakdown(self)
        if exclude_embeddings:
            return b["total"] - b["token_embedding"] - b["position_embedding"]
        return b["total"]

    def generate(self, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                 top_k: int | None = None, top_p: float | None = None,
                 eos_token_id: int | None = None,
                 generator: torch.Generator | None = None) -> torch.Tensor:
        """Continue each row of idx (B, T) by up to max_new_tokens tokens; returns (B, T + n).

        temperature 0 is greedy decoding; eos_token_id stops a row early. The loop (prefill
        the KV cache once, then one token per step) lives in `training/model/generation.py`.
        """
        return _generation.generate(self, idx, max_new_tokens, temperature=temperature, top_k=top_k,
                                    top_p=top_p, eos_token_id=eos_token_id, generator=generator)


# --------------------------------------------------------------------------- accounting


def param_breakdown(model: nn.Module) -> dict[str, int]:
    """Parameter counts by component. Tied weights are counted once (under
    token_embedding), so lm_head is 0 when tied. Components sum to "total"."""
    counts = dict.fromkeys(("token_embedding", "position_embedding", "attention", "mlp",
                            "norms", "lm_head"), 0)
    by_module = {"tok_emb": "token_embedding", "pos_emb": "position_embedding", "attn": "attention",
                 "mlp": "mlp", "lm_head": "lm_head", "norm1": "norms", "norm2": "norms", "norm_f": "norms"}
    # named_parameters() yields each tensor once, under its first name (tok_emb).
    for name, p in model.named_parameters():
        key = next((by_module[part] for part in name.split(".") if part in by_module), None)
        if key is None:
            raise ValueError(f"param_breakdown: unexpected parameter {name!r}")
        counts[key] += p.numel()
    counts["total"] = sum(counts.values())
    return counts


def flops_per_token(cfg: ModelConfig, seq_len: int | None = None) -> float:
    """Training FLOPs per token, for model FLOPs utilisation (MFU).

        flops = 6 * N + 12 * n_layer * n_embd * seq_len      (seq_len defaults to block_size)

    N is the parameter count without position embeddings (a table lookup does no
    multiplications). Each weight does one multiply-add (2 FLOPs) per token in the
    forward pass and the backward pass costs twice the forward, hence 6 * N. The second
    term is attention itself (q.k scores and the weighted sum of values), which has no
    weights: per layer and token, 2 matmuls x 2 FLOPs x n_embd x block_size forward,
    times 3 for forward + backward. (PaLM paper appendix B; nanoGPT's estimate_mfu.)
    The attention term counts every query against all seq_len keys, as PaLM does: the
    causal mask skips half of them in principle, but the FLOPs are usually spent anyway.
    """
    seq_len = cfg.block_size if seq_len is None else seq_len
    with torch.device("meta"):  # count parameters without allocating them
        model = Transformer(cfg)
    b = param_breakdown(model)
    n = b["total"] - b["position_embedding"]
    return float(6 * n + 12 * cfg.n_layer * cfg.n_embd * seq_len)
