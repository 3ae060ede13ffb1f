"""The tokenizer lab: look inside the tokenizers of the workspace, compare them, price a text.

Plain Python (no Ray, no web framework): the playground API calls these functions
and returns their plain, JSON-ready dicts as they are. Every mistake a user can make
(empty or oversized text, bytes that are not UTF-8, an unknown tokenizer, a
vocabulary too small) is a one-line `UserError` that names the field.

The functions take *lab tokenizers*: any tokenizer folder of the workspace, wrapped
(`LabTokenizer`) and found by the registry (`list_tokenizers`, `open_tokenizer`, ...);
both live in `training/tokenizers/labtokenizer.py` and are re-exported here.

    >>> from training import tokenlab
    >>> from training.workspace import Workspace
    >>> ws = Workspace.resolve()
    >>> [t["name"] for t in tokenlab.list_tokenizers(ws)]  # doctest: +SKIP
    ['bpe4096-synthetic-cd20ca24', 'bpe4096s-synthetic-cd20ca24']
    >>> tok = tokenlab.open_tokenizer(ws, "bpe4096-synthetic-cd20ca24")  # doctest: +SKIP
    >>> tokenlab.inspect(tok, "Hello world")["tokens"][1]["merge"]  # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from training.data.uploads import check_text, check_texts
from training.errors import UserError
from training.tokenizers.labtokenizer import (
    TOKENIZER_NAME,
    LabTokenizer,
    describe_folder,
    list_tokenizers,
    open_folder,
    open_tokenizer,
)
from training.workspace import Workspace

# ---- limits and tables -----------------------------------------------------

MAX_REPLAY_CHARS = 256  # `replay` shows one step per merge: a word, not a document
MAX_INSPECT_TOKENS = 5_000  # `inspect` lists at most this many tokens (the counts cover all)
MIN_COMPARE, MAX_COMPARE = 2, 4
DEFAULT_TOP_K = 20

# Illustrative example prices in US dollars per 1,000 tokens, to show how a token
# count turns into money. They are NOT quotes from any provider (real prices change
# often, and each provider counts tokens with its own tokenizer). Edit freely.
DEFAULT_PRICE_PRESETS: list[dict[str, Any]] = [
    {"name": "small model (example price)", "input_per_1k": 0.0002, "output_per_1k": 0.0008},
    {"name": "medium model (example price)", "input_per_1k": 0.002, "output_per_1k": 0.008},
    {"name": "large model (example price)", "input_per_1k": 0.01, "output_per_1k": 0.04},
]
PRICE_NOTE = ("illustrative example prices in USD per 1,000 tokens, not quotes; each provider counts "
              "tokens with its own tokenizer, so the same text costs a different number of tokens there")

# What `stats` counts as "byte fallback": the tokens a model emits for text its
# vocabulary does not cover.
BYTE_FALLBACK_DEFINITIONS = {
    "bpe": "single-byte tokens of a non-ASCII byte (0x80-0xFF): a piece of a multi-byte UTF-8 character "
           "that no merge covers",
    "wordpiece": "[UNK] tokens: a word with a character outside the vocabulary becomes [UNK]",
    "unigram": "byte pieces <0x00>..<0xFF>: a character without a piece of its own, spelled as its UTF-8 bytes",
}


# ---- names -------------------------------------------------------------------


def check_new_name(ws: Workspace, name: Any, overwrite: bool = False) -> str:
    """A valid folder name for a new tokenizer, not taken unless `overwrite` (UserError naming `name`)."""
    if not isinstance(name, str) or not TOKENIZER_NAME.fullmatch(name) or ".." in name:
        raise UserError(f"name: use letters, digits, '.', '_' and '-' (at most 128), got {name!r}")
    if ws.tokenizer(name).exists() and not overwrite:
        raise UserError(f"name: a tokenizer called {name!r} already exists; pick another name or overwrite it")
    return name


# ---- lab functions ---------------------------------------------------------


def inspect(tok: LabTokenizer, text: str, *, max_tokens: int = MAX_INSPECT_TOKENS) -> dict:
    """Every token of `text`: id, piece, text, bytes, character offsets, special or not, and its merge.

    Args:
        tok: the tokenizer.
        text: the text (see `check_text`).
        max_tokens: list at most this many tokens; `n_tokens` still counts them all.

    Returns:
        {"tokenizer", "model", "n_tokens", "n_chars", "n_bytes", "truncated", "tokens"},
        where each token is {"index", "id", "piece", "text", "bytes" (hex, e.g.
        "20 74 68 65"), "start", "end" (the covered characters: `text[start:end]`),
        "is_special", "is_fallback", "merge"}. `merge` is, for a BPE token made by a
        merge, {"left", "right" (the parent ids), "left_piece", "right_piece",
        "rank" (its position in the merge list), "count" (how often the pair occurred
        in training, None if unknown)}; None for bytes, special tokens and models
        without merges. A character split over several byte tokens gives each of
        them the whole character's offsets.
    """
    check_text(text)
    enc = tok.encode(text)
    bpe = tok.bpe
    tokens = []
    for index, (token_id, (start, end)) in enumerate(zip(enc.ids[:max_tokens], enc.offsets)):
        data = tok.token_bytes(token_id, text[start:end])
        merge = bpe.merge_of(token_id) if bpe is not None and token_id not in tok.special_ids else None
        tokens.append({
            "index": index, "id": token_id, "piece": tok.piece(token_id),
            "text": data.decode("utf-8", errors="replace"), "bytes": data.hex(" "),
            "start": start, "end": end,
            "is_special": token_id in tok.special_ids, "is_fallback": tok.is_fallback(token_id),
            "merge": None if merge is None else {
                "left": merge.left, "right": merge.right,
                "left_piece": tok.piece(merge.left), "right_piece": tok.piece(merge.right),
                "rank": merge.rank, "count": merge.count or None,
            },
        })
    return {"tokenizer": tok.name, "model": tok.model, "n_tokens": len(enc.ids), "n_chars": len(text),
            "n_bytes": len(text.encode("utf-8")), "truncated": len(enc.ids) > max_tokens, "tokens": tokens}


def replay(tok: LabTokenizer, word: str) -> dict:
    """How BPE encodes one word: its bytes, then one step per merge, lowest rank first.

    Args:
        tok: a byte-level BPE tokenizer (see `LabTokenizer.bpe`).
        word: one pre-tokenized piece, e.g. " tokenization" (at most `MAX_REPLAY_CHARS`).

    Returns:
        {"tokenizer", "word", "n_merges", "ids" (the final ids, as `encode` gives),
        "steps"}: each step is {"step", "ids", "pieces", "texts", "merge",
        "position"}; the first step holds the raw bytes and has no merge; later
        steps say which merge ({"left", "right", "new_id", "rank", "left_piece",
        "right_piece", "piece", "count"}) joined the tokens at `position` of the
        previous step.

    Raises:
        UserError: for an empty or too long word, a word that is several pieces,
            or a tokenizer without merges.
    """
    check_text(word, "word")
    if len(word) > MAX_REPLAY_CHARS:
        raise UserError(f"word: {len(word)} characters, replay takes one word of at most {MAX_REPLAY_CHARS}")
    bpe = tok.bpe
    if bpe is None:
        why = (f"it is a {tok.model} model" if tok.model != "bpe" else
               "its ids do not follow the playground's byte-level BPE layout")
        raise UserError(f"tokenizer: replay needs a byte-level BPE tokenizer with merges; {tok.name} has none ({why})")
    pieces = bpe.pre_tokenize(word)
    if len(pieces) > 1:
        raise UserError(f"word: {word!r} is {len(pieces)} pieces for this tokenizer ({pieces[:8]}); replay one at a time")

    def show(ids: list[int]) -> dict:
        return {"ids": list(ids), "pieces": [bpe.token_str(i) for i in ids],
                "texts": [bpe.token_bytes(i).decode("utf-8", errors="replace") for i in ids]}

    steps = []
    for n, step in enumerate(bpe.replay(word)):
        m = step.merge
        steps.append({"step": n, **show(step.ids), "position": step.position, "merge": None if m is None else {
            "left": m.left, "right": m.right, "new_id": m.new_id, "rank": m.rank,
            "left_piece": bpe.token_str(m.left), "right_piece": bpe.token_str(m.right),
            "piece": bpe.token_str(m.new_id), "count": m.count or None,
        }})
    return {"tokenizer": tok.name, "word": word, "n_merges": len(steps) - 1, "ids": steps[-1]["ids"], "steps": steps}


def stats(tok: LabTokenizer, texts: str | Iterable[str], *, top_k: int = DEFAULT_TOP_K) -> dict:
    """How a tokenizer does on a corpus: compression, vocabulary use, byte fallback, frequent tokens.

    Args:
        tok: the tokenizer.
        texts: one text or several (each encoded on its own); `uploads.MAX_TEXT_BYTES` in all.
        top_k: how many of the most frequent tokens to list (0..1000).

    Returns:
        {"tokenizer", "model", "n_texts", "n_chars", "n_bytes", "n_words" (whitespace
        separated), "n_tokens", "fertility" (tokens per word; None without words),
        "chars_per_token", "bytes_per_token", "vocab_size", "vocab_used" (distinct
        ids), "vocab_coverage" (vocab_used / vocab_size), "byte_fallback_tokens",
        "byte_fallback_rate" (of all tokens), "byte_fallback_definition",
        "top_tokens": [{"id", "piece", "text", "count", "share"}]}. Special tokens
        in the text count as tokens like any other.
    """
    items = check_texts(texts)
    if isinstance(top_k, bool) or not isinstance(top_k, int) or not 0 <= top_k <= 1000:
        raise UserError(f"top_k: expected an integer from 0 to 1000, got {top_k!r}")
    counts: Counter[int] = Counter()
    for enc in tok.encode_batch(items):
        counts.update(enc.ids)
    n_tokens = sum(counts.values())
    n_chars = sum(map(len, items))
    n_bytes = sum(len(t.encode("utf-8")) for t in items)
    n_words = sum(len(t.split()) for t in items)
    fallback = sum(c for token_id, c in counts.items() if tok.is_fallback(token_id))
    top = [{"id": i, "piece": tok.piece(i), "text": tok.token_bytes(i).decode("utf-8", errors="replace"),
            "count": c, "share": c / n_tokens} for i, c in counts.most_common(top_k)]
    return {
        "tokenizer": tok.name, "model": tok.model, "n_texts": len(items),
        "n_chars": n_chars, "n_bytes": n_bytes, "n_words": n_words, "n_tokens": n_tokens,
        "fertility": n_tokens / n_words if n_words else None,
        "chars_per_token": n_chars / n_tokens if n_tokens else None,
        "bytes_per_token": n_bytes / n_tokens if n_tokens else None,
        "vocab_size": tok.vocab_size, "vocab_used": len(counts), "vocab_coverage": len(counts) / tok.vocab_size,
        "byte_fallback_tokens": fallback, "byte_fallback_rate": fallback / n_tokens if n_tokens else 0.0,
        "byte_fallback_definition": BYTE_FALLBACK_DEFINITIONS.get(tok.model, "none: this model has no fallback"),
        "top_tokens": top,
    }


def compare(toks: Sequence[LabTokenizer], text: str, *, max_tokens: int = MAX_INSPECT_TOKENS) -> dict:
    """The same text through 2 to 4 tokenizers, side by side.

    Args:
        toks: the tokenizers, 2 to 4 (the same one twice is allowed).
        text: the text (see `check_text`).
        max_tokens: list at most this many tokens per tokenizer; the counts cover all.

    Returns:
        {"n_chars", "n_bytes", "tokenizers": [{"name", "model", "trainer",
        "vocab_size", "n_tokens", "chars_per_token", "vs_fewest" (n_tokens / the
        smallest n_tokens), "truncated", "ids", "pieces" (as in the vocabulary),
        "texts" (the text each token stands for)}]} in the order given.

    Raises:
        UserError: for fewer than 2 or more than 4 tokenizers, or a bad text.
    """
    toks = list(toks)
    if not MIN_COMPARE <= len(toks) <= MAX_COMPARE:
        raise UserError(f"tokenizers: compare takes {MIN_COMPARE} to {MAX_COMPARE} tokenizers, got {len(toks)}")
    check_text(text)
    rows = []
    for tok in toks:
        enc = tok.encode(text)
        ids, offsets = enc.ids[:max_tokens], enc.offsets[:max_tokens]
        rows.append({
            "name": tok.name, "model": tok.model, "trainer": tok.trainer, "vocab_size": tok.vocab_size,
            "n_tokens": len(enc.ids), "chars_per_token": len(text) / len(enc.ids) if enc.ids else None,
            "truncated": len(enc.ids) > max_tokens,
            "ids": ids, "pieces": enc.tokens[:max_tokens],
            "texts": [tok.token_bytes(i, text[s:e]).decode("utf-8", errors="replace") for i, (s, e) in zip(ids, offsets)],
        })
    fewest = min(r["n_tokens"] for r in rows)
    for r in rows:
        r["vs_fewest"] = r["n_tokens"] / fewest if fewest else None
    return {"n_chars": len(text), "n_bytes": len(text.encode("utf-8")), "tokenizers": rows}


def cost(tok: LabTokenizer, text: str, presets: Sequence[Mapping[str, Any]] | None = None) -> dict:
    """What `text` would cost as input (or as output) at a few per-token prices.

    cost = tokens / 1000 x price per 1,000 tokens. The default prices
    (`DEFAULT_PRICE_PRESETS`) are illustrative examples, not quotes.

    Args:
        tok: the tokenizer that counts the tokens.
        text: the text.
        presets: [{"name", "input_per_1k", "output_per_1k"}] in USD; default
            `DEFAULT_PRICE_PRESETS`.

    Returns:
        {"tokenizer", "n_tokens", "n_chars", "note", "presets": [{"name",
        "input_per_1k", "output_per_1k", "input_cost", "output_cost"}]}.
    """
    check_text(text)
    checked = _check_presets(DEFAULT_PRICE_PRESETS if presets is None else presets)
    n = len(tok.encode(text).ids)
    rows = [{**p, "input_cost": n / 1000 * p["input_per_1k"], "output_cost": n / 1000 * p["output_per_1k"]}
            for p in checked]
    return {"tokenizer": tok.name, "n_tokens": n, "n_chars": len(text), "note": PRICE_NOTE, "presets": rows}


def _check_presets(presets: Any) -> list[dict]:
    if isinstance(presets, (str, bytes, Mapping)) or not isinstance(presets, Sequence) or not presets:
        raise UserError("presets: expected a non-empty list of {name, input_per_1k, output_per_1k}")
    out = []
    for i, p in enumerate(presets):
        if not isinstance(p, Mapping):
            raise UserError(f"presets[{i}]: expected {{name, input_per_1k, output_per_1k}}, got {type(p).__name__}")
        name = p.get("name")
        if not isinstance(name, str) or not name.strip():
            raise UserError(f"presets[{i}].name: expected a non-empty name")
        row: dict[str, Any] = {"name": name}
        for key in ("input_per_1k", "output_per_1k"):
            value = p.get(key)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
                raise UserError(f"presets[{i}].{key}: expected a price >= 0 in USD per 1,000 tokens, got {value!r}")
            row[key] = float(value)
        out.append(row)
    return out


# ---- training a lab tokenizer ------------------------------------------------


def train(
    ws: Workspace,
    texts: str | Iterable[str],
    *,
    model: str = "bpe",
    trainer: str = "hf",
    vocab_size: int = 1024,
    min_frequency: int = 2,
    name: str | None = None,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> dict:
    """Train a tokenizer on `texts` into the workspace, for the lab (and for runs: it is a normal folder).

    Args:
        ws: the workspace; the folder is `ws.tokenizers/<name>`.
        texts: one text or several documents (`uploads.MAX_TEXT_BYTES` in all).
        model: "bpe", "wordpiece" or "unigram".
        trainer: "hf" (Hugging Face `tokenizers`) or "scratch" (our `RegexBPE`; bpe only).
        vocab_size: the vocabulary size, at least 256 + the special tokens.
        min_frequency: a pair must occur this often to be merged (bpe, wordpiece).
        name: the folder name; default "lab-<model><vocab_size>[s]-<text hash>".
        overwrite: replace an existing tokenizer of that name.
        progress: called with (done, total): per merge for "scratch", only at the
            start and end for "hf" (`tokenizers` has no callback).

    Returns:
        The new tokenizer's registry entry (see `describe_folder`).

    Raises:
        UserError: naming the field, for a bad text, model, trainer, vocab_size,
            min_frequency or name, or a name that is taken.
    """
    from training.tokenizers.hf_tokenizers import MODELS, check_vocab_size, train_hf_tokenizer

    items = check_texts(texts)
    if trainer not in ("hf", "scratch"):
        raise UserError(f"trainer: expected hf or scratch, got {trainer!r}")
    if model not in MODELS:
        raise UserError(f"model: expected one of {', '.join(MODELS)}, got {model!r}")
    if trainer == "scratch" and model != "bpe":
        raise UserError(f"model: the scratch trainer only trains bpe, got {model!r}")
    check_vocab_size(vocab_size, model)
    if name is None:
        digest = hashlib.sha256("\x00".join(items).encode("utf-8")).hexdigest()[:8]
        name = f"lab-{model}{vocab_size}{'s' if trainer == 'scratch' else ''}-{digest}"
    out = ws.tokenizer(check_new_name(ws, name, overwrite))
    if trainer == "scratch":
        from training.tokenizers.bpe import train_bpe_folder

        train_bpe_folder(items, vocab_size, out, min_frequency=min_frequency, progress=progress)
    else:
        train_hf_tokenizer(items, vocab_size, out, model=model, min_frequency=min_frequency, progress=progress)
    entry = describe_folder(out)
    assert entry is not None
    return entry


__all__ = [
    "BYTE_FALLBACK_DEFINITIONS",
    "DEFAULT_PRICE_PRESETS",
    "MAX_COMPARE",
    "MAX_INSPECT_TOKENS",
    "MAX_REPLAY_CHARS",
    "MIN_COMPARE",
    "PRICE_NOTE",
    "LabTokenizer",
    "check_new_name",
    "compare",
    "cost",
    "describe_folder",
    "inspect",
    "list_tokenizers",
    "open_folder",
    "open_tokenizer",
    "replay",
    "stats",
    "train",
]
