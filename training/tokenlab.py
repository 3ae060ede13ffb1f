"""The tokenizer lab: look inside the tokenizers of the workspace, compare them, price a text.

Plain Python (no Ray, no web framework): the playground API calls these functions
and returns their plain, JSON-ready dicts as they are. Every mistake a user can make
(empty or oversized text, bytes that are not UTF-8, an unknown tokenizer, a
vocabulary too small) is a one-line `UserError` that names the field.

A *lab tokenizer* (`LabTokenizer`) wraps any tokenizer folder of the workspace:

* a Hugging Face folder (tokenizer.json): byte-level BPE, WordPiece or Unigram,
  trained by `tokenizers` (`training/hf_tokenizers.py`) or by our own trainer
  (`training/bpe`, which also writes bpe.json next to it);
* a folder with only our own format (bpe.json, `training.bpe.Tokenizer.save`).

Encoding always goes through the Rust `tokenizers.Tokenizer` (fast, with character
offsets). For byte-level BPE the lab also rebuilds our `training.bpe` tokenizer
from the merges (from bpe.json, or from tokenizer.json's `model.merges`, where a
merge's rank is its index): that gives each token's parents and rank (`inspect`)
and the step-by-step merges of a word (`replay`). It works for every BPE folder
the playground writes (same id layout as `training.bpe`); for a foreign BPE
(GPT-2's, say) the merges are left out and `replay` says why.

    >>> from training import tokenlab
    >>> from training.workspace import Workspace
    >>> ws = Workspace.resolve()
    >>> [t["name"] for t in tokenlab.list_tokenizers(ws)]  # doctest: +SKIP
    ['bpe4096-synthetic-cd20ca24', 'bpe4096s-synthetic-cd20ca24']
    >>> tok = tokenlab.open_tokenizer(ws, "bpe4096-synthetic-cd20ca24")  # doctest: +SKIP
    >>> tokenlab.inspect(tok, "Hello world")["tokens"][1]["merge"]  # doctest: +SKIP
"""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.errors import UserError
from training.uploads import check_text, check_texts
from training.workspace import Workspace

if TYPE_CHECKING:  # imported lazily: `tokenizers` and training.bpe cost ~0.2 s to import
    import tokenizers

    from training.bpe import Tokenizer as BPETokenizer

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

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_MODEL_NAMES = {"BPE": "bpe", "WordPiece": "wordpiece", "Unigram": "unigram", "WordLevel": "wordlevel"}
HF_FILE, BPE_FILE, META_FILE = "tokenizer.json", "bpe.json", "training_meta.json"


# ---- names -------------------------------------------------------------------


def check_new_name(ws: Workspace, name: Any, overwrite: bool = False) -> str:
    """A valid folder name for a new tokenizer, not taken unless `overwrite` (UserError naming `name`)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UserError(f"name: use letters, digits, '.', '_' and '-' (at most 128), got {name!r}")
    if ws.tokenizer(name).exists() and not overwrite:
        raise UserError(f"name: a tokenizer called {name!r} already exists; pick another name or overwrite it")
    return name


# ---- the lab tokenizer -----------------------------------------------------


class LabTokenizer:
    """One tokenizer, ready for the lab: a fast Hugging Face backend plus what it needs to explain tokens.

    Build one with `open_tokenizer` (by name, from the workspace), `open_folder` (any
    folder) or `LabTokenizer.from_bpe` (an in-memory `training.bpe` tokenizer).

    Attributes:
        name: the folder name (or a given name).
        path: the folder, or None for an in-memory tokenizer.
        backend: the `tokenizers.Tokenizer` that encodes (offsets are not trimmed:
            its post-processor is removed, so " world" covers its space).
        meta: training_meta.json ({} when there is none).
        model: "bpe", "wordpiece" or "unigram" (lowercase model type).
        trainer: "hf" (Hugging Face `tokenizers`) or "scratch" (`training.bpe`).
        vocab_size: number of token ids, special tokens included.
        byte_level: whether tokens are written with the GPT-2 byte-level characters ("Ġthe").
    """

    def __init__(self, name: str, backend: tokenizers.Tokenizer, *, path: Path | None = None,
                 meta: dict | None = None, bpe: BPETokenizer | None = None) -> None:
        """Wrap `backend`; see the class docstring. `bpe`, when given, must use the same ids."""
        self.name = name
        self.path = path
        self.meta = dict(meta or {})
        self.backend = backend
        self.backend.post_processor = None  # untrimmed offsets; no tokens are added when encoding
        spec = json.loads(backend.to_str())
        model = spec["model"]
        self.model: str = self.meta.get("model") or _MODEL_NAMES.get(model["type"], model["type"].lower())
        self.trainer: str = self.meta.get("trainer") or "hf"
        self.vocab_size: int = backend.get_vocab_size(with_added_tokens=True)
        self.byte_level = _mentions(spec.get("pre_tokenizer"), "ByteLevel") or _mentions(spec.get("decoder"), "ByteLevel")
        self.byte_fallback = bool(model.get("byte_fallback"))
        self.subword_prefix: str | None = model.get("continuing_subword_prefix") or None
        self.metaspace: str | None = _metaspace(spec.get("pre_tokenizer"))
        unk = model.get("unk_token")
        if unk is None and model.get("unk_id") is not None:
            unk = backend.id_to_token(model["unk_id"])
        self.unk_id: int | None = backend.token_to_id(unk) if unk else None
        self.special_ids: frozenset[int] = frozenset(
            i for i, added in backend.get_added_tokens_decoder().items() if added.special)
        self._spec = spec
        self._bpe = bpe
        self._bpe_checked = bpe is not None

    # ---- construction ----

    @classmethod
    def from_bpe(cls, tok: BPETokenizer, name: str = "scratch", *, path: Path | None = None,
                 meta: dict | None = None) -> LabTokenizer:
        """Wrap one of our `training.bpe` tokenizers (trained in memory or loaded from bpe.json)."""
        from training.bpe import to_hf_tokenizer

        meta = {"trainer": "scratch", "model": "bpe", **(meta or {})}
        return cls(name, to_hf_tokenizer(tok), path=path, meta=meta, bpe=tok)

    # ---- looking up tokens ----

    @property
    def bpe(self) -> BPETokenizer | None:
        """Our `training.bpe` tokenizer with the same ids (merges, replay), or None when there is none.

        Read from bpe.json when the folder has one, else rebuilt from tokenizer.json's
        merges; None for WordPiece/Unigram and for a BPE whose ids do not follow the
        playground's layout (special tokens 0..3, then the 256 bytes).
        """
        if not self._bpe_checked:
            self._bpe_checked = True
            self._bpe = self._load_bpe()
        return self._bpe

    def _load_bpe(self) -> BPETokenizer | None:
        from training.bpe import Tokenizer
        from training.bpe.base import FORMAT, FORMAT_VERSION

        if self.model != "bpe" or not self.byte_level:
            return None
        if self.path is not None and (self.path / BPE_FILE).is_file():
            try:
                tok = Tokenizer.load(self.path / BPE_FILE)
            except (OSError, ValueError, KeyError):
                return None  # unreadable: the lab still encodes with tokenizer.json
        else:
            pattern = _byte_level_pattern(self._spec.get("pre_tokenizer"))
            if pattern is False:
                return None  # a pre-tokenizer our tokenizers cannot express
            merges = [m.split(" ", 1) if isinstance(m, str) else m for m in self._spec["model"].get("merges", [])]
            data = {"format": FORMAT, "version": FORMAT_VERSION, "type": "RegexBPE" if pattern else "BasicBPE",
                    "pattern": pattern, "special_tokens": self._playground_specials(),
                    "merges": [[left, right, 0] for left, right in merges]}
            try:
                tok = Tokenizer.from_dict(data)
            except (KeyError, ValueError):
                return None  # a token outside the byte-level alphabet, other special tokens, ...
        # Only useful if every id means the same token in both.
        return tok if tok.get_vocab() == self.backend.get_vocab(with_added_tokens=True) else None

    @staticmethod
    def _playground_specials() -> dict[str, int]:
        from training.tokenizer import SPECIAL_TOKENS

        return {t: i for i, t in enumerate(SPECIAL_TOKENS)}

    def encode(self, text: str) -> tokenizers.Encoding:
        """Encode `text` as the tokenizer does in training (special token strings become their ids)."""
        return self.backend.encode(text, add_special_tokens=False)

    def encode_batch(self, texts: list[str]) -> list[tokenizers.Encoding]:
        """`encode` for many texts, in parallel (Rust)."""
        return self.backend.encode_batch(texts, add_special_tokens=False)

    def piece(self, token_id: int) -> str:
        """The token as written in the vocabulary ("Ġthe", "##ing", "▁the", "<0xE2>")."""
        return self.backend.id_to_token(token_id)

    def token_bytes(self, token_id: int, covered: str = "") -> bytes:
        """The bytes a token stands for.

        Args:
            token_id: the token.
            covered: the text the token covers in the input; the bytes of `[UNK]`,
                which stands for whatever text it replaced.
        """
        piece = self.piece(token_id)
        if token_id == self.unk_id:
            return covered.encode("utf-8")
        if token_id in self.special_ids:
            return piece.encode("utf-8")
        if self.byte_level:
            from training.bpe import from_byte_level

            try:
                return from_byte_level(piece)
            except KeyError:  # an added token written as plain text
                return piece.encode("utf-8")
        match = _BYTE_PIECE.fullmatch(piece)
        if match and self.byte_fallback:
            return bytes([int(match[1], 16)])
        if self.subword_prefix and piece.startswith(self.subword_prefix):
            piece = piece[len(self.subword_prefix):]
        if self.metaspace:
            piece = piece.replace(self.metaspace, " ")
        return piece.encode("utf-8")

    def is_fallback(self, token_id: int) -> bool:
        """Whether the token is a "byte fallback" one (see `BYTE_FALLBACK_DEFINITIONS`)."""
        if token_id == self.unk_id:
            return True
        if token_id in self.special_ids:
            return False
        piece = self.piece(token_id)
        if self.byte_fallback and _BYTE_PIECE.fullmatch(piece):
            return True
        if self.byte_level:
            data = self.token_bytes(token_id)
            return len(data) == 1 and data[0] >= 0x80
        return False

    def info(self) -> dict:
        """The registry entry: name, path, trainer, model, vocab_size, meta."""
        return {"name": self.name, "path": str(self.path) if self.path else None, "trainer": self.trainer,
                "model": self.model, "vocab_size": self.vocab_size, "meta": dict(self.meta)}

    def __repr__(self) -> str:
        return f"LabTokenizer({self.name!r}, {self.trainer}/{self.model}, vocab_size={self.vocab_size})"


def _mentions(spec: Any, type_name: str) -> bool:
    """Whether a tokenizer.json component (possibly a Sequence) contains a part of `type_name`."""
    if isinstance(spec, dict):
        return spec.get("type") == type_name or any(_mentions(v, type_name) for v in spec.values())
    if isinstance(spec, list):
        return any(_mentions(v, type_name) for v in spec)
    return False


def _metaspace(spec: Any) -> str | None:
    """The replacement character of a Metaspace pre-tokenizer ("▁"), if there is one."""
    if isinstance(spec, dict):
        if spec.get("type") == "Metaspace":
            return spec.get("replacement", "▁")
        for part in spec.get("pretokenizers", []) or []:
            found = _metaspace(part)
            if found:
                return found
    return None


def _byte_level_pattern(spec: Any) -> str | None | bool:
    """The `training.bpe` pattern of a byte-level pre-tokenizer: GPT-2's, None (no regex) or a Split regex.

    Returns False when our tokenizers cannot express the pre-tokenizer (a prefix
    space, several splits, ...).
    """
    from training.bpe import GPT2_PATTERN

    def plain_byte_level(part: Any) -> bool:
        return isinstance(part, dict) and part.get("type") == "ByteLevel" and not part.get("add_prefix_space")

    if plain_byte_level(spec):
        return GPT2_PATTERN if spec.get("use_regex", True) else None
    if isinstance(spec, dict) and spec.get("type") == "Sequence":
        parts = spec.get("pretokenizers") or []
        if (len(parts) == 2 and parts[0].get("type") == "Split" and parts[0].get("behavior") == "Isolated"
                and not parts[0].get("invert") and "Regex" in parts[0].get("pattern", {})
                and plain_byte_level(parts[1]) and not parts[1].get("use_regex", True)):
            return parts[0]["pattern"]["Regex"]
    return False


# ---- the registry ----------------------------------------------------------


def describe_folder(path: Path) -> dict | None:
    """The registry entry of one tokenizer folder, without loading it; None if it is not one.

    Returns:
        {"name", "path", "trainer", "model", "vocab_size", "files", "meta"}.
    """
    path = Path(path)
    has_hf, has_bpe = (path / HF_FILE).is_file(), (path / BPE_FILE).is_file()
    if not (has_hf or has_bpe):
        return None
    try:
        meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
    except (OSError, ValueError):
        meta = {}
    model, vocab_size = meta.get("model"), meta.get("actual_vocab_size")
    if meta and not model and has_hf:
        model = "bpe"  # written before training_meta.json recorded the model: always byte-level BPE
    if model is None or vocab_size is None:  # a foreign folder: ask the tokenizer itself
        try:
            tok = open_folder(path)
        except UserError:
            return None
        model, vocab_size = tok.model, tok.vocab_size
    trainer = meta.get("trainer") or ("hf" if has_hf else "scratch")
    return {"name": path.name, "path": str(path), "trainer": trainer, "model": model, "vocab_size": vocab_size,
            "files": sorted(f for f in (HF_FILE, BPE_FILE) if (path / f).is_file()), "meta": meta}


def list_tokenizers(ws: Workspace) -> list[dict]:
    """Every tokenizer folder in `ws.tokenizers`, by name (see `describe_folder` for the fields)."""
    if not ws.tokenizers.is_dir():
        return []
    entries = (describe_folder(p) for p in sorted(ws.tokenizers.iterdir())
               if p.is_dir() and not p.name.startswith("."))  # hidden: half-written temp folders
    return [e for e in entries if e is not None]


def open_tokenizer(ws: Workspace, name: str) -> LabTokenizer:
    """The workspace tokenizer called `name` (a folder of `ws.tokenizers`).

    Raises:
        UserError: "unknown tokenizer ..." when there is no such tokenizer folder.
    """
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UserError(f"unknown tokenizer {name!r}: expected the name of a folder in {ws.tokenizers}")
    path = ws.tokenizer(name)
    if not ((path / HF_FILE).is_file() or (path / BPE_FILE).is_file()):
        names = [e["name"] for e in list_tokenizers(ws)]
        known = ", ".join(names[:6]) + (", ..." if len(names) > 6 else "") if names else "none yet"
        raise UserError(f"unknown tokenizer {name!r} (available: {known})")
    return open_folder(path)


def open_folder(path: Path) -> LabTokenizer:
    """A lab tokenizer for any folder with tokenizer.json and/or bpe.json (cached while unchanged).

    Raises:
        UserError: if the folder holds neither file or they cannot be read.
    """
    path = Path(path).expanduser().resolve()
    stamp = tuple((path / f).stat().st_mtime_ns if (path / f).is_file() else 0 for f in (HF_FILE, BPE_FILE, META_FILE))
    if stamp[:2] == (0, 0):
        raise UserError(f"no tokenizer in {path} (expected tokenizer.json or bpe.json)")
    return _open_folder_cached(str(path), stamp)


@functools.lru_cache(maxsize=16)
def _open_folder_cached(path_str: str, stamp: tuple[int, ...]) -> LabTokenizer:
    """Load a folder; `stamp` (the files' mtimes) is part of the key, so a retrained folder is reloaded."""
    from tokenizers import Tokenizer as HFTokenizer

    from training.bpe import Tokenizer

    path = Path(path_str)
    backend = ours = None
    try:
        meta = json.loads((path / META_FILE).read_text()) if (path / META_FILE).is_file() else {}
        if (path / HF_FILE).is_file():
            backend = HFTokenizer.from_file(str(path / HF_FILE))
        else:
            ours = Tokenizer.load(path / BPE_FILE)
    except Exception as e:  # noqa: BLE001 - OSError, bad JSON, or the plain Exception of the Rust loader
        first_line = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise UserError(f"cannot read the tokenizer in {path}: {first_line}") from None
    if backend is None:
        return LabTokenizer.from_bpe(ours, path.name, path=path, meta=meta)
    return LabTokenizer(path.name, backend, path=path, meta=meta)


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
    from training.hf_tokenizers import MODELS, check_vocab_size, train_hf_tokenizer

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
        from training.bpe import train_bpe_folder

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
