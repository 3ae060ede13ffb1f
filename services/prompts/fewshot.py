"""The few-shot builder: a prompt that shows the model a few solved examples before the real input.

A model that has never been told the format of the answer guesses it; shown three solved
examples, it copies their format, their length and often their way of reasoning (in-context
learning: no weights change). Which examples matters too:

- `random` (with a seed, so the same seed gives the same prompt): a fair sample of the data;
- `similar`: the k examples closest to the input, by TF-IDF cosine similarity (words weighted by
  how rare they are across the examples), put in order of increasing similarity so the nearest sits
  right before the input, where it weighs most. An example identical to the input is left out: it
  would hand the model the answer.

The built prompt comes with its length in tokens, counted by a workspace model's own tokenizer
(the same `tokenizer.json` that `AutoTokenizer` and vLLM load), or in whitespace-separated words
when no model is named: a rough guide (a subword tokenizer makes more tokens than words).
"""

from __future__ import annotations

import functools
import json
import random
import re
from pathlib import Path

from training.errors import UserError
from training.workspace import Workspace

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_POOL = 20_000  # rows read from a dataset split: enough to find neighbours, bounded in memory and time


# ---------------------------------------------------------------------------- tokens


@functools.lru_cache(maxsize=8)
def _tokenizer(folder: str, stamp: float):
    """The model's tokenizer: `tokenizer.json` through the tokenizers library when it has one (what
    AutoTokenizer's fast tokenizer wraps, without importing transformers), else AutoTokenizer."""
    path = Path(folder)
    if (path / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        tok = Tokenizer.from_file(str(path / "tokenizer.json"))
        return lambda text: len(tok.encode(text, add_special_tokens=False).ids)
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(str(path))
    return lambda text: len(hf(text, add_special_tokens=False)["input_ids"])


def count_tokens(ws: Workspace, text: str, model: str | None = None) -> dict:
    """`{"tokens", "tokenizer"}`: the length of `text` with `model`'s tokenizer (a workspace model id),
    or in whitespace-separated words when `model` is None; `tokenizer` says which.

    >>> count_tokens(Workspace(Path("/nowhere")), "Classify this review: great!")
    {'tokens': 4, 'tokenizer': 'words (whitespace; name a model for its tokenizer)'}
    """
    if not model:
        return {"tokens": len(text.split()), "tokenizer": "words (whitespace; name a model for its tokenizer)"}
    folder = ws.model(model)
    if not _ID.fullmatch(model) or not folder.is_dir():
        raise UserError(f"model: no model {model!r} in the workspace (GET /api/models lists them)")
    if not any((folder / f).is_file() for f in ("tokenizer.json", "tokenizer_config.json")):
        raise UserError(f"model: {model!r} has no tokenizer files")
    stamp = max(p.stat().st_mtime for p in folder.iterdir() if p.name.startswith("tokenizer"))
    return {"tokens": _tokenizer(str(folder), stamp)(text), "tokenizer": f"{model} (its tokenizer, no special tokens)"}


# ---------------------------------------------------------------------------- datasets


def list_datasets(ws: Workspace) -> list[dict]:
    """The workspace's datasets that have JSONL splits: `{id, splits, fields}` (fields: of the first row)."""
    out = []
    if not ws.datasets.is_dir():
        return out
    for d in sorted(p for p in ws.datasets.iterdir() if p.is_dir() and _ID.fullmatch(p.name)):
        splits = sorted(p.stem for p in d.glob("*.jsonl") if p.stem != "samples")
        if not splits:
            continue
        with open(d / f"{splits[0]}.jsonl") as f:
            first = f.readline()
        try:
            fields = list(json.loads(first)) if first.strip() else []
        except ValueError:
            fields = []
        out.append({"id": d.name, "splits": splits, "fields": fields})
    return out


def read_split(ws: Workspace, dataset: str, split: str, limit: int = MAX_POOL, field: str = "dataset") -> list[dict]:
    """The first `limit` rows of `workspace/datasets/<dataset>/<split>.jsonl` (UserError naming
    `field` or `split` when either is not there)."""
    folder = ws.dataset(dataset)
    if not isinstance(dataset, str) or not _ID.fullmatch(dataset) or not folder.is_dir():
        raise UserError(f"{field}: no dataset {dataset!r} in the workspace")
    if not _ID.fullmatch(split or "") or not (folder / f"{split}.jsonl").is_file():
        have = sorted(p.stem for p in folder.glob("*.jsonl"))
        raise UserError(f"split: no split {split!r} in dataset {dataset!r} (it has: {', '.join(have) or 'none'})")
    rows = []
    with open(folder / f"{split}.jsonl") as f:
        for i, line in enumerate(f):
            if len(rows) >= limit:
                break
            if line.strip():
                try:
                    row = json.loads(line)
                except ValueError:
                    raise UserError(f"{field}: line {i + 1} of {dataset}/{split}.jsonl is not JSON") from None
                if isinstance(row, dict):
                    rows.append(row)
    return rows


# ---------------------------------------------------------------------------- picking


def _text(row: dict, fields: list[str]) -> str:
    return "\n".join(str(row[f]).strip() for f in fields if row.get(f) not in (None, ""))


def pick_random(n: int, k: int, seed: int) -> list[int]:
    """`k` of the indices 0..n-1, a seeded sample (the same seed, the same pick).

    >>> pick_random(10, 3, seed=0) == pick_random(10, 3, seed=0)
    True
    """
    return random.Random(seed).sample(range(n), min(k, n))


def pick_similar(texts: list[str], query: str, k: int) -> list[tuple[int, float]]:
    """The `k` texts nearest `query` by TF-IDF cosine similarity, `(index, similarity)`, nearest last.

    >>> [i for i, _ in pick_similar(["a cat sat", "stocks fell", "the cat ran"], "a cat", 2)]  # nearest: 0
    [2, 0]
    """
    from sklearn.feature_extraction.text import TfidfVectorizer

    # Every word counts, digits and one-letter words too (the default pattern drops those).
    vec = TfidfVectorizer(token_pattern=r"(?u)\b\w+\b", sublinear_tf=True)
    try:
        matrix = vec.fit_transform([*texts, query])
    except ValueError:  # no words at all
        return [(i, 0.0) for i in range(min(k, len(texts)))]
    sims = (matrix[:-1] @ matrix[-1].T).toarray().ravel()  # rows are L2-normalised: dot = cosine
    best = sorted(range(len(texts)), key=lambda i: (-sims[i], i))[:k]
    return [(i, float(sims[i])) for i in reversed(best)]


def build(ws: Workspace, *, query: str, examples: list[dict] | None = None, dataset: str | None = None,
          split: str = "train", input_field: str = "instruction", output_field: str = "output", k: int = 3,
          method: str = "random", seed: int = 0, instruction: str = "", input_label: str = "Input",
          output_label: str = "Output", model: str | None = None) -> dict:
    """A few-shot prompt for `query`, with `k` examples from `examples` (rows) or a workspace dataset.

    Args:
        query: the input the model is to answer.
        examples, dataset, split: where the examples come from: inline rows, or
            `workspace/datasets/<dataset>/<split>.jsonl` (exactly one of the two).
        input_field: the row field(s) that make an example's input ("instruction,input": both, joined).
        output_field: the row field that holds its answer.
        method: "random" (seeded by `seed`) or "similar" (TF-IDF cosine to `query`).
        instruction: text put before the examples (what the task is).
        model: a workspace model whose tokenizer counts the tokens (None: words).

    Returns:
        `{"prompt", "examples": [{"input", "output", "similarity"?}], "k", "pool", "method", "tokens", "tokenizer"}`.
    """
    if not query.strip():
        raise UserError("query: the input to answer is needed")
    if method not in ("random", "similar"):
        raise UserError(f"method: 'random' or 'similar', got {method!r}")
    if not 1 <= k <= 64:
        raise UserError(f"k: between 1 and 64 examples, got {k}")
    if (examples is None) == (dataset is None):
        raise UserError("examples: give either inline `examples` rows or a `dataset`, one of the two")
    rows = examples if examples is not None else read_split(ws, dataset, split)
    in_fields = [f.strip() for f in input_field.split(",") if f.strip()]
    if not in_fields:
        raise UserError("input_field: name the row field that holds an example's input")
    pool = [(_text(r, in_fields), str(r[output_field]).strip()) for r in rows
            if isinstance(r, dict) and _text(r, in_fields) and r.get(output_field) not in (None, "")]
    pool = [(i, o) for i, o in pool if i != query.strip()]  # never the answer to the question itself
    if not pool:
        seen = sorted({f for r in rows[:50] if isinstance(r, dict) for f in r})
        raise UserError(f"input_field: no example has both {input_field!r} and {output_field!r} "
                        f"(the rows' fields: {', '.join(seen) or 'none'})")
    if method == "random":
        chosen = [(i, None) for i in pick_random(len(pool), k, seed)]
    else:
        chosen = pick_similar([p[0] for p in pool], query, k)
    shots = [{"input": pool[i][0], "output": pool[i][1]} | ({"similarity": round(s, 4)} if s is not None else {})
             for i, s in chosen]
    parts = [instruction.strip()] if instruction.strip() else []
    parts += [f"{input_label}: {s['input']}\n{output_label}: {s['output']}" for s in shots]
    parts.append(f"{input_label}: {query.strip()}\n{output_label}:")
    prompt = "\n\n".join(parts)
    return {"prompt": prompt, "examples": shots, "k": len(shots), "pool": len(pool), "method": method,
            **count_tokens(ws, prompt, model)}
