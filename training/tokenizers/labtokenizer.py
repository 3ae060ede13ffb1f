"""Lab tokenizers: the tokenizer folders of the workspace, wrapped for the tokenizer lab (`training.tokenizers.tokenlab`).

A *lab tokenizer* (`LabTokenizer`) wraps any tokenizer folder of the workspace:

* a Hugging Face folder (tokenizer.json): byte-level BPE, WordPiece or Unigram,
  trained by `tokenizers` (`training/tokenizers/hf_tokenizers.py`) or by our own trainer
  (`training/tokenizers/bpe`, which also writes bpe.json next to it);
* a folder with only our own format (bpe.json, `training.tokenizers.bpe.Tokenizer.save`).

Encoding always goes through the Rust `tokenizers.Tokenizer` (fast, with character
offsets). For byte-level BPE the lab also rebuilds our `training.tokenizers.bpe` tokenizer
from the merges (from bpe.json, or from tokenizer.json's `model.merges`, where a
merge's rank is its index): that gives each token's parents and rank (`inspect`)
and the step-by-step merges of a word (`replay`). It works for every BPE folder
the playground writes (same id layout as `training.tokenizers.bpe`); for a foreign BPE
(GPT-2's, say) the merges are left out and `replay` says why.

The registry (`list_tokenizers`, `describe_folder`, `open_tokenizer`, `open_folder`)
finds and opens them; `training.tokenizers.tokenlab` re-exports all of it.
"""

from __future__ import annotations

import functools
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.errors import UserError
from training.workspace import Workspace

if TYPE_CHECKING:  # imported lazily: `tokenizers` and training.tokenizers.bpe cost ~0.2 s to import
    import tokenizers

    from training.tokenizers.bpe import Tokenizer as BPETokenizer

# ---- files and names -------------------------------------------------------

_BYTE_PIECE = re.compile(r"<0x([0-9A-Fa-f]{2})>")
TOKENIZER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")  # a tokenizer folder's name
_MODEL_NAMES = {"BPE": "bpe", "WordPiece": "wordpiece", "Unigram": "unigram", "WordLevel": "wordlevel"}
HF_FILE, BPE_FILE, META_FILE = "tokenizer.json", "bpe.json", "training_meta.json"


# ---- the lab tokenizer -----------------------------------------------------


class LabTokenizer:
    """One tokenizer, ready for the lab: a fast Hugging Face backend plus what it needs to explain tokens.

    Build one with `open_tokenizer` (by name, from the workspace), `open_folder` (any
    folder) or `LabTokenizer.from_bpe` (an in-memory `training.tokenizers.bpe` tokenizer).

    Attributes:
        name: the folder name (or a given name).
        path: the folder, or None for an in-memory tokenizer.
        backend: the `tokenizers.Tokenizer` that encodes (offsets are not trimmed:
            its post-processor is removed, so " world" covers its space).
        meta: training_meta.json ({} when there is none).
        model: "bpe", "wordpiece" or "unigram" (lowercase model type).
        trainer: "hf" (Hugging Face `tokenizers`) or "scratch" (`training.tokenizers.bpe`).
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
        """Wrap one of our `training.tokenizers.bpe` tokenizers (trained in memory or loaded from bpe.json)."""
        from training.tokenizers.bpe import to_hf_tokenizer

        meta = {"trainer": "scratch", "model": "bpe", **(meta or {})}
        return cls(name, to_hf_tokenizer(tok), path=path, meta=meta, bpe=tok)

    # ---- looking up tokens ----

    @property
    def bpe(self) -> BPETokenizer | None:
        """Our `training.tokenizers.bpe` tokenizer with the same ids (merges, replay), or None when there is none.

        Read from bpe.json when the folder has one, else rebuilt from tokenizer.json's
        merges; None for WordPiece/Unigram and for a BPE whose ids do not follow the
        playground's layout (special tokens 0..3, then the 256 bytes).
        """
        if not self._bpe_checked:
            self._bpe_checked = True
            self._bpe = self._load_bpe()
        return self._bpe

    def _load_bpe(self) -> BPETokenizer | None:
        from training.tokenizers.bpe import Tokenizer
        from training.tokenizers.bpe.base import FORMAT, FORMAT_VERSION

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
        from training.tokenizers.tokenizer import SPECIAL_TOKENS

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
            from training.tokenizers.bpe import from_byte_level

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
        """Whether the token is a "byte fallback" one (see `tokenlab.BYTE_FALLBACK_DEFINITIONS`)."""
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
    """The `training.tokenizers.bpe` pattern of a byte-level pre-tokenizer: GPT-2's, None (no regex) or a Split regex.

    Returns False when our tokenizers cannot express the pre-tokenizer (a prefix
    space, several splits, ...).
    """
    from training.tokenizers.bpe import GPT2_PATTERN

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
    if not isinstance(name, str) or not TOKENIZER_NAME.fullmatch(name) or ".." in name:
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

    from training.tokenizers.bpe import Tokenizer

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


__all__ = [
    "BPE_FILE",
    "HF_FILE",
    "META_FILE",
    "LabTokenizer",
    "describe_folder",
    "list_tokenizers",
    "open_folder",
    "open_tokenizer",
]
