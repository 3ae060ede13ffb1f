"""What every decoding strategy shares: checking the prompt, stepping the model with its KV
cache, and summarising a distribution for the trace a UI draws."""

import math
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from training.errors import UserError
from training.model.generation import KVCache
from training.model.transformer import Transformer

TRACE_TOP = 20  # how many of the most likely tokens a trace keeps per distribution


@dataclass
class Distribution:
    """A next-token distribution, summarised.

    Attributes:
        top: the most likely tokens as (token id, probability), best first; tokens a
            filter removed (probability 0) are left out.
        entropy_bits: -sum p log2 p over the whole vocabulary: about log2 of the number
            of tokens the model is, in effect, choosing between (0 = certain).
    """

    top: list[tuple[int, float]]
    entropy_bits: float


def summarize(logits: torch.Tensor, top: int = TRACE_TOP) -> list[Distribution]:
    """One `Distribution` per row of logits (N, V), in one batched pass."""
    probs = logits.float().softmax(dim=-1)
    # entr(p) = -p ln p, defined as 0 at p = 0 (filtered tokens), unlike p * log(p).
    entropy = (torch.special.entr(probs).sum(dim=-1) / math.log(2)).tolist()
    values, ids = torch.topk(probs, min(top, probs.size(-1)), dim=-1)
    rows = zip(ids.tolist(), values.tolist(), strict=True)
    return [Distribution([(i, p) for i, p in zip(row_ids, row_p, strict=True) if p > 0], h)
            for (row_ids, row_p), h in zip(rows, entropy, strict=True)]


def prompt_tensor(model: Transformer, prompt: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """The prompt as a (1, T) tensor on the model's device, checked against the model.

    Raises:
        UserError: an empty prompt, token ids outside the vocabulary, or a prompt that
            leaves no room in the context (block_size) for a new token.
    """
    ids = torch.as_tensor(prompt, dtype=torch.long).flatten()
    cfg = model.config
    if ids.numel() == 0:
        raise UserError("prompt must hold at least one token")
    if int(ids.min()) < 0 or int(ids.max()) >= cfg.vocab_size:
        raise UserError(f"prompt token ids must be in [0, {cfg.vocab_size}) (vocab_size)")
    if ids.numel() >= cfg.block_size:
        raise UserError(f"prompt of {ids.numel()} tokens leaves no room in the context: it must be "
                        f"shorter than the model's block_size ({cfg.block_size})")
    return ids[None, :].to(next(model.parameters()).device)


def check_eos(model: Transformer, eos_token_id: int | None) -> None:
    if eos_token_id is not None and not 0 <= eos_token_id < model.config.vocab_size:
        raise UserError(f"eos_token_id must be in [0, {model.config.vocab_size}), got {eos_token_id}")


def check_max_new_tokens(max_new_tokens: int) -> None:
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise UserError(f"max_new_tokens must be a positive integer, got {max_new_tokens!r}")


@contextmanager
def inference(model: Transformer) -> Iterator[None]:
    """Eval mode (no dropout) and no autograd bookkeeping for the duration; the old mode comes
    back after. (inference_mode: like no_grad, and a little cheaper per operation.)"""
    was_training = model.training
    model.eval()
    try:
        with torch.inference_mode():
            yield
    finally:
        model.train(was_training)


def new_cache(model: Transformer, batch_size: int = 1) -> KVCache:
    p = next(model.parameters())
    return KVCache(model.config, batch_size, device=p.device, dtype=p.dtype)


def next_logits(model: Transformer, ids: torch.Tensor, cache: KVCache, start_pos: int) -> torch.Tensor:
    """Feed ids (B, T) at positions start_pos.. through the cache; the float32 logits of the
    last position, (B, V): the scores for the token that comes next."""
    logits, _ = model(ids, kv_cache=cache, start_pos=start_pos)
    return logits[:, -1, :].float()
