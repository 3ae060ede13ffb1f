"""Document quality heuristics: the Gopher rules (Rae et al. 2021, appendix A) and C4's.

`quality_reason` returns None for a document that passes, else the name of the first
rule it breaks (a key of `QUALITY_RULES`), so the pipeline can report what each rule
removed. Words are whitespace-separated tokens (`str.split()`, like the regex `\\S+`),
so punctuation stays attached ("end." is one word); no tokenizer is needed.

The repetition rules follow datatrove's GopherRepetitionFilter: lines are compared
after stripping, the top n-gram fraction is (count x length of the most frequent
n-gram, words joined by spaces) / characters, and the duplicate n-gram fraction
counts the characters (spaces excluded) of n-grams seen earlier, jumping past each
repeat so overlapping repeats are not counted twice.

Speed: the n-gram rules are the expensive part in pure Python (a Counter per n is
~30 us on 2 KB). Instead, each word becomes a 64-bit hash and every n-gram a
polynomial hash, computed with numpy, and cheap upper bounds come first: for the top
n-gram, the largest count (from sorted hashes) x the longest n-gram; for repeated
n-grams, the characters covered by n-word windows at the starts that repeat. Only a
document whose bound crosses a threshold gets the exact Python computation, so the
decision is always the exact one (hash collisions can only raise a bound).
"""

from __future__ import annotations

import functools
import re
import string
from collections import Counter

import numpy as np

from training.data.config import QualityStage

QUALITY_RULES: dict[str, str] = {
    "curly_bracket": "contains '{' (C4: almost always code or markup)",
    "lorem_ipsum": "contains 'lorem ipsum' placeholder text (C4)",
    "min_words": "fewer words than min_words",
    "max_words": "more words than max_words",
    "mean_word_length": "mean word length outside [min_mean_word_length, max_mean_word_length]",
    "symbol_word_ratio": "too many '#' or ellipses ('...', '…') per word",
    "bullet_lines": "too many lines start with a bullet point",
    "ellipsis_lines": "too many lines end with an ellipsis",
    "alpha_words": "too few words contain a letter",
    "stop_words": "too few English stop words (the, be, to, of, and, that, have, with)",
    "min_sentences": "fewer than 3 sentences (C4)",
    "dup_lines": "too many lines are repeats of earlier lines",
    "dup_line_chars": "too many characters are in repeated lines",
    **{f"top_{n}gram": f"the most frequent word {n}-gram covers too many characters" for n in (2, 3, 4)},
    **{f"dup_{n}gram": f"too many characters are in repeated word {n}-grams" for n in range(5, 11)},
}

_STOP_WORDS = frozenset({"the", "be", "to", "of", "and", "that", "have", "with"})
_PUNCT = string.punctuation + "“”‘’«»„"
# Em and en dashes are left out: they open dialogue lines in French, Spanish, Russian...
_BULLETS = ("•", "‣", "◦", "⁃", "●", "○", "▪", "■", "□", "➢", "►", "-", "*")
_ELLIPSES = ("...", "…")
_LETTER = re.compile(r"[^\W\d_]")
# A sentence ends at . ! ? or … (possibly followed by closing quotes/brackets) before
# whitespace or the end; CJK full stops need no space after them.
_SENTENCE_END = re.compile(r"[.!?…]+[\"'”’)\]]*(?=\s|\Z)|[。！？]")
_MIN_SENTENCES = 3

# Polynomial n-gram hashing mod 2^64: an odd base is invertible, so the hash of words
# i..i+n-1 is (S[i+n] - S[i]) * Q^-i with S the prefix sums of h[j] * Q^j.
_Q = 0x9E3779B97F4A7C15
_Q_INV = pow(_Q, -1, 1 << 64)
_powers: tuple[np.ndarray, np.ndarray] = (np.ones(1, np.uint64), np.ones(1, np.uint64))


def _pow_tables(m: int) -> tuple[np.ndarray, np.ndarray]:
    """Q^i and Q^-i for i < m (grown by doubling and kept: one allocation per size class)."""
    global _powers
    if len(_powers[0]) < m:
        size = 1 << (m - 1).bit_length()
        tables = []
        for q in (_Q, _Q_INV):
            t = np.ones(size, np.uint64)
            # cumprod wraps around mod 2^64, which is exactly the arithmetic wanted here.
            np.cumprod(np.full(size - 1, q, np.uint64), out=t[1:])
            tables.append(t)
        _powers = (tables[0], tables[1])
    return _powers[0][:m], _powers[1][:m]


def _top_ngram_chars(words: list[str], n: int) -> int:
    """Exact: count x length (words joined by spaces) of the most frequent n-gram."""
    gram, count = Counter(zip(*(words[k:] for k in range(n)))).most_common(1)[0]
    return count * (sum(map(len, gram)) + n - 1)


def _dup_ngram_chars(words: list[str], n: int) -> int:
    """Exact: characters (no spaces) of n-grams seen before, skipping past each repeat."""
    seen: set[tuple[str, ...]] = set()
    total, i, stop = 0, 0, len(words) - n + 1
    while i < stop:
        gram = tuple(words[i:i + n])
        if gram in seen:
            total += sum(map(len, gram))
            i += n
        else:
            seen.add(gram)
            i += 1
    return total


@functools.cache
def _gather_index(ns: tuple[int, ...], size: int) -> np.ndarray:
    """Row k, column i: i + ns[k], for i < size (a power of two, so few sizes get cached)."""
    return np.arange(size)[None, :] + np.array(ns)[:, None]


def _ngram_reason(words: list[str], lens: np.ndarray, n_chars: int, cfg: QualityStage) -> str | None:
    """The top and duplicate n-gram rules: numpy upper bounds first, exact check if needed.

    Two facts keep the common case to one sorted row per rule family: the most frequent
    n-gram is at most as frequent as the most frequent shorter one (its prefix), and a
    position repeating an earlier n-gram repeats the shorter prefix too. So the smallest
    n bounds every larger n; a larger n is only hashed when that bound is not enough.
    """
    m = len(words)
    # A fraction of 0 switches that n off; n-grams longer than the document do not exist.
    tops = {n: f for n, f in sorted(cfg.max_top_ngram_char_fraction.items()) if f and 1 <= n <= m}
    dups = {n: f for n, f in sorted(cfg.max_dup_ngram_char_fraction.items()) if f and 1 <= n <= m}
    if not tops and not dups:
        return None
    ns = tuple(sorted(set(tops) | set(dups)))
    qpow, qinv = _pow_tables(m)
    # Prefix sums padded with their last value, so prefix[i + n] past the end reads
    # prefix[m]: starts past m - n get the (shorter) suffix instead of an n-gram. A
    # suffix never equals a real n-gram short of a collision and is never longer than
    # the n-gram covering it, so every bound below stays an upper bound.
    prefix = np.empty(m + ns[-1], np.uint64)
    prefix[0] = 0
    np.cumsum(np.fromiter(map(hash, words), np.int64, m).view(np.uint64) * qpow, out=prefix[1:m + 1])
    prefix[m + 1:] = prefix[m]
    chars = np.empty(m + ns[-1], np.int64)
    chars[0] = 0
    np.cumsum(lens, out=chars[1:m + 1])
    chars[m + 1:] = chars[m]
    idx = _gather_index(ns, max(512, 1 << (m - 1).bit_length()))[:, :m]
    longest = dict(zip(ns, (chars[idx] - chars[:m]).max(axis=1).tolist()))  # characters, no spaces
    hashed: dict[int, np.ndarray] = {}
    ordered: dict[int, np.ndarray] = {}

    def grams(n: int) -> np.ndarray:
        """Hashes of the n-grams (and end suffixes) at every start, in text order."""
        if n not in hashed:
            hashed[n] = (prefix[n:n + m] - prefix[:m]) * qinv
        return hashed[n]

    def sorted_grams(n: int) -> np.ndarray:
        if n not in ordered:
            ordered[n] = np.sort(grams(n))
        return ordered[n]

    def more_than(n: int, k: int) -> bool:
        """Whether some n-gram occurs more than k times: s[i] == s[i + k] once sorted."""
        s = sorted_grams(n)
        return k < m and (k == 0 or bool((s[k:] == s[:-k]).any()))

    first = min(tops, default=0)
    for n, frac in tops.items():
        # Safe when no n-gram occurs more than k times, k x its longest length <= limit.
        limit = frac * n_chars
        k = int(limit // (longest[n] + n - 1))
        if more_than(first, k) and more_than(n, k) and _top_ngram_chars(words, n) > limit:
            return f"top_{n}gram"
    if not dups:
        return None

    def repeats(n: int) -> np.ndarray:
        """Mask of the starts whose n-gram occurred before (stable sort: first one first)."""
        order = np.argsort(grams(n), kind="stable")
        s = grams(n)[order]
        out = np.zeros(m, bool)
        out[order[1:][s[1:] == s[:-1]]] = True
        return out

    def covered(starts: np.ndarray, widths: np.ndarray) -> list[int]:
        """Row k: characters (no spaces) of the words in any window [i, i + widths[k])
        with starts[k, i] set."""
        ends = np.zeros((len(widths), m + 1), np.int64)
        np.cumsum(starts, axis=1, out=ends[:, 1:])  # ends[k, j]: starts before j
        lo = np.maximum(np.arange(1, m + 1) - widths[:, None], 0)
        inside = ends[:, 1:] - np.take_along_axis(ends, lo, axis=1) > 0
        return (inside @ lens).tolist()

    # The exact count only counts non-overlapping n-grams that start at a repeat, so
    # the characters covered by n-word windows at the repeated starts bound it. A start
    # repeating an n-gram repeats the `first`-gram at each of its first n - first + 1
    # words, so those runs of `first`-gram repeats give every n's starts at once; an
    # n's own repeats are only computed when that bound is not enough.
    first = min(dups)
    s = sorted_grams(first)
    if not (s[1:] == s[:-1]).any():
        return None  # no n-gram occurs twice
    ns = np.array(list(dups))
    runs = np.zeros(m + ns[-1] - first + 2, np.int64)
    np.cumsum(repeats(first), out=runs[1:m + 1])
    runs[m + 1:] = runs[m]
    span = (ns - first + 1)[:, None]
    at = np.arange(m)
    bounds = covered(runs[at + span] - runs[at] == span, ns)
    for (n, frac), bound in zip(dups.items(), bounds):
        limit = frac * n_chars
        if bound > limit and covered(repeats(n)[None, :], ns[ns == n])[0] > limit \
                and _dup_ngram_chars(words, n) > limit:
            return f"dup_{n}gram"
    return None


def quality_reason(text: str, cfg: QualityStage, lang: str | None = None) -> str | None:
    """Check one document against the Gopher and C4 rules.

    Args:
        text: the (normalised) document.
        cfg: the thresholds. As in datatrove, a maximum of 0 switches its rule off, and
            so does leaving an n out of the n-gram tables.
        lang: the document's language code from the language stage; the English
            stop-word rule only runs when it is None or "en".

    Returns:
        None when the document passes, else the first failing rule's name (a key of
        `QUALITY_RULES`, or "top_{n}gram"/"dup_{n}gram" for the n values in cfg).
    """
    # C4's string rules first: nearly free, and they catch code and templates early.
    if cfg.c4_rules:
        if "{" in text:
            return "curly_bracket"
        if ("psum" in text or "PSUM" in text) and "lorem ipsum" in text.lower():
            return "lorem_ipsum"

    words = text.split()
    m = len(words)
    if m < cfg.min_words or m == 0:
        return "min_words" if cfg.min_words > 0 else None
    if m > cfg.max_words:
        return "max_words"
    lens = np.fromiter(map(len, words), np.int64, m)
    word_chars = int(lens.sum())
    mean = word_chars / m
    if mean < cfg.min_mean_word_length or (cfg.max_mean_word_length and mean > cfg.max_mean_word_length):
        return "mean_word_length"
    limit = cfg.max_symbol_word_ratio * m
    if limit and (text.count("#") > limit or text.count("...") + text.count("…") > limit):
        return "symbol_word_ratio"

    lines = [line for line in map(str.strip, text.split("\n")) if line]
    limit = cfg.max_bullet_lines * len(lines)
    if limit and sum(line.startswith(_BULLETS) for line in lines) > limit:
        return "bullet_lines"
    limit = cfg.max_ellipsis_lines * len(lines)
    if limit and sum(line.endswith(_ELLIPSES) for line in lines) > limit:
        return "ellipsis_lines"

    need = cfg.min_alpha_words * m
    alpha = sum(map(str.isalpha, words))  # C speed; only the rest needs the regex
    if alpha < need:
        alpha += sum(1 for w in words if not w.isalpha() and _LETTER.search(w))
        if alpha < need:
            return "alpha_words"

    if cfg.min_stop_words and lang in (None, "en"):
        found = 0
        for w in words:  # usually done within the first dozen words
            if w in _STOP_WORDS or w.lower().strip(_PUNCT) in _STOP_WORDS:
                found += 1
                if found >= cfg.min_stop_words:
                    break
        else:
            return "stop_words"

    if cfg.c4_rules:
        ends, last = 0, 0
        for ends, match in enumerate(_SENTENCE_END.finditer(text), 1):
            if ends >= _MIN_SENTENCES:
                break
            last = match.end()
        else:
            # Words after the last full stop are a sentence too ("A. B. C" has three).
            ends += _LETTER.search(text, last) is not None
            if ends < _MIN_SENTENCES:
                return "min_sentences"

    n_chars = len(text)
    unique = len(set(lines))
    if unique < len(lines):  # any repeated line at all? (rarely)
        if cfg.max_dup_line_fraction and len(lines) - unique > cfg.max_dup_line_fraction * len(lines):
            return "dup_lines"
        seen: set[str] = set()
        dup_chars = 0
        for line in lines:
            if line in seen:
                dup_chars += len(line)
            else:
                seen.add(line)
        if cfg.max_dup_line_char_fraction and dup_chars > cfg.max_dup_line_char_fraction * n_chars:
            return "dup_line_chars"

    return _ngram_reason(words, lens, n_chars, cfg)
