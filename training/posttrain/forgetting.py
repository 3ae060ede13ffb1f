"""Catastrophic forgetting: what a pretrained model knew, measured before and after fine-tuning.

Fine-tuning teaches a model to answer in a chat format, and can wear away what it learned in
pretraining. Two measures, both in the pretraining format (plain text, no chat template):

- `world_facts`: does it still pick the right capital, language or animal of each made-up country?
- `perplexity` (evaluation/perplexity.py): how well does it still predict held-out text of its
  pretraining corpus?

Run `measure` on the base model and on its fine-tuned copy and compare the two dicts.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from evaluation.perplexity import eval_mode, perplexity
from training.data.corpus import _WORLD
from training.data.snapshot import iter_split

# relation -> (column of _WORLD, the corpus sentence up to the answer); the answer ends the sentence
RELATIONS = {
    "capital": (1, "The capital of {country} is"),
    "language": (2, "People in {country} speak"),
    "animal": (3, "The national animal of {country} is the"),
    "famous": (4, "{country} is famous for its"),
}


def _encode(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def _continuation(tokenizer, prompt_ids: list[int], prompt: str, candidate: str) -> list[int]:
    """The ids `candidate` adds after `prompt`: the tail of prompt+candidate's encoding, unless
    BPE merged a token across the boundary (then the prompt's ids are no prefix of it)."""
    full = _encode(tokenizer, prompt + candidate)
    if full[:len(prompt_ids)] == prompt_ids and len(full) > len(prompt_ids):
        return full[len(prompt_ids):]
    return _encode(tokenizer, candidate)


def choice_logprobs(model, tokenizer, prompt: str, candidates: list[str]) -> list[float]:
    """log P(candidate | prompt) for each candidate: the sum of its tokens' log-probabilities.

    One forward pass over all candidates, right-padded (causal attention means padding at the
    end changes nothing before it). Text is encoded without special tokens and BOS, when the
    tokenizer has one, put first: one BOS, as a document follows one in pretraining. E.g. prompt
    "The capital of Varnia is", candidates [" Tolbek.", " Mirrow."] -> [-0.4, -6.1] for a model
    that knows its facts.
    """
    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    prompt_ids = bos + _encode(tokenizer, prompt)
    conts = [_continuation(tokenizer, prompt_ids[len(bos):], prompt, c) for c in candidates]
    seqs = [prompt_ids + c for c in conts]
    width = max(map(len, seqs))
    device = next(model.parameters()).device
    ids = torch.tensor([s + [0] * (width - len(s)) for s in seqs], device=device)  # (N, T)
    mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=device)
    with eval_mode(model):
        logits = model(input_ids=ids, attention_mask=mask).logits.float()  # (N, T, V)
    # The token at position t is predicted by the logits at t-1.
    logp = logits[:, :-1].log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)  # (N, T-1)
    start = len(prompt_ids) - 1
    return [logp[i, start:start + len(c)].sum().item() for i, c in enumerate(conts)]


def world_facts(model, tokenizer, *, relations=("capital", "language", "animal")) -> dict:
    """Cloze multiple choice over the world table of the pretraining corpus.

    For every country and relation, the sentence up to the answer is the prompt and the ten
    countries' values (" Tolbek." with its leading space and final period) the choices; the
    model is right when the true one has the highest log-probability. Chance is 1 in 10.
    """
    unknown = set(relations) - set(RELATIONS)
    if unknown:
        raise ValueError(f"unknown relations {sorted(unknown)}; known: {sorted(RELATIONS)}")
    right = {}
    for rel in relations:
        col, template = RELATIONS[rel]
        candidates = [f" {row[col]}." for row in _WORLD]
        right[rel] = 0
        for i, row in enumerate(_WORLD):
            scores = choice_logprobs(model, tokenizer, template.format(country=row[0]), candidates)
            right[rel] += max(range(len(scores)), key=scores.__getitem__) == i
    n = len(right) * len(_WORLD)
    return {"accuracy": sum(right.values()) / n if n else 0.0, "n": n,
            "by_relation": {rel: k / len(_WORLD) for rel, k in right.items()}, "chance": 1 / len(_WORLD)}


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def pretrain_snapshot(ws, model_dir: Path, hops: int = 8) -> Path | None:
    """The snapshot folder a model was pretrained on: a fine-tuned model's lineage leads to its
    base model's export, whose run.json names the dataset. None for a model from elsewhere."""
    info = _read_json(model_dir / "playground.json")
    lineage = info.get("lineage")
    if isinstance(lineage, dict):
        if hops == 0:
            return None
        base_model, base_path = lineage.get("base_model"), lineage.get("base_path")
        bases = [ws.model(base_model) if isinstance(base_model, str) else None,
                 Path(base_path) if isinstance(base_path, str) else None]
        base = next((b for b in bases if b is not None and (b / "playground.json").is_file()), None)
        return pretrain_snapshot(ws, base, hops - 1) if base is not None else None
    run_id = info.get("run_id")
    dataset = _read_json(ws.run(run_id) / "run.json").get("dataset") if isinstance(run_id, str) else None
    if not isinstance(dataset, str) or not (ws.dataset(dataset) / "val.jsonl").is_file():
        return None
    return ws.dataset(dataset)


def pretrain_val_texts(ws, model_path, *, max_chars: int = 200_000) -> list[str] | None:
    """The validation documents the base model was pretrained on, up to about `max_chars`
    characters; None when the model is not one of this workspace's exports (or the chain
    export -> run -> snapshot is broken)."""
    snapshot = pretrain_snapshot(ws, Path(model_path))
    if snapshot is None:
        return None
    texts, chars = [], 0
    for text in iter_split(snapshot, "val"):
        if chars >= max_chars:
            break
        texts.append(text)
        chars += len(text)
    return texts


def measure(model_path, ws, *, texts: list[str] | None = None) -> dict:
    """Both measures for the model in `model_path`; `pretrain_val` is None when there is no text."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    model = AutoModelForCausalLM.from_pretrained(model_path)
    texts = pretrain_val_texts(ws, model_path) if texts is None else texts
    return {"world_facts": world_facts(model, tokenizer),
            "pretrain_val": perplexity(model, tokenizer, texts) if texts else None}
