"""`RegexBPE`: GPT-2 style byte-level BPE, trained incrementally, identical to Hugging Face.

Two ideas make this trainer both correct (same output as `tokenizers`) and fast:

1. **Pre-tokenization.** The text is first cut into "words" with the GPT-2 regex
   (" the", " cat", "'s", "!!", "\\n\\n"...). Merges never cross a word boundary, so
   a token can never be "g." or "e t". And since the same word occurs many times,
   each distinct word is stored *once* with its count (its multiplicity):
   tinyshakespeare has ~300k words but only ~25k distinct ones.

2. **Incremental updates.** The naive trainer (see `BasicBPE`) recounts every pair
   after every merge. Instead we keep the pair counts, plus for each pair the set of
   words that contain it. Merging a pair then only touches those words, and each
   merge changes the counts locally: merging (b, c) into X in "a b c d" removes one
   (a, b) and one (c, d) and adds one (a, X) and one (X, d), times the word's count.
   The next best pair comes from a heap (priority queue) of (count, pair).
"""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable

import regex

from training.errors import UserError
from training.tokenizers.bpe.base import GPT2_PATTERN, ProgressFn, Tokenizer, TrainingInfo
from training.tokenizers.bpe.pairs import Pair, split_isolated
from training.tokenizers.tokenizer import TextStats, _check_vocab_size


def merge_word(word: list[int], left: int, right: int, new_id: int) -> list[tuple[Pair, int]]:
    """Merge every (left, right) in `word` into `new_id`, in place, left to right.

    Args:
        word: the token ids of one distinct word (modified in place).
        left: left token of the pair.
        right: right token of the pair.
        new_id: the merged token.

    Returns:
        How the pair counts of this word changed, as ((pair), +1 or -1) entries, for
        the caller to multiply by the word's count. For "a b c d" merging (b, c) -> X:
        ((a, b), -1), ((a, X), +1), ((c, d), -1), ((X, d), +1). Like Hugging Face, the
        merged pair itself is not listed: it is never looked at again.
    """
    changes: list[tuple[Pair, int]] = []
    i = 0
    while True:
        try:
            i = word.index(left, i)
        except ValueError:
            break
        if i + 1 < len(word) and word[i + 1] == right:
            if i > 0:  # a neighbour on the left
                prev = word[i - 1]
                changes.append(((prev, left), -1))
                changes.append(((prev, new_id), 1))
            word[i : i + 2] = [new_id]
            if i + 1 < len(word):  # a neighbour on the right
                nxt = word[i + 1]
                changes.append(((right, nxt), -1))
                changes.append(((new_id, nxt), 1))
        # Continue after the token at i; after a merge that is the merged token, so
        # occurrences never overlap: (a, a) in "a a a" gives "aa a".
        i += 1
    return changes


class RegexBPE(Tokenizer):
    """Byte-level BPE with regex pre-tokenization, matching Hugging Face `tokenizers`.

    Trained on the same text with the same vocab_size and min_frequency, the merges,
    the vocabulary ids and the encodings equal those of `training.tokenizers.tokenizer.train_tokenizer`.

    One caveat: `\\p{L}` and `\\p{N}` depend on the Unicode tables of the regex
    engine. Python's `regex` module follows the newest Unicode version, Oniguruma (the
    engine inside `tokenizers`) an older one, so characters assigned only in the
    last few Unicode versions (rare scripts, new symbols) can be pre-tokenized
    differently. Every character assigned by Unicode 14 is classified alike.

    Example:
        >>> tok = RegexBPE().train(["hello world, hello there"] * 10, vocab_size=270)
        >>> tok.decode(tok.encode("hello")) == "hello"
        True
    """

    def __init__(self, pattern: str = GPT2_PATTERN) -> None:
        """Create an untrained tokenizer (it knows the 256 bytes and the special tokens).

        Args:
            pattern: the pre-tokenization regex (the `regex` module's syntax). The
                default is GPT-2's, which Hugging Face's ByteLevel pre-tokenizer uses.
        """
        self.pattern = pattern
        self._regex = regex.compile(pattern)
        super().__init__()

    @classmethod
    def _from_pattern(cls, pattern: str | None) -> RegexBPE:
        return cls(pattern or GPT2_PATTERN)

    def pre_tokenize(self, text: str) -> list[str]:
        """Cut text into words with the regex, e.g. "Hi  you!" -> ["Hi", " ", " you", "!"]."""
        return split_isolated(self._regex, text)

    # ---- training -----------------------------------------------------------

    def train(
        self,
        texts: str | Iterable[str],
        vocab_size: int,
        min_frequency: int = 2,
        progress: ProgressFn | None = None,
    ) -> RegexBPE:
        """Learn merges from `texts` until the vocabulary has `vocab_size` tokens.

        Any previous training is discarded. Special token strings in the text are
        ordinary text here (as in Hugging Face's trainer).

        Args:
            texts: one string, or documents (streamed once; may be a generator).
                Words never span two documents.
            vocab_size: final vocabulary size including the 256 bytes and the special tokens.
            min_frequency: stop when the most frequent pair occurs fewer times than this.
            progress: called now and then with (merges_done, merges_total); the last
                call has merges_done == merges_total (the total shrinks if training
                stops early because no pair is frequent enough).

        Returns:
            self, trained.

        Raises:
            UserError: for a vocab_size or min_frequency out of range.
        """
        self._reset()
        _check_vocab_size(vocab_size)
        if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
            raise UserError(f"min_frequency must be an integer >= 1, got {min_frequency!r}")

        stats = TextStats()
        word_counts = self._count_words(stats.stream([texts] if isinstance(texts, str) else texts))
        self.info = TrainingInfo(vocab_size, min_frequency, stats.num_docs, stats.num_chars, stats.digest.hexdigest())
        self._learn_merges(word_counts, vocab_size, min_frequency, progress)
        return self

    def _count_words(self, texts: Iterable[str]) -> Counter[str]:
        """Step 1: pre-tokenize every document and count each distinct word."""
        counts: Counter[str] = Counter()
        for text in texts:
            counts.update(self.pre_tokenize(text))
        return counts

    def _learn_merges(self, word_counts: Counter[str], vocab_size: int, min_frequency: int, progress: ProgressFn | None) -> None:
        """Steps 2-4: the incremental BPE loop, a faithful port of Hugging Face's `BpeTrainer`.

        Data structures:
            words[w]: the current token ids of distinct word number w.
            counts[w]: how often that word occurs in the text.
            pair_counts[pair]: how often the pair occurs, over all words and counts.
            heap: entries (-count, left, right, tie, word set). heapq pops the
                smallest, so negating the count makes the most frequent pair come
                first, and on equal counts the smallest (left, right): the
                Hugging Face tie-break (see `pairs.best_pair`). `tie` only keeps
                Python from ever comparing two word sets.

        The heap is updated *lazily*: when a merge changes a pair's count we do not
        search the heap for its entry (that would be slow); the old entry stays. When
        an entry comes out on top we check its count against `pair_counts`; if it is
        stale we push it back with the real count and look again.

        The word set lives in the heap entry, as in Hugging Face: it lists the words
        in which the pair was counted or newly created when the entry was pushed,
        and the merge is applied to exactly those words. A pair normally gets one
        entry only, because new pairs always contain the brand-new token. The rare
        exception (we never saw it on pre-tokenized text) is a merge that *reuses*
        an existing token (see `_add_merge`): its pairs may already have an entry.
        Hugging Face then merges such a pair only in the newer entry's words; the
        older entry later comes back (the merged pair's own count is never
        decreased) and merges it again in its words, so the pair appears twice in
        the merge list. Keeping the word sets in the entries reproduces that.
        """
        # Step 2: each distinct word as byte-token ids, with its count.
        byte_ids = self.byte_ids
        words: list[list[int]] = []
        counts: list[int] = []
        for word, count in word_counts.items():
            words.append([byte_ids[b] for b in word.encode("utf-8")])
            counts.append(count)

        # Step 3: count all pairs, remembering where each one occurs.
        pair_counts: dict[Pair, int] = {}
        where: dict[Pair, set[int]] = {}
        for w, (word, count) in enumerate(zip(words, counts)):
            for pair in itertools.pairwise(word):
                pair_counts[pair] = pair_counts.get(pair, 0) + count
                where.setdefault(pair, set()).add(w)
        tie = itertools.count()
        heap = [(-pair_counts[p], p[0], p[1], next(tie), ws) for p, ws in where.items()]
        heapq.heapify(heap)

        # Step 4: merge the best pair until the vocabulary is full.
        total = max(0, vocab_size - self.vocab_size)
        report_every = max(1, total // 200)
        done = 0
        while self.vocab_size < vocab_size and heap:
            neg_count, left, right, _, word_set = heapq.heappop(heap)
            count = pair_counts[(left, right)]
            if -neg_count != count:  # stale: the count changed since this entry was pushed
                heapq.heappush(heap, (-count, left, right, next(tie), word_set))
                continue
            if count < 1 or count < min_frequency:
                break  # the best pair is too rare, so is every other one

            new_id = self._add_merge(left, right, count).new_id

            # Merge inside the affected words and apply the count changes.
            new_where: dict[Pair, set[int]] = {}
            for w in word_set:
                weight = counts[w]
                for pair, change in merge_word(words[w], left, right, new_id):
                    pair_counts[pair] = pair_counts.get(pair, 0) + change * weight
                    if change > 0:
                        new_where.setdefault(pair, set()).add(w)
            # Pairs that gained occurrences (those with the new token) join the heap.
            for pair, ws in new_where.items():
                if pair_counts[pair] > 0:
                    heapq.heappush(heap, (-pair_counts[pair], pair[0], pair[1], next(tie), ws))

            done += 1
            if progress is not None and done % report_every == 0 and done < total:
                progress(done, total)
        if progress is not None:
            progress(done, done)
