"""Logits processors: small functions that reshape the next-token scores before a token is picked.

The model gives one score (a logit) per vocabulary entry; softmax turns them into
probabilities. Every function below takes logits and returns new logits, so they chain:

    penalties (repetition, presence/frequency) -> temperature -> top-k -> top-p -> min-p

which is the order Hugging Face `generate` applies them in (vLLM: the same, except that
min-p comes before top-k and top-p). A token a filter removes gets the logit -inf, i.e.
probability 0 after softmax; the survivors are renormalised by that softmax.

Each function computes exactly what its `transformers` counterpart computes
(`TemperatureLogitsWarper`, `TopKLogitsWarper`, `TopPLogitsWarper`, `MinPLogitsWarper`,
`RepetitionPenaltyLogitsProcessor`), and presence/frequency penalties follow the OpenAI
API as vLLM implements it; tests/unit/test_decoding.py pins them. The examples run as
doctests there too. Shapes: logits (..., V) or, for the penalties, (B, V) with ids (B, L).

Bad settings raise `training.errors.UserError` naming the setting.
"""

import torch

from training.errors import UserError

FILTERED = float("-inf")  # the logit of a removed token: probability exactly 0


def rounded_probs(logits: torch.Tensor, digits: int = 2) -> list[float]:
    """Softmax probabilities of a 1-D logits vector as a short list (for examples and traces).

    >>> rounded_probs(torch.tensor([2.0, 1.0, 0.0, -1.0]))
    [0.64, 0.24, 0.09, 0.03]
    """
    return [round(p, digits) for p in logits.float().softmax(-1).tolist()]


def temperature(logits: torch.Tensor, t: float) -> torch.Tensor:
    """Divide the logits by t: t < 1 sharpens the distribution, t > 1 flattens it.

    Softmax of z / t: as t -> 0 all the mass goes to the argmax (greedy decoding); t = 1
    leaves the model's distribution as it is; as t grows it approaches uniform. Nothing
    is removed, only the odds between tokens change: two tokens whose logits differ by d
    have odds e^(d / t) instead of e^d.

    >>> logits = torch.tensor([2.0, 1.0, 0.0, -1.0])
    >>> rounded_probs(temperature(logits, 0.5))  # sharper
    [0.86, 0.12, 0.02, 0.0]
    >>> rounded_probs(temperature(logits, 2.0))  # flatter
    [0.46, 0.28, 0.17, 0.1]
    """
    if not t > 0:
        raise UserError(f"temperature must be > 0 to rescale logits, got {t}")
    return logits / t


def top_k(logits: torch.Tensor, k: int, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the k highest-scoring tokens; every other token gets probability 0.

    Cuts the long tail of unlikely tokens, each unlikely on its own but many in total, that
    make pure sampling wander off. Its weakness: k is the same whether the model is sure
    (one sensible token) or unsure (hundreds). Tokens tied with the k-th score are kept too.

    >>> rounded_probs(top_k(torch.tensor([2.0, 1.0, 0.0, -1.0]), 2))
    [0.73, 0.27, 0.0, 0.0]
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UserError(f"top_k must be a positive integer, got {k!r}")
    k = min(max(k, min_tokens_to_keep), logits.size(-1))
    kth_best = torch.topk(logits, k).values[..., -1:]  # (..., 1)
    return logits.masked_fill(logits < kth_best, FILTERED)


def top_p(logits: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Nucleus sampling: keep the fewest most-likely tokens whose probabilities sum to >= p.

    Unlike top-k the number kept adapts: one or two tokens when the model is confident,
    many when it is not (Holtzman et al. 2020, "The Curious Case of Neural Text
    Degeneration"). Computed as Hugging Face does: sort from the least likely up and drop
    every token whose cumulative probability (itself plus all less likely ones) is at most
    1 - p. That is the same set as "keep while the mass of better tokens is below p".

    >>> logits = torch.tensor([2.0, 1.0, 0.0, -1.0])  # probabilities 0.64, 0.24, 0.09, 0.03
    >>> rounded_probs(top_p(logits, 0.8))  # 0.64 < 0.8, 0.64 + 0.24 >= 0.8: two tokens
    [0.73, 0.27, 0.0, 0.0]
    """
    if not 0.0 < p <= 1.0:
        raise UserError(f"top_p must be in (0, 1], got {p}")
    sorted_logits, order = torch.sort(logits, descending=False)
    tail_mass = sorted_logits.softmax(dim=-1).cumsum(dim=-1)  # mass of this token and all worse
    remove_sorted = tail_mass <= (1 - p)
    remove_sorted[..., -min_tokens_to_keep:] = False  # the best tokens always survive
    remove = remove_sorted.scatter(-1, order, remove_sorted)  # back to vocabulary order
    return logits.masked_fill(remove, FILTERED)


def min_p(logits: torch.Tensor, p: float, min_tokens_to_keep: int = 1) -> torch.Tensor:
    """Keep the tokens at least p times as likely as the most likely one.

    The cut-off scales with the model's confidence: with a top token at 0.9 and p = 0.1
    anything under 0.09 goes; with a top token at 0.2, anything above 0.02 stays (Nguyen
    et al. 2024, "Turning Up the Heat: Min-p Sampling"). Applied after temperature, the bar
    is measured on the distribution the token is drawn from: the hotter, the more pass.

    >>> rounded_probs(min_p(torch.tensor([2.0, 1.0, 0.0, -1.0]), 0.2))  # bar: 0.2 x 0.64 = 0.13
    [0.73, 0.27, 0.0, 0.0]
    """
    if not 0.0 <= p <= 1.0:
        raise UserError(f"min_p must be in [0, 1], got {p}")
    probs = logits.softmax(dim=-1)
    bar = p * probs.amax(dim=-1, keepdim=True)  # (..., 1)
    remove = probs < bar
    best = torch.topk(probs, min(min_tokens_to_keep, probs.size(-1))).indices
    remove = remove.scatter(-1, best, False)
    return logits.masked_fill(remove, FILTERED)


def repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Make every token already in the sequence (prompt included) less likely: CTRL's penalty.

    A seen token's logit is divided by the penalty when positive and multiplied by it when
    negative, so it always moves down for penalty > 1 (Keskar et al. 2019, who suggest
    about 1.2). Applied once per distinct token, however often it occurred. Values below 1
    reward repetition instead.

    >>> logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    >>> repetition_penalty(logits, torch.tensor([[0, 3, 3]]), 2.0).tolist()
    [[1.0, 1.0, 0.0, -2.0]]
    """
    if not penalty > 0:
        raise UserError(f"repetition_penalty must be > 0, got {penalty}")
    seen = torch.gather(logits, -1, input_ids)  # (B, L) the current logits of the seen tokens
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(-1, input_ids, seen)


def presence_frequency_penalty(logits: torch.Tensor, output_ids: torch.Tensor, presence: float,
                               frequency: float) -> torch.Tensor:
    """OpenAI-style penalties on the tokens generated so far (not the prompt), as vLLM does.

        logit[j] -= frequency * count[j] + presence * (count[j] > 0)

    Subtracting (rather than scaling, as the repetition penalty does) moves positive and
    negative logits alike. The presence penalty is paid once, to push towards new topics;
    the frequency penalty grows with every repeat, to stop loops of the same words. Both
    lie in [-2, 2]; negative values encourage repetition.

    >>> logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]])
    >>> presence_frequency_penalty(logits, torch.tensor([[0, 3, 3]]), 0.5, 0.25).tolist()
    [[1.25, 1.0, 0.0, -2.0]]
    """
    for name, value in (("presence_penalty", presence), ("frequency_penalty", frequency)):
        if not -2.0 <= value <= 2.0:
            raise UserError(f"{name} must be in [-2, 2], got {value}")
    counts = torch.zeros_like(logits).scatter_add_(-1, output_ids, torch.ones_like(output_ids, dtype=logits.dtype))
    return logits - frequency * counts - presence * (counts > 0).to(logits.dtype)
