"""Greedy decoding and sampling, one token at a time, with a trace of every decision.

Both strategies run the same loop:

    prefill: run the whole prompt once, filling the KV cache -> logits for token 1
    repeat:  logits -> processors (penalties, temperature, top-k, top-p, min-p) -> pick one
             token -> feed only that token through the cache -> logits for the next one

and differ only in the pick: greedy takes the argmax, sampling draws from the processed
distribution with a seeded `torch.Generator` (the same seed gives the same text).

Greedy applies the penalties but skips temperature, top-k, top-p and min-p, as Hugging
Face does: each of those keeps the most likely token the most likely, so they could not
change the argmax anyway.

The trace records, for every step, the distribution before any processor and after each
one in turn (top 20 tokens with their probabilities, and the entropy), plus the chosen
token: exactly what a UI needs to show how each knob reshapes the choice.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from training.decoding import processors
from training.decoding.common import (
    TRACE_TOP,
    Distribution,
    check_eos,
    check_max_new_tokens,
    inference,
    new_cache,
    next_logits,
    prompt_tensor,
    summarize,
)
from training.errors import UserError
from training.model.transformer import Transformer

STRATEGIES = ("greedy", "sample")  # beam search has its own module: training/decoding/beam.py


@dataclass(frozen=True)
class Settings:
    """How to turn each next-token distribution into one token. Checked on creation.

    Attributes:
        strategy: "greedy" (always the most likely token) or "sample" (draw one).
        temperature: > 1 flattens, < 1 sharpens; 0 means greedy. Sampling only.
        top_k: keep the k most likely tokens (None: off). Sampling only.
        top_p: keep the smallest set of tokens with probability >= top_p (None: off).
        min_p: keep tokens at least min_p times as likely as the best (None: off).
        repetition_penalty: > 1 discourages tokens already in the text (1: off).
        presence_penalty, frequency_penalty: OpenAI-style, on generated tokens (0: off).
        seed: seeds the sampler's random generator.
    """

    strategy: str = "greedy"
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    seed: int = 0

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise UserError(f"strategy must be one of {', '.join(STRATEGIES)} (beam search: "
                            f"training.decoding.beam.beam_search), got {self.strategy!r}")
        if not self.temperature >= 0:
            raise UserError(f"temperature must be >= 0, got {self.temperature}")
        if self.top_k is not None and (isinstance(self.top_k, bool) or not isinstance(self.top_k, int)
                                       or self.top_k < 1):
            raise UserError(f"top_k must be a positive integer or null, got {self.top_k!r}")
        if self.top_p is not None and not 0.0 < self.top_p <= 1.0:
            raise UserError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.min_p is not None and not 0.0 <= self.min_p <= 1.0:
            raise UserError(f"min_p must be in [0, 1], got {self.min_p}")
        if not self.repetition_penalty > 0:
            raise UserError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        for name in ("presence_penalty", "frequency_penalty"):
            if not -2.0 <= getattr(self, name) <= 2.0:
                raise UserError(f"{name} must be in [-2, 2], got {getattr(self, name)}")

    @property
    def greedy(self) -> bool:
        return self.strategy == "greedy" or self.temperature == 0


@dataclass
class Stage:
    """The distribution after one processor ("raw": straight from the model)."""

    name: str
    distribution: Distribution
    chosen_prob: float  # probability of the token finally chosen, at this stage


@dataclass
class Step:
    token: int  # the chosen token
    stages: list[Stage]  # raw first, then one per processor that was on, in order


@dataclass
class Decoded:
    prompt: list[int]
    tokens: list[int]  # the new tokens, eos included when it was produced
    steps: list[Step] = field(default_factory=list)
    stopped_at_eos: bool = False


def process(logits: torch.Tensor, settings: Settings, seq: torch.Tensor,
            generated: torch.Tensor) -> list[tuple[str, torch.Tensor]]:
    """Apply the processors that are on, in Hugging Face's order, keeping every stage.

    logits (1, V); seq (1, L) is prompt + generated so far (the repetition penalty reads
    both), generated (1, n) the new tokens only (what presence/frequency penalties count).
    Returns [("raw", logits), (processor name, logits after it), ...].
    """
    s = settings
    stages = [("raw", logits)]

    def apply(name: str, fn, *args) -> None:
        stages.append((name, fn(stages[-1][1], *args)))

    if s.repetition_penalty != 1.0:
        apply("repetition_penalty", processors.repetition_penalty, seq, s.repetition_penalty)
    if s.presence_penalty or s.frequency_penalty:
        apply("presence_frequency_penalty", processors.presence_frequency_penalty, generated,
              s.presence_penalty, s.frequency_penalty)
    if s.greedy:  # the warpers below never move the argmax: skip them, like HF
        return stages
    if s.temperature != 1.0:
        apply("temperature", processors.temperature, s.temperature)
    if s.top_k is not None:
        apply("top_k", processors.top_k, s.top_k)
    if s.top_p is not None and s.top_p < 1.0:
        apply("top_p", processors.top_p, s.top_p)
    if s.min_p is not None:
        apply("min_p", processors.min_p, s.min_p)
    return stages


def choose(logits: torch.Tensor, settings: Settings, generator: torch.Generator) -> int:
    """The argmax, or one draw from softmax(logits), for logits (1, V)."""
    if settings.greedy:
        return int(logits.argmax(dim=-1))
    probs = logits.softmax(dim=-1)
    return int(torch.multinomial(probs, num_samples=1, generator=generator))


def trace_step(stages: list[tuple[str, torch.Tensor]], token: int, top: int) -> Step:
    """Summarise every stage of one step in one batched pass."""
    stacked = torch.cat([logits for _, logits in stages])  # (n_stages, V)
    chosen = stacked.softmax(dim=-1)[:, token].tolist()
    dists = summarize(stacked, top)
    return Step(token, [Stage(name, d, p) for (name, _), d, p in zip(stages, dists, chosen, strict=True)])


@dataclass
class _Run:
    """One strategy's state while it decodes."""

    settings: Settings
    generator: torch.Generator
    seq: torch.Tensor  # (1, T + n): the prompt and the tokens chosen so far
    out: Decoded


def _advance(run: _Run, logits: torch.Tensor, eos_token_id: int | None, top: int) -> None:
    """One step of one strategy: process logits (1, V), choose, trace, append."""
    prompt_len = len(run.out.prompt)
    stages = process(logits, run.settings, run.seq, run.seq[:, prompt_len:])
    token = choose(stages[-1][1], run.settings, run.generator)
    run.out.steps.append(trace_step(stages, token, top))
    run.out.tokens.append(token)
    run.seq = torch.cat([run.seq, run.seq.new_tensor([[token]])], dim=1)
    run.out.stopped_at_eos = token == eos_token_id


def compare(model: Transformer, prompt: Sequence[int] | torch.Tensor, strategies: dict[str, Settings],
            max_new_tokens: int = 32, eos_token_id: int | None = None,
            top: int = TRACE_TOP) -> dict[str, Decoded]:
    """Several strategies on one prompt, side by side: {name: Decoded}, tracing every step.

    The prompt goes through the model once (prefill) and its KV cache is copied to one row
    per strategy. Then the strategies advance together: each step feeds every unfinished
    strategy's newest token as one row of a batch, so one forward pass serves them all.
    Producing one token is limited by reading the weights from memory rather than by
    arithmetic, which is why four rows cost little more than one (and why servers batch).
    A strategy stops after eos_token_id; all stop when the context (block_size) is full.

    Raises:
        UserError: a bad prompt (empty, unknown ids, too long), eos_token_id or length.
    """
    if not strategies:
        raise UserError("strategies must name at least one strategy")
    check_max_new_tokens(max_new_tokens)
    check_eos(model, eos_token_id)
    ids = prompt_tensor(model, prompt)  # (1, T)
    prompt_len = ids.size(1)
    budget = min(max_new_tokens, model.config.block_size - prompt_len)
    runs = {name: _Run(s, torch.Generator(device=ids.device).manual_seed(s.seed), ids,
                       Decoded(prompt=ids[0].tolist(), tokens=[]))
            for name, s in strategies.items()}
    active = list(runs.values())
    with inference(model):
        cache = new_cache(model)
        logits = next_logits(model, ids, cache, start_pos=0).expand(len(active), -1)  # prefill once
        cache.reorder(torch.zeros(len(active), dtype=torch.long, device=ids.device))  # one row each
        for step in range(budget):
            for run, row in zip(active, logits, strict=True):
                _advance(run, row[None], eos_token_id, top)
            still = [i for i, run in enumerate(active) if not run.out.stopped_at_eos]
            if not still or step + 1 == budget:
                break
            if len(still) < len(active):  # drop the finished strategies' rows
                cache.reorder(torch.tensor(still, device=ids.device))
                active = [active[i] for i in still]
            newest = torch.cat([run.seq[:, -1:] for run in active])  # (n_active, 1)
            logits = next_logits(model, newest, cache, start_pos=prompt_len + step)
    return {name: run.out for name, run in runs.items()}


def decode(model: Transformer, prompt: Sequence[int] | torch.Tensor, settings: Settings = Settings(),
           max_new_tokens: int = 32, eos_token_id: int | None = None, top: int = TRACE_TOP) -> Decoded:
    """Continue `prompt` (token ids) by up to max_new_tokens tokens with one strategy (see
    `compare`, which runs this loop for one or several)."""
    return compare(model, prompt, {"decoded": settings}, max_new_tokens, eos_token_id, top)["decoded"]
