"""Look inside a model while it reads a prompt: attention, residual stream, logit lens.

One forward pass with hooks collects everything (no per-layer re-runs):

* forward hooks on `model.drop` (the residual stream right after the embeddings), on
  every block (the stream after it), and on every block's `attn` and `mlp` (what each
  sublayer adds to the stream);
* `CausalSelfAttention.capture`, which makes attention take its explicit math path and
  keep the softmax probabilities (the fused sdpa kernel never materialises them). The
  math path computes the same function, so the logits agree with a normal forward to
  float rounding, and with capture switched off afterwards nothing changes.

The hooks and the capture flag live on the model for the duration of one call, so run
one inspection at a time per model object, and not concurrently with other forwards of
the same object (a server should hold a lock or a dedicated copy).

`inspect_prompt` returns plain lists, numbers and strings (JSON as is) for the API/UI:

    ids            [T] token ids
    tokens         [T] decoded text of each token
    n_layer, n_head
    attention      [n_layer][n_head][T][T] probabilities, rounded to 4 dp; row i is
                   where token i looks; the upper triangle (the future) is exactly 0
    residual_norms [n_layer + 1][T] L2 norm of the residual stream after the embeddings
                   and after each block
    contributions  [n_layer] of {"attn": [T], "mlp": [T]}: L2 norms of what attention and
                   the MLP add to the residual stream in each block
    logit_lens     [n_layer + 1][T] of top_k [{"id", "token", "prob"}]: the final norm
                   and the lm_head applied to the stream after the embeddings and after
                   each block (nostalgebraist 2020); the last entry is the model's output
    next_token     [T] of {"top": [{"id", "token", "prob"}], "entropy": nats}: the model's
                   prediction after each token (top equals logit_lens[-1]; the entropy
                   is of the whole distribution)
    head_patterns  [n_layer * n_head] of {"layer", "head", "label", "scores"}, ordered
                   by layer, then head
    timings_ms     {"forward": the hooked forward pass, "total": the whole call}

Norms, probabilities and entropies are rounded to 6 decimals, head scores to 4.

Head pattern scores (each in [0, 1], averaged over the rows of the attention matrix
where the pattern can be told apart from the others):

    previous_token  mean attention of token i on token i-1           (rows i >= 2)
    first_token     mean attention of token i on token 0             (rows i >= 2)
    local           mean attention of token i on tokens i-2 .. i     (rows i >= 3)
    diffuse         mean entropy of row i divided by log(i + 1), its maximum: 1 means
                    uniform over everything visible                  (rows i >= 1)

When the prompt is too short for a rule, its rows start at the last token instead.
Label: previous_token or first_token (the larger) if that score is >= 0.5, else local
if its score is >= 0.5, else diffuse. A one-token prompt attends to itself only: every
head is labelled first_token.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
from torch import nn

from training.errors import UserError
from training.model.transformer import Transformer

LABELS = ("previous_token", "first_token", "local", "diffuse")
LABEL_THRESHOLD = 0.5  # "more than half of the attention, on average"


# --------------------------------------------------------------------------- capture


class _Recorder:
    """What the hooks saw during one forward pass (batch of one)."""

    def __init__(self) -> None:
        self.residual: list[torch.Tensor] = []  # n_layer + 1 tensors (T, C)
        self.attn_out: list[torch.Tensor] = []  # n_layer tensors (T, C)
        self.mlp_out: list[torch.Tensor] = []


@contextmanager
def capture(model: Transformer) -> Iterator[_Recorder]:
    """Record the residual stream, sublayer outputs and attention of the next forward.

    Switches every attention layer to its math path with `capture = True`; on exit the
    hooks are removed and the layers are back to normal (even after an error).
    """
    rec = _Recorder()

    def keep(into: list[torch.Tensor]) -> Callable:
        def hook(_module: nn.Module, _inputs, output: torch.Tensor) -> None:
            into.append(output.detach()[0])  # (T, C) of the single sequence
        return hook

    handles = [model.drop.register_forward_hook(keep(rec.residual))]
    for block in model.blocks:
        handles.append(block.register_forward_hook(keep(rec.residual)))
        handles.append(block.attn.register_forward_hook(keep(rec.attn_out)))
        handles.append(block.mlp.register_forward_hook(keep(rec.mlp_out)))
        block.attn.capture = True
    try:
        yield rec
    finally:
        for handle in handles:
            handle.remove()
        for block in model.blocks:
            block.attn.capture = False
            block.attn.last_attention = None


# --------------------------------------------------------------------------- head patterns


def head_scores(att: torch.Tensor) -> dict[str, torch.Tensor]:
    """The four pattern scores (see the module docstring) for every head at once.

    Args:
        att: attention probabilities (..., T, T), causal.

    Returns:
        label -> tensor of shape att.shape[:-2].
    """
    T = att.size(-1)
    if T == 1:  # one token: every head can only look at it
        ones = att.new_ones(att.shape[:-2])
        return {"previous_token": ones * 0, "first_token": ones, "local": ones, "diffuse": ones * 0}
    i = torch.arange(T, device=att.device)
    start2, start3 = min(2, T - 1), min(3, T - 1)
    prev = torch.diagonal(att, offset=-1, dim1=-2, dim2=-1)[..., start2 - 1:]  # att[i, i-1], i >= start2
    first = att[..., start2:, 0]
    window = ((i[:, None] - i[None, :]) >= 0) & ((i[:, None] - i[None, :]) <= 2)  # keys i-2 .. i
    local = (att * window).sum(-1)[..., start3:]
    # 0 * log 0 is 0; xlogy spells that out without a NaN from the masked zeros.
    entropy = -torch.special.xlogy(att, att).sum(-1)[..., 1:]  # rows i >= 1
    diffuse = entropy / torch.log(i[1:].to(att.dtype) + 1)
    return {"previous_token": prev.mean(-1), "first_token": first.mean(-1),
            "local": local.mean(-1), "diffuse": diffuse.mean(-1)}


def label_head(scores: dict[str, float]) -> str:
    """previous_token / first_token / local / diffuse from a head's scores (docstring rule)."""
    best = max(("previous_token", "first_token"), key=lambda k: scores[k])
    if scores[best] >= LABEL_THRESHOLD:
        return best
    if scores["local"] >= LABEL_THRESHOLD:
        return "local"
    return "diffuse"


# --------------------------------------------------------------------------- the report


def _encode(tokenizer, text: str) -> list[int]:
    return list(tokenizer.encode(text))


def _check_length(n_tokens: int, context: int) -> None:
    if n_tokens == 0:
        raise UserError(f"prompt: 0 tokens (empty), the model's context is {context}")
    if n_tokens > context:
        raise UserError(f"prompt: {n_tokens} tokens, the model's context is {context}")


@torch.no_grad()
def inspect_ids(model: Transformer, ids: list[int], decode: Callable[[list[int]], list[str]], *,
                top_k: int = 5) -> dict:
    """`inspect_prompt` for token ids that are already known (see the module docstring).

    Args:
        model: our Transformer (any architecture-lab variant).
        ids: the token ids, 1 .. block_size of them.
        decode: the texts of a list of token ids, one string per id (called once, with
            every distinct id of the prompt and of the top-k lists).
        top_k: predictions kept per position in logit_lens and next_token.

    Returns:
        The report dict described in the module docstring, minus nothing.

    Raises:
        UserError: an empty or too long prompt, or top_k < 1.
    """
    t_start = time.perf_counter()
    cfg = model.config
    _check_length(len(ids), cfg.block_size)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1:
        raise UserError(f"top_k must be a positive integer, got {top_k!r}")
    top_k = min(top_k, cfg.vocab_size)
    device = next(model.parameters()).device
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T)

    was_training = model.training
    model.eval()  # no dropout: the picture must be of the model as it predicts
    try:
        t_fwd = time.perf_counter()
        with capture(model) as rec:
            logits = model(idx)[0][0].float()  # (T, V)
            att = torch.stack([b.attn.last_attention[0] for b in model.blocks]).float()  # (L, H, T, T)
        forward_ms = 1000 * (time.perf_counter() - t_fwd)

        residual = torch.stack(rec.residual).float()  # (L + 1, T, C)
        # Logit lens: read every intermediate stream with the model's own output layers,
        # one layer at a time so only one (T, vocab) matrix is alive (a 50K vocabulary
        # makes the stacked version hundreds of MB). The last stream's reading is the
        # real output, so the logits we already have stand in for it.
        lens_p, lens_i = [], []
        for stream in [*rec.residual[:-1], None]:
            layer_logits = logits if stream is None else model.lm_head(model.norm_f(stream)).float()
            probs = layer_logits.softmax(-1)  # (T, V)
            top = probs.topk(top_k, dim=-1)
            lens_p.append(top.values)
            lens_i.append(top.indices)
        entropy = -torch.special.xlogy(probs, probs).sum(-1)  # (T,) nats, of the real output
    finally:
        model.train(was_training)

    lens_p_list = torch.stack(lens_p).double().tolist()  # (L + 1, T, k)
    lens_i_list = torch.stack(lens_i).tolist()
    # Decode every distinct id once, in one call (fast tokenizers batch it in Rust).
    distinct = sorted(set(ids) | {i for layer in lens_i_list for row in layer for i in row})
    token_text = dict(zip(distinct, decode(distinct)))

    def tops(p_row: list[float], i_row: list[int]) -> list[dict]:
        return [{"id": i, "token": token_text[i], "prob": round(p, 6)} for p, i in zip(p_row, i_row)]

    logit_lens = [[tops(p_t, i_t) for p_t, i_t in zip(p_l, i_l)]
                  for p_l, i_l in zip(lens_p_list, lens_i_list)]
    scores = head_scores(att)  # label -> (L, H)
    score_lists = {k: v.double().tolist() for k, v in scores.items()}
    head_patterns = []
    for layer in range(cfg.n_layer):
        for head in range(cfg.n_head):
            s = {k: round(score_lists[k][layer][head], 4) for k in LABELS}
            head_patterns.append({"layer": layer, "head": head, "label": label_head(s), "scores": s})

    result = {
        "ids": list(ids),
        "tokens": [token_text[i] for i in ids],
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "attention": torch.round(att.double(), decimals=4).tolist(),
        "residual_norms": _rounded(residual.norm(dim=-1)),
        "contributions": [{"attn": a, "mlp": m} for a, m in zip(
            _rounded(torch.stack(rec.attn_out).float().norm(dim=-1)),
            _rounded(torch.stack(rec.mlp_out).float().norm(dim=-1)))],
        "logit_lens": logit_lens,
        "next_token": [{"top": top, "entropy": round(h, 6)}
                       for top, h in zip(logit_lens[-1], entropy.double().tolist())],
        "head_patterns": head_patterns,
        "timings_ms": {"forward": round(forward_ms, 3)},
    }
    result["timings_ms"]["total"] = round(1000 * (time.perf_counter() - t_start), 3)
    return result


def _rounded(x: torch.Tensor, decimals: int = 6) -> list:
    return torch.round(x.double(), decimals=decimals).tolist()


def inspect_prompt(model: Transformer, tokenizer, text: str, *, top_k: int = 5) -> dict:
    """Everything the model does with `text` in one forward pass (module docstring).

    Args:
        model: our Transformer, e.g. from `training.model.export.load_export`.
        tokenizer: anything with `encode(text) -> list[int]` and `decode(list[int]) -> str`
            (a Hugging Face tokenizer; special tokens are added as its `encode` does).
        text: the prompt.
        top_k: predictions kept per position in logit_lens and next_token.

    Returns:
        The report dict; `timings_ms["total"]` includes tokenization.

    Raises:
        UserError: "prompt: N tokens, the model's context is M" for an empty or too long
            prompt; a bad top_k.
    """
    t_start = time.perf_counter()
    ids = _encode(tokenizer, text)
    _check_length(len(ids), model.config.block_size)
    result = inspect_ids(model, ids, lambda many: decode_each(tokenizer, many), top_k=top_k)
    result["timings_ms"]["total"] = round(1000 * (time.perf_counter() - t_start), 3)
    return result


def attention_for(result: dict, layer: int, head: int) -> list[list[float]]:
    """One head's [T][T] attention matrix from an `inspect_prompt` result.

    Raises:
        UserError: naming `layer` or `head` when it is out of range.
    """
    for name, value, count in (("layer", layer, result["n_layer"]), ("head", head, result["n_head"])):
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < count:
            raise UserError(f"{name} must be an integer in 0..{count - 1}, got {value!r}")
    return result["attention"][layer][head]


def decode_each(tokenizer, ids: list[int]) -> list[str]:
    """The text of each token on its own (`batch_decode` when the tokenizer has it).

    A byte-level BPE token can be part of a multi-byte character; on its own it
    decodes to the replacement character "\ufffd".
    """
    if hasattr(tokenizer, "batch_decode"):
        return list(tokenizer.batch_decode([[i] for i in ids]))
    return [tokenizer.decode([i]) for i in ids]
