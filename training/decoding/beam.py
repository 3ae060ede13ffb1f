"""Beam search on our Transformer with its KV cache, recording the whole search tree.

Greedy decoding commits to the best token at every step and can never take it back; a
slightly worse first token that leads to a much better sentence is out of reach. Beam
search keeps the `num_beams` best partial sequences ("beams") instead, scored by their
total log-probability, and at each step:

    1. scores every one-token extension of every beam: beam score + log p(token | beam);
    2. ranks the best 2 * num_beams extensions across all beams (twice as many as needed,
       so that enough remain when some of them end with EOS);
    3. an extension that ends the text (EOS, or the last allowed token) and ranks among the
       best num_beams goes to the list of finished hypotheses, scored with the length
       penalty: sum of log-probs / length ** length_penalty;
    4. the best num_beams extensions that did not end continue as the new beams; their
       rows of the KV cache are copied from the beams they extend (`KVCache.reorder`);
    5. stops when no running beam can still beat the finished ones (`early_stopping`).

Without the length penalty longer texts lose (every token adds a negative log-prob);
length_penalty > 0 divides that by length ** length_penalty and so favours longer texts.

This follows Hugging Face's `generate(num_beams=...)` step for step (transformers 5,
`GenerationMixin._beam_search`): the same tokens and the same `sequences_scores`, which
tests/unit/test_decoding.py checks. The length in the penalty counts generated tokens
only, EOS included. For the UI, every ranked extension becomes a node of a tree, with its
fate: kept (a running beam), finished, or pruned.
"""

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

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

MAX_BEAMS = 8


@dataclass
class BeamNode:
    """One token of one hypothesis: a node of the search tree.

    Attributes:
        id: index in `BeamSearch.nodes`; the root (the prompt) is 0.
        parent: id of the node it extends (None for the root).
        step: tokens generated on the path up to and including this one (root: 0).
        token: the token added (None for the root).
        logprob: log p(token | everything before it).
        cumulative: sum of the logprobs on the path: the beam's score while it runs.
        status: "root"; "kept" (continued as a beam); "finished" (ended with EOS or at
            max_new_tokens and entered the list of the num_beams best finished hypotheses;
            a better one may push it out later: `BeamSearch.beams` are the survivors);
            "pruned" (ranked, but dropped: outranked by the other extensions, or it ended
            and scored below the finished ones).
        score: for nodes that end a hypothesis, cumulative / step ** length_penalty.
        next: for expanded nodes (the root and kept ones), their next-token distribution.
    """

    id: int
    parent: int | None
    step: int
    token: int | None
    logprob: float
    cumulative: float
    status: str
    score: float | None = None
    next: Distribution | None = None


@dataclass
class Beam:
    tokens: list[int]  # generated tokens, prompt excluded, EOS included
    score: float  # what Hugging Face reports as sequences_scores
    logprob: float  # sum of the token log-probabilities
    node: int  # id of its last node


@dataclass
class BeamSearch:
    prompt: list[int]
    beams: list[Beam]  # the best num_return_sequences hypotheses, best first
    nodes: list[BeamNode] = field(default_factory=list)

    def path(self, node_id: int) -> list[int]:
        """Node ids from the root down to node_id."""
        return _path(self.nodes, node_id)

    @property
    def chosen(self) -> list[int]:
        """The path of the best beam: the text beam search returns."""
        return self.path(self.beams[0].node)


def _check(num_beams: int, early_stopping, num_return_sequences: int, length_penalty: float) -> None:
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or not 1 <= num_beams <= MAX_BEAMS:
        raise UserError(f"num_beams must be an integer from 1 to {MAX_BEAMS}, got {num_beams!r}")
    if not (early_stopping is True or early_stopping is False or early_stopping == "never"):
        raise UserError(f"early_stopping must be true, false or 'never', got {early_stopping!r}")
    if isinstance(num_return_sequences, bool) or not isinstance(num_return_sequences, int) \
            or not 1 <= num_return_sequences <= num_beams:
        raise UserError(f"num_return_sequences must be from 1 to num_beams ({num_beams}), "
                        f"got {num_return_sequences!r}")
    if not isinstance(length_penalty, (int, float)) or isinstance(length_penalty, bool):
        raise UserError(f"length_penalty must be a number, got {length_penalty!r}")


def _path(nodes: list[BeamNode], node_id: int | None) -> list[int]:
    ids = []
    while node_id is not None:
        ids.append(node_id)
        node_id = nodes[node_id].parent
    return ids[::-1]


def beam_search(model: Transformer, prompt: Sequence[int] | torch.Tensor, num_beams: int = 4,
                max_new_tokens: int = 32, length_penalty: float = 1.0, early_stopping: bool | str = False,
                eos_token_id: int | None = None, num_return_sequences: int = 1,
                top: int = TRACE_TOP) -> BeamSearch:
    """Beam search from `prompt` (token ids), as `transformers`' generate(num_beams=...) does it.

    Args:
        num_beams: how many hypotheses run side by side (1-8).
        max_new_tokens: at most this many new tokens (fewer if the context is full first).
        length_penalty: finished scores are sum of log-probs / length ** length_penalty;
            > 0 favours longer texts, < 0 shorter ones, 0 compares raw sums.
        early_stopping: True: stop as soon as num_beams hypotheses have finished. False:
            stop when the best running beam, scored at its current length, cannot beat
            the worst finished one (Hugging Face's default heuristic). "never": the same
            test but scored at the most favourable length it could still reach, so the
            search only stops when no beam can win (the textbook algorithm).
        eos_token_id: the token that ends a text (None: run to max_new_tokens).
        num_return_sequences: how many of the best finished hypotheses to return.
        top: tokens per distribution in the trace.

    Raises:
        UserError: settings out of range, or a bad prompt.
    """
    _check(num_beams, early_stopping, num_return_sequences, length_penalty)
    check_max_new_tokens(max_new_tokens)
    check_eos(model, eos_token_id)
    ids = prompt_tensor(model, prompt)
    prompt_len = ids.size(1)
    max_new = min(max_new_tokens, model.config.block_size - prompt_len)
    search = _Search(num_beams, max_new, length_penalty, early_stopping, eos_token_id, top, ids.device)
    with inference(model):
        cache = new_cache(model)  # one row for the prompt; `reorder` grows it to the beams
        logits = next_logits(model, ids, cache, start_pos=0)  # (1, V)
        for step in range(1, max_new + 1):
            rows, tokens = search.step(step, logits)
            if rows is None:
                break
            cache.reorder(rows)
            logits = next_logits(model, tokens[:, None], cache, start_pos=prompt_len + step - 1)
    return BeamSearch(ids[0].tolist(), search.results(num_return_sequences), search.nodes)


class _Search:
    """The bookkeeping of one beam search: running beams, finished hypotheses and the tree."""

    def __init__(self, num_beams: int, max_new: int, length_penalty: float, early_stopping,
                 eos_token_id: int | None, top: int, device: torch.device):
        self.k, self.max_new, self.lp = num_beams, max_new, length_penalty
        self.early_stopping, self.eos, self.top = early_stopping, eos_token_id, top
        self.nodes = [BeamNode(0, None, 0, None, 0.0, 0.0, "root")]
        self.running = [0]  # node ids of the running beams, best first (row i of the cache)
        self.scores = torch.zeros(1, device=device)  # their cumulative log-probs, float32 like HF
        self.finished: list[tuple[float, int]] = []  # (score, node id), best first, <= k

    def _add(self, **kw) -> BeamNode:
        node = BeamNode(id=len(self.nodes), **kw)
        self.nodes.append(node)
        return node

    def step(self, step: int, logits: torch.Tensor):
        """Extend the running beams by one token (logits: (n_running, V), one row per beam).

        Returns (rows, tokens) for the next forward pass: which cache row each new beam
        extends and its new token; (None, None) when the search is over.
        """
        logprobs = logits.log_softmax(dim=-1)  # (n, V)
        for node_id, dist in zip(self.running, summarize(logprobs, self.top), strict=True):
            self.nodes[node_id].next = dist
        vocab = logprobs.size(-1)
        total = (self.scores[:, None] + logprobs).flatten()  # every (beam, token) extension
        cand_scores, flat = torch.topk(total, min(2 * self.k, total.numel()))
        rows, toks = flat // vocab, flat % vocab
        token_lp = logprobs.flatten()[flat]
        # The finished score with the length penalty; computed for all, used by the finished.
        penalised = cand_scores / (step ** self.lp)
        kept, new_finished = self._rank(step, rows.tolist(), toks.tolist(), token_lp.tolist(),
                                        cand_scores.tolist(), penalised.tolist())
        self._merge_finished(new_finished)
        if not kept or self._done(step, cand_scores[kept[0][0]]):
            return None, None
        keep = torch.tensor([rank for rank, _ in kept], device=flat.device)
        self.scores = cand_scores[keep]
        self.running = [node_id for _, node_id in kept]
        return rows[keep], toks[keep]

    def _rank(self, step, rows, toks, token_lps, cumulative, penalised):
        """Decide the fate of each ranked extension, best first, and add them to the tree.

        Returns the (rank, node id) of the extensions that run on, and the (score, node id)
        of those that end here and may join the finished hypotheses.
        """
        kept, new_finished = [], []
        for rank, (row, tok, lp, cum, score) in enumerate(zip(rows, toks, token_lps, cumulative, penalised,
                                                             strict=True)):
            ends = tok == self.eos or step == self.max_new
            node = self._add(parent=self.running[row], step=step, token=tok, logprob=lp,
                             cumulative=cum, status="pruned")
            if not ends and len(kept) < self.k:
                node.status = "kept"
                kept.append((rank, node.id))
            elif ends:
                node.score = score
                if rank < self.k:  # only the top k may finish (HF's rule)
                    new_finished.append((score, node.id))
        return kept, new_finished

    def _merge_finished(self, new: list[tuple[float, int]]) -> None:
        """Keep the k best finished hypotheses, old ones first on ties (as a stable top-k)."""
        merged = sorted(self.finished + new, key=lambda pair: -pair[0])[: self.k]
        for score, node_id in merged:
            if self.nodes[node_id].status == "pruned":
                self.nodes[node_id].status = "finished"
        self.finished = merged

    def _done(self, step: int, best_running: torch.Tensor) -> bool:
        """Hugging Face's stopping rule, once all k finished slots are full."""
        if step >= self.max_new:
            return True
        if len(self.finished) < self.k:
            return False
        if self.early_stopping is True:
            return True
        # The best the leading running beam could still score: at its current length, or
        # (for "never" with a positive penalty, where longer is better) at the longest.
        length = self.max_new if self.early_stopping == "never" and self.lp > 0 else step
        best_possible = float(best_running / (length ** self.lp))
        return not best_possible > self.finished[-1][0]

    def results(self, n: int) -> list[Beam]:
        return [Beam([self.nodes[i].token for i in _path(self.nodes, node_id)[1:]], score,
                     self.nodes[node_id].cumulative, node_id)
                for score, node_id in self.finished[:n]]
