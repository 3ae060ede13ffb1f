"""The decoding lab's results as plain JSON, with the text of every token: what /api/decoding returns.

`lab` runs sampling strategies side by side (strategies.compare: one batch, one forward pass per
step) and each beam search (beam.beam_search), then turns ids into text with the model's tokenizer.
A token's text is decoded on its own, so a byte-level piece of a multi-byte character shows as
"\ufffd" (training/model/inspection.py `decode_each`).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import fields

from training.decoding.beam import beam_search
from training.decoding.strategies import Settings, compare
from training.errors import UserError

SAMPLING_KEYS = {f.name for f in fields(Settings)}
BEAM_KEYS = {"num_beams", "length_penalty", "early_stopping", "num_return_sequences"}


def _dist(d, text: dict[int, str]) -> dict:
    return {"top": [{"token": i, "text": text[i], "p": round(p, 6)} for i, p in d.top],
            "entropy_bits": round(d.entropy_bits, 4)}


def _ids_in(decoded: dict, beams: dict) -> set[int]:
    ids: set[int] = set()
    for out in decoded.values():
        ids |= set(out.prompt) | set(out.tokens)
        for step in out.steps:
            ids |= {i for st in step.stages for i, _ in st.distribution.top}
    for search in beams.values():
        ids |= set(search.prompt)
        for n in search.nodes:
            ids |= {n.token} if n.token is not None else set()
            ids |= {i for i, _ in n.next.top} if n.next else set()
    return ids


def lab(model, encode: Callable[[str], list[int]], decode_each: Callable[[list[int]], list[str]],
        decode_text: Callable[[list[int]], str], prompt: str, strategies: list[dict], *,
        max_new_tokens: int = 32, eos_token_id: int | None = None, top: int = 20) -> dict:
    """Every strategy in `strategies` ({"name", "strategy": greedy|sample|beam, its settings}) on
    `prompt`, as JSON: `{"prompt_tokens", "strategies": [{name, strategy, text, tokens, steps | beams +
    tree}], "ms"}`.

    Raises:
        UserError: a bad setting (naming it), an unknown strategy, or a prompt that does not fit.
    """
    t0 = time.perf_counter()
    ids = list(encode(prompt))
    if not ids:
        raise UserError("prompt: empty (0 tokens)")
    if len(ids) >= model.config.block_size:
        raise UserError(f"prompt: {len(ids)} tokens, the model's context is {model.config.block_size} "
                        "(leave room for at least one new token)")
    names = [s.get("name") or f"{s['strategy']}-{i + 1}" for i, s in enumerate(strategies)]
    if len(set(names)) != len(names):
        raise UserError("strategies: two strategies have the same name")
    sampling, beams = {}, {}
    for name, s in zip(names, strategies, strict=True):
        kind = s.get("strategy")
        if kind == "beam":
            beams[name] = {k: v for k, v in s.items() if k in BEAM_KEYS}
        elif kind in ("greedy", "sample"):
            sampling[name] = Settings(**{k: v for k, v in s.items() if k in SAMPLING_KEYS})
        else:
            raise UserError(f"strategies: unknown strategy {kind!r} (greedy, sample, beam)")
    decoded = compare(model, ids, sampling, max_new_tokens, eos_token_id, top) if sampling else {}
    searched = {name: beam_search(model, ids, max_new_tokens=max_new_tokens, eos_token_id=eos_token_id,
                                  top=top, **kw) for name, kw in beams.items()}
    vocab = sorted(_ids_in(decoded, searched))
    text = dict(zip(vocab, decode_each(vocab), strict=True))
    out = []
    for name, s in zip(names, strategies, strict=True):
        if name in decoded:
            d = decoded[name]
            out.append({"name": name, "strategy": s["strategy"], "text": decode_text(d.tokens), "tokens": [
                {"token": t, "text": text[t]} for t in d.tokens], "stopped_at_eos": d.stopped_at_eos, "steps": [
                {"token": st.token, "text": text[st.token], "stages": [
                    {"name": g.name, "chosen_p": round(g.chosen_prob, 6), **_dist(g.distribution, text)}
                    for g in st.stages]} for st in d.steps]})
        else:
            b = searched[name]
            out.append({"name": name, "strategy": "beam", "text": decode_text(b.beams[0].tokens),
                        "chosen": b.chosen, "beams": [
                            {"text": decode_text(x.tokens), "tokens": x.tokens, "score": x.score,
                             "logprob": x.logprob, "node": x.node} for x in b.beams],
                        "tree": [{"id": n.id, "parent": n.parent, "step": n.step, "token": n.token,
                                  "text": text[n.token] if n.token is not None else None,
                                  "logprob": round(n.logprob, 6), "cumulative": round(n.cumulative, 6),
                                  "status": n.status, "score": n.score,
                                  "next": _dist(n.next, text) if n.next else None} for n in b.nodes]})
    return {"prompt_tokens": [{"token": i, "text": text[i]} for i in ids], "strategies": out,
            "ms": round(1000 * (time.perf_counter() - t0), 2)}
