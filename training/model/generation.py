"""Text generation for `training/model/transformer.py`: the KV cache and simple sampling.

A language model scores the *next* token only. To write a continuation we call it in a
loop: score, pick a token, append it, score again. Two ideas make that loop cheap and
useful:

* the KV cache: keys and values of earlier tokens never change, so each step computes
  them only for the newest token and reads the rest from a buffer;
* a sampling rule that turns the scores into one token (the argmax, or a draw from the
  distribution cut down by temperature, top-k and top-p).

`Transformer.generate` delegates to `generate` here. The decoding lessons in
`training/decoding/` (every logits processor, beam search, per-step traces) build on the
same `KVCache`.
"""

from __future__ import annotations

import torch

# No import of transformer.py here, not even for type hints: it imports this module. `model` below
# is a training.model.transformer.Transformer, `cfg` its ModelConfig.


class KVCache:
    """Keys and values of past tokens, one preallocated buffer per layer.

    Without it, generating token t recomputes attention inputs for all t-1 earlier tokens
    (quadratic work overall); with it each step computes k/v only for the newest token.
    Each buffer has shape (B, n_kv_head, block_size, head_dim) - GQA makes this smaller.
    """

    def __init__(self, cfg, batch_size: int, device=None, dtype=torch.float32):
        shape = (batch_size, cfg.kv_heads, cfg.block_size, cfg.head_dim)
        self.k = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.v = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layer)]
        self.length = 0  # positions written so far (the furthest any layer has reached)

    def update(self, layer: int, start_pos: int, k: torch.Tensor, v: torch.Tensor):
        """Write k, v (B, n_kv, T, hd) at positions start_pos.. and return everything
        cached so far for this layer: (B, n_kv, start_pos + T, hd)."""
        end = start_pos + k.size(2)
        self.k[layer][:, :, start_pos:end] = k
        self.v[layer][:, :, start_pos:end] = v
        self.length = max(self.length, end)
        return self.k[layer][:, :, :end], self.v[layer][:, :, :end]

    def reorder(self, rows: torch.Tensor) -> None:
        """Keep the cached rows `rows` (a 1-D index tensor), in that order.

        Beam search needs this: after each step the surviving beams may descend from any
        earlier beam, some twice, so row i of the new cache is a copy of row rows[i] of the
        old one. Indexing one row several times also grows a batch-1 cache to several, and
        leaving rows out shrinks it. Only the positions written so far are copied: the rest
        of the new buffers is never read before it is written.
        """

        def pick(buffer: torch.Tensor) -> torch.Tensor:
            new = buffer.new_empty((rows.numel(), *buffer.shape[1:]))
            new[:, :, :self.length] = buffer[:, :, :self.length].index_select(0, rows)
            return new

        self.k = [pick(k) for k in self.k]
        self.v = [pick(v) for v in self.v]


def sample_next_token(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                      top_p: float | None = None,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token id per row from logits (B, V). Returns (B,).

    temperature scales how peaked the distribution is (0 = always the argmax); top-k keeps
    the k most likely tokens; top-p ("nucleus") keeps the smallest set of most likely
    tokens whose probabilities add up to at least p. Both cut off the long tail of
    unlikely tokens that makes pure sampling ramble. (`training/decoding/processors.py`
    has each of these, and more, as a separate function pinned to Hugging Face's.)
    """
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k, dim=-1).values[:, -1:]  # (B, 1) k-th largest
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, sorted_idx = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        mass_before = probs.cumsum(dim=-1) - probs  # probability of strictly better tokens
        sorted_logits = sorted_logits.masked_fill(mass_before >= top_p, float("-inf"))
        logits = torch.empty_like(logits).scatter_(-1, sorted_idx, sorted_logits)
    probs = logits.softmax(dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def _check_generate_args(model: torch.nn.Module, idx: torch.Tensor, temperature: float,
                         top_k: int | None, top_p: float | None) -> None:
    if idx.dim() != 2 or idx.size(1) == 0:
        raise ValueError(f"idx must have shape (batch, tokens) with tokens >= 1, got {tuple(idx.shape)}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")
    if top_k is not None and top_k < 1:
        raise ValueError(f"top_k must be >= 1, got {top_k}")
    if top_p is not None and not 0.0 < top_p <= 1.0:
        raise ValueError(f"top_p must be in (0, 1], got {top_p}")
    if idx.size(1) > model.config.block_size:
        raise ValueError(f"prompt of {idx.size(1)} tokens exceeds block_size {model.config.block_size}")


@torch.no_grad()
def generate(model: torch.nn.Module, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None,
             eos_token_id: int | None = None,
             generator: torch.Generator | None = None) -> torch.Tensor:
    """Continue each row of idx (B, T) by up to max_new_tokens tokens.

    One "prefill" pass over the prompt fills the KV cache, then each step feeds only
    the newest token. temperature 0 is greedy decoding. Stops early when every row
    has produced eos_token_id (finished rows are padded with eos) or when the
    sequence reaches block_size tokens. Returns prompt + new tokens, (B, T + n).
    Runs in eval mode (no dropout) and restores the previous mode afterwards.
    """
    _check_generate_args(model, idx, temperature, top_k, top_p)
    batch, prompt_len = idx.shape
    budget = min(max_new_tokens, model.config.block_size - prompt_len)
    if budget <= 0:
        return idx

    was_training = model.training
    model.eval()
    try:
        dtype = next(model.parameters()).dtype
        cache = KVCache(model.config, batch, device=idx.device, dtype=dtype)
        logits, _ = model(idx, kv_cache=cache, start_pos=0)  # prefill: (B, T, V)
        out = idx
        finished = torch.zeros(batch, dtype=torch.bool, device=idx.device)
        for step in range(budget):
            next_tok = sample_next_token(logits[:, -1, :], temperature, top_k, top_p,
                                         generator)  # (B,)
            if eos_token_id is not None:
                next_tok = torch.where(finished, torch.full_like(next_tok, eos_token_id), next_tok)
                finished |= next_tok == eos_token_id
            out = torch.cat([out, next_tok[:, None]], dim=1)  # (B, T + step + 1)
            if eos_token_id is not None and bool(finished.all()):
                break
            if step + 1 < budget:  # feed just the new token; its position is len - 1
                logits, _ = model(next_tok[:, None], kv_cache=cache, start_pos=out.size(1) - 1)
    finally:
        model.train(was_training)
    return out
