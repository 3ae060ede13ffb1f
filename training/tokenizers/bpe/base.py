"""Shared pieces of the from-scratch byte-level BPE tokenizers.

A BPE tokenizer is just three tables:

* the *vocabulary*: token id -> the bytes it stands for;
* the *merges*, in the order they were learned ("rank"): pair of ids -> new id;
* the *special tokens*: strings such as "<|endoftext|>" that are never split.

Encoding a piece of text starts from its UTF-8 bytes (one token each) and applies
merges, always the lowest-rank (earliest learned) one first, until none applies.
Decoding concatenates the bytes of the tokens. Both are implemented here once;
the subclasses (`BasicBPE`, `RegexBPE`) only differ in how they *train* and in
whether the text is first cut into words ("pre-tokenization").

Token ids follow Hugging Face `tokenizers` exactly, so a model trained with either
tokenizer sees the same ids:

    0..3      the special tokens, in `SPECIAL_TOKENS` order
    4..259    the 256 bytes, ordered by the code point of their GPT-2 byte-level
              character (see `bytes_unicode.ALPHABET`), *not* by byte value
    260...    one id per learned token, in the order the merges made them
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import regex

from training.atomic import atomic_dir
from training.tokenizers.bpe.bytes_unicode import (
    ALPHABET,
    UNICODE_TO_BYTE,
    from_byte_level,
    to_byte_level,
)
from training.tokenizers.bpe.pairs import (
    Pair,
    best_pair,
    get_pair_counts,
    merge_pair,
    split_isolated,
)
from training.tokenizers.tokenizer import SPECIAL_TOKENS

# progress(merges_done, merges_total); see `RegexBPE.train`.
ProgressFn = Callable[[int, int], None]
AllowedSpecial = Literal["all", "none"] | set[str] | frozenset[str]

# The GPT-2 pre-tokenization pattern, as used by Hugging Face's ByteLevel
# pre-tokenizer: common English contractions, then letters, numbers and other
# symbols (each optionally led by one space), then whitespace. `\s+(?!\S)` keeps
# the last space of a run for the next word, so "a   b" -> "a", "  ", " b".
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""

FORMAT = "llm-playground-bpe"
FORMAT_VERSION = 1
FILE_NAME = "bpe.json"


@dataclass(frozen=True)
class Merge:
    """One learned merge: token `left` followed by token `right` becomes `new_id`.

    Attributes:
        left: id of the left parent token.
        right: id of the right parent token.
        new_id: id of the merged token.
        rank: position in the training order; when encoding, lower ranks are applied first.
        count: how often the pair occurred in the training data when it was chosen
            (0 when unknown).
    """

    left: int
    right: int
    new_id: int
    rank: int
    count: int = 0

    @property
    def pair(self) -> Pair:
        return (self.left, self.right)


@dataclass(frozen=True)
class ReplayStep:
    """One step of `Tokenizer.replay`: the tokens of a word after one more merge.

    Attributes:
        ids: the token ids after this step.
        tokens: the bytes of each token (same length as `ids`).
        merge: the merge applied in this step; None for the first step (raw bytes).
        position: index in the *previous* step's `ids` where `merge` joined two tokens.
    """

    ids: list[int]
    tokens: list[bytes]
    merge: Merge | None = None
    position: int | None = None


# --------------------------------------------------------------------------- #
# The tokenizer
# --------------------------------------------------------------------------- #


@dataclass
class TrainingInfo:
    """What a tokenizer was trained on and with (recorded in bpe.json and training_meta.json)."""

    vocab_size: int = 0
    min_frequency: int = 0
    num_docs: int = 0
    num_chars: int = 0
    text_sha256: str = ""
    extra: dict = field(default_factory=dict)


class Tokenizer:
    """Base class: vocabulary, merges and special tokens, with encode/decode/save/load.

    Subclasses implement `train` and, if they pre-tokenize, `pre_tokenize`.

    Attributes:
        special_tokens: special token string -> id (ids 0..3).
        vocab: token id -> bytes, for every non-special token.
        merges: every merge in training order (`merges[r].rank == r`).
        pattern: the pre-tokenization regex, or None when the whole text is one sequence.
        info: what the tokenizer was trained on.
    """

    pattern: str | None = None

    def __init__(self) -> None:
        self.info = TrainingInfo()
        self._reset()

    # ---- building the tables ------------------------------------------------

    def _reset(self) -> None:
        """Start from the initial vocabulary: special tokens, then the 256 bytes."""
        self.special_tokens: dict[str, int] = {tok: i for i, tok in enumerate(SPECIAL_TOKENS)}
        self.vocab: dict[int, bytes] = {}
        self.merges: list[Merge] = []
        # Lookup tables derived from the above.
        # Token string -> id, with tokens written as in tokenizer.json (byte-level
        # characters, special tokens as they are). Hugging Face's trainer looks merged
        # tokens up in exactly this table, see `_add_merge`.
        self._id_of: dict[str, int] = dict(self.special_tokens)
        self._made_by: dict[int, Merge] = {}  # token id -> the merge that created it
        self._ranks: dict[Pair, Merge] = {}  # pair -> the merge used when encoding
        self._cache: dict[str, list[int]] = {}
        first = len(self.special_tokens)
        for i, ch in enumerate(ALPHABET):
            self.vocab[first + i] = bytes([UNICODE_TO_BYTE[ch]])
            self._id_of[ch] = first + i
        # byte value -> id, to turn UTF-8 bytes into initial token ids quickly.
        self.byte_ids: list[int] = [self._id_of[to_byte_level(bytes([b]))] for b in range(256)]

    def _add_merge(self, left: int, right: int, count: int = 0) -> Merge:
        """Record a new merge of `left` + `right` and return it.

        As in Hugging Face, the merged token gets the next free id, *unless a token
        with the same string already exists*: "abc" can be reached as "ab"+"c" and,
        later, as "a"+"bc". Then the second merge reuses the existing id and the
        vocabulary does not grow (which is why a trainer counts vocabulary entries,
        not merges). Hugging Face compares the byte-level *strings*, special tokens
        included, so without pre-tokenization the bytes of "<|pad|>" merge straight
        into the special token's id (the tests exercise this; a clash between two
        ordinary merges is possible in principle but we never saw one). If the same
        *pair* is merged twice (possible in Hugging Face's trainer, see `RegexBPE`),
        the later rank wins when encoding, as in Hugging Face where the merges live in
        a dict keyed by pair.
        """
        name = self.token_str(left) + self.token_str(right)
        new_id = self._id_of.get(name)
        if new_id is None:
            new_id = self.vocab_size
            self.vocab[new_id] = self.token_bytes(left) + self.token_bytes(right)
            self._id_of[name] = new_id
        merge = Merge(left, right, new_id, rank=len(self.merges), count=count)
        self.merges.append(merge)
        self._made_by.setdefault(new_id, merge)
        self._ranks[merge.pair] = merge
        self._cache.clear()
        return merge

    # ---- looking things up --------------------------------------------------

    @property
    def vocab_size(self) -> int:
        """Number of distinct token ids, special tokens included."""
        return len(self.vocab) + len(self.special_tokens)

    def token_bytes(self, token_id: int) -> bytes:
        """The bytes a token stands for (a special token's UTF-8 text)."""
        data = self.vocab.get(token_id)
        if data is not None:
            return data
        for tok, i in self.special_tokens.items():
            if i == token_id:
                return tok.encode("utf-8")
        raise KeyError(f"unknown token id {token_id}")

    def token_str(self, token_id: int) -> str:
        """A token written the Hugging Face way: byte-level characters, e.g. "Ġthe"."""
        data = self.vocab.get(token_id)
        if data is not None:
            return to_byte_level(data)
        for tok, i in self.special_tokens.items():
            if i == token_id:
                return tok
        raise KeyError(f"unknown token id {token_id}")

    def token_id(self, token: str) -> int:
        """The id of a token string as written by `token_str` (KeyError if unknown)."""
        return self._id_of[token]

    def get_vocab(self) -> dict[str, int]:
        """Token string (byte-level, as in tokenizer.json) -> id, special tokens included."""
        return dict(self._id_of)

    def merge_of(self, token_id: int) -> Merge | None:
        """The merge that created `token_id` (its two parents and its rank); None for bytes and special tokens."""
        return self._made_by.get(token_id)

    def encoding_merges(self) -> list[Merge]:
        """The merges used when encoding, by rank: what tokenizer.json lists.

        This is `merges` minus any earlier duplicate of a pair (normally none).
        """
        return sorted(self._ranks.values(), key=lambda m: m.rank)

    # ---- encoding -----------------------------------------------------------

    def pre_tokenize(self, text: str) -> list[str]:
        """Cut text into the pieces that are encoded independently (merges never cross them).

        The base class does not pre-tokenize: the whole text is one piece.
        """
        return [text] if text else []

    def _apply_merges(self, ids: list[int], on_step: Callable[[list[int], Merge, int], None] | None = None) -> list[int]:
        """Apply merges to one piece, lowest rank first, exactly as Hugging Face does.

        Hugging Face repeatedly merges the adjacent pair with the lowest rank, the
        leftmost one if the pair occurs several times. Doing that literally rescans the
        whole piece after every single merge; we instead merge all occurrences of the
        best pair in one left-to-right sweep, which gives the same result because the
        pairs a merge creates normally have a *higher* rank (they contain a token that
        did not exist before this merge). The exceptions (a merge that reused an
        existing id, or a pair merged twice, see `_add_merge`) are caught by leaving
        the sweep as soon as a lower-rank pair appears.

        Args:
            ids: token ids of one piece.
            on_step: called after each single merge with (ids, merge, position).
        """
        ranks = self._ranks
        while len(ids) >= 2:
            # The lowest-rank pair present; strict "<" keeps the leftmost on ties.
            best: Merge | None = None
            pos = -1
            for i in range(len(ids) - 1):
                m = ranks.get((ids[i], ids[i + 1]))
                if m is not None and (best is None or m.rank < best.rank):
                    best, pos = m, i
            if best is None:
                break
            # Sweep from there, building a new list (cheaper than editing in place).
            left, right, new_id = best.left, best.right, best.new_id
            out = ids[:pos]
            i, n = pos, len(ids)
            while i < n:
                if i + 1 < n and ids[i] == left and ids[i + 1] == right:
                    out.append(new_id)
                    i += 2
                    if on_step is not None:
                        on_step(out + ids[i:], best, len(out) - 1)
                    before = ranks.get((out[-2], new_id)) if len(out) > 1 else None
                    after = ranks.get((new_id, ids[i])) if i < n else None
                    if (before is not None and before.rank < best.rank) or (after is not None and after.rank < best.rank):
                        break  # a lower-rank pair appeared: it must be merged first
                else:
                    out.append(ids[i])
                    i += 1
            out.extend(ids[i:])
            ids = out
        return ids

    def _encode_piece(self, piece: str) -> list[int]:
        """Encode one pre-tokenized piece, with a cache (frequent words repeat a lot)."""
        ids = self._cache.get(piece)
        if ids is None:
            byte_ids = self.byte_ids
            ids = self._apply_merges([byte_ids[b] for b in piece.encode("utf-8")])
            if len(self._cache) >= 200_000:
                self._cache.clear()  # crude bound on memory for huge, varied inputs
            self._cache[piece] = ids
        return ids

    def encode_ordinary(self, text: str) -> list[int]:
        """Encode `text`, treating special token strings as ordinary text."""
        out: list[int] = []
        for piece in self.pre_tokenize(text):
            out.extend(self._encode_piece(piece))
        return out

    def encode(self, text: str, allowed_special: AllowedSpecial = "all") -> list[int]:
        """Encode `text` to token ids.

        Args:
            text: the text.
            allowed_special: which special token strings in `text` become their special
                id: "all" (the default, like Hugging Face), "none" (all are encoded as
                ordinary text, like tiktoken's `encode_ordinary`), or a set of them.

        Returns:
            The token ids.
        """
        if allowed_special == "all":
            allowed = set(self.special_tokens)
        elif allowed_special == "none":
            allowed = set()
        else:
            allowed = set(allowed_special)
            unknown = allowed - set(self.special_tokens)
            if unknown:
                raise ValueError(f"not special tokens: {sorted(unknown)}")
        if not allowed:
            return self.encode_ordinary(text)
        # Longest first, so that a special token that is a prefix of another cannot win.
        alternatives = "|".join(regex.escape(t) for t in sorted(allowed, key=len, reverse=True))
        out: list[int] = []
        # The capturing group makes split() keep the special tokens: odd indices.
        for i, part in enumerate(regex.split(f"({alternatives})", text)):
            if i % 2:
                out.append(self.special_tokens[part])
            elif part:
                out.extend(self.encode_ordinary(part))
        return out

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The bytes of the tokens, concatenated (may end inside a UTF-8 character)."""
        return b"".join(self.token_bytes(i) for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """Decode ids to text; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def replay(self, word: str) -> list[ReplayStep]:
        """Show how `word` is encoded: one step per merge, starting from its bytes.

        Args:
            word: a single pre-tokenized piece (see `pre_tokenize`); special tokens
                are not treated specially.

        Returns:
            The steps. The first holds the raw bytes; the last one's `ids` equal
            `encode_ordinary(word)`.

        Raises:
            ValueError: if the pre-tokenizer would cut `word` into several pieces.
        """
        if len(self.pre_tokenize(word)) > 1:
            raise ValueError(f"{word!r} is several pieces for this tokenizer: {self.pre_tokenize(word)}")
        ids = [self.byte_ids[b] for b in word.encode("utf-8")]
        steps = [ReplayStep(list(ids), [self.token_bytes(i) for i in ids])]

        def record(current: list[int], merge: Merge, position: int) -> None:
            steps.append(ReplayStep(list(current), [self.token_bytes(i) for i in current], merge, position))

        self._apply_merges(ids, on_step=record)
        return steps

    # ---- saving and loading -------------------------------------------------

    def to_dict(self) -> dict:
        """Everything needed to rebuild the tokenizer, as JSON-friendly data.

        Tokens are written with the GPT-2 byte-level characters (as in tokenizer.json),
        so "Ġthe" is " the". Each merge is [left, right, count]: the two tokens joined
        and how often the pair occurred when it was learned. Ids are not stored: they
        follow from the order (special tokens, the 256 bytes, then one per merge
        unless the merged token already exists).
        """
        return {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "type": type(self).__name__,
            "pattern": self.pattern,
            "special_tokens": self.special_tokens,
            "training": {
                "vocab_size": self.info.vocab_size,
                "min_frequency": self.info.min_frequency,
                "num_docs": self.info.num_docs,
                "num_chars": self.info.num_chars,
                "text_sha256": self.info.text_sha256,
                **self.info.extra,
            },
            "merges": [[self.token_str(m.left), self.token_str(m.right), m.count] for m in self.merges],
        }

    def to_json(self) -> str:
        """The text of bpe.json: `to_dict` as plain JSON, but one merge per line so it reads like a list of rules."""
        data = self.to_dict()
        merges = data.pop("merges")
        text = json.dumps(data, indent=1, ensure_ascii=False)[: -len("\n}")]
        return text + ',\n "merges": [\n' + ",\n".join("  " + json.dumps(m, ensure_ascii=False) for m in merges) + "\n ]\n}\n"

    def save(self, out_dir: Path) -> Path:
        """Write `out_dir/bpe.json` (replacing `out_dir` atomically) and return `out_dir`."""
        out_dir = Path(out_dir)
        with atomic_dir(out_dir) as tmp:
            (tmp / FILE_NAME).write_text(self.to_json(), encoding="utf-8")
        return out_dir

    @classmethod
    def from_dict(cls, data: dict) -> Tokenizer:
        """Rebuild a tokenizer from `to_dict` output (any subclass, by its "type")."""
        if data.get("format") != FORMAT or data.get("version") != FORMAT_VERSION:
            raise ValueError(f"not a {FORMAT} v{FORMAT_VERSION} file")
        kinds = {sub.__name__: sub for sub in _all_subclasses(Tokenizer)}
        kind = kinds.get(data["type"])
        if kind is None or not issubclass(kind, cls):
            raise ValueError(f"unknown tokenizer type {data['type']!r}")
        tok = kind._from_pattern(data.get("pattern"))
        if data["special_tokens"] != tok.special_tokens:
            raise ValueError(f"unexpected special tokens {data['special_tokens']}, expected {tok.special_tokens}")
        training = dict(data.get("training", {}))
        tok.info = TrainingInfo(
            **{k: training.pop(k) for k in ("vocab_size", "min_frequency", "num_docs", "num_chars", "text_sha256") if k in training},
            extra=training,
        )
        for left, right, *count in data["merges"]:
            tok._add_merge(tok._id_of[left], tok._id_of[right], count[0] if count else 0)
        return tok

    @classmethod
    def _from_pattern(cls, pattern: str | None) -> Tokenizer:
        return cls()

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        """Load a tokenizer saved by `save` (a folder with bpe.json, or the file itself)."""
        path = Path(path)
        if path.is_dir():
            path = path / FILE_NAME
        return cls.from_dict(json.loads(path.read_text(encoding="utf-8")))

    def __repr__(self) -> str:
        return f"{type(self).__name__}(vocab_size={self.vocab_size}, merges={len(self.merges)})"


def _all_subclasses(cls: type) -> list[type]:
    out = [cls]
    for sub in cls.__subclasses__():
        out.extend(_all_subclasses(sub))
    return out


__all__ = [
    "GPT2_PATTERN",
    "Merge",
    "Pair",
    "ProgressFn",
    "ReplayStep",
    "Tokenizer",
    "TrainingInfo",
    "best_pair",
    "from_byte_level",
    "get_pair_counts",
    "merge_pair",
    "split_isolated",
]
