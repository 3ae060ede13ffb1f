"""The pair primitives of byte-pair encoding, used by the trainers (`basic.py`, `regex_bpe.py`).

Training BPE is a loop over three steps: count adjacent pairs (`get_pair_counts`),
pick the pair to merge (`best_pair`, with Hugging Face's tie-break), and replace it
everywhere (`merge_pair`). `split_isolated` cuts text into the words that are counted
separately ("pre-tokenization"). `training/tokenizers/bpe/base.py` re-exports all of them.
"""

from __future__ import annotations

import itertools

import regex

Pair = tuple[int, int]


def get_pair_counts(ids: list[int], counts: dict[Pair, int] | None = None, weight: int = 1) -> dict[Pair, int]:
    """Count adjacent pairs in `ids`, e.g. [1, 2, 1, 2] -> {(1, 2): 2, (2, 1): 1}.

    Args:
        ids: a token sequence.
        counts: a dict to add to (updated in place), or None for a new one.
        weight: how much each occurrence counts (a word's frequency).

    Returns:
        The updated `counts`.
    """
    counts = {} if counts is None else counts
    for pair in itertools.pairwise(ids):
        counts[pair] = counts.get(pair, 0) + weight
    return counts


def best_pair(counts: dict[Pair, int]) -> Pair:
    """The pair to merge next: the most frequent one.

    The tie-break is the part that is easy to get wrong, and any other choice gives
    a different (equally valid, but incompatible) tokenizer. Hugging Face
    `tokenizers` breaks ties in favour of the *smallest* (left id, right id) tuple:
    compare the left ids first, then the right ids. Because byte ids are ordered by
    the code point of the byte-level character, this is *not* the same as the
    alphabetical or byte order of the tokens: "Ġ" (space, U+0120) has a larger id
    than "z". Note also that Python's `max` over a dict would pick whichever tied
    pair was *inserted* first, which depends on the text, not on the pair.
    """
    return max(counts, key=lambda p: (counts[p], -p[0], -p[1]))


def merge_pair(ids: list[int], pair: Pair, new_id: int) -> list[int]:
    """Replace every occurrence of `pair` in `ids` with `new_id`, scanning left to right.

    Occurrences never overlap: with pair (a, a), "a a a" becomes "aa a", not "a aa".
    """
    out: list[int] = []
    i, n = 0, len(ids)
    while i < n:
        if i + 1 < n and ids[i] == pair[0] and ids[i + 1] == pair[1]:
            out.append(new_id)
            i += 2
        else:
            out.append(ids[i])
            i += 1
    return out


def split_isolated(pattern: regex.Pattern, text: str) -> list[str]:
    """Cut `text` into the matches of `pattern`, keeping any unmatched text in between.

    Hugging Face's `Split(..., behavior="isolated")` does the same. The GPT-2 pattern
    matches every character, so there the result is just `pattern.findall(text)`;
    keeping the gaps makes other patterns lossless too.
    """
    parts = pattern.findall(text)
    if sum(map(len, parts)) == len(text):
        return parts
    parts, end = [], 0
    for m in pattern.finditer(text):
        if m.start() > end:
            parts.append(text[end : m.start()])
        if m.end() > m.start():
            parts.append(m.group())
        end = m.end()
    if end < len(text):
        parts.append(text[end:])
    return parts
