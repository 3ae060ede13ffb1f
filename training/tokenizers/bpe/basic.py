"""`BasicBPE`: the simplest byte-level BPE, to read first (in the spirit of minbpe).

No pre-tokenization: the whole training text is one long sequence of byte tokens.
Training is the textbook loop:

    repeat until the vocabulary is full:
        count every adjacent pair of tokens in the sequence
        take the most frequent pair (ties: smallest (left id, right id))
        give it a new token id and replace the pair everywhere, left to right

Recounting everything after every merge makes this O(text length x merges): fine
for a few kilobytes, far too slow for a real corpus (`RegexBPE` updates the counts
incrementally instead). Without pre-tokenization tokens also happily span word
boundaries ("e t", "d, "), which is why real tokenizers split into words first.

It uses the same ids, tie-break and stopping rule as Hugging Face: trained on one
text it learns the same merges as `tokenizers`' byte-level BPE with
`ByteLevel(use_regex=False)` (the tests check this).
"""

from __future__ import annotations

from training.errors import UserError
from training.tokenizers.bpe.base import ProgressFn, Tokenizer, TrainingInfo
from training.tokenizers.bpe.pairs import best_pair, get_pair_counts, merge_pair
from training.tokenizers.tokenizer import TextStats, _check_vocab_size


class BasicBPE(Tokenizer):
    """Byte-level BPE over the whole text as one sequence (no pre-tokenization).

    Example:
        >>> tok = BasicBPE().train("aaabdaaabac", vocab_size=263, min_frequency=1)
        >>> [tok.decode_bytes([i]) for i in tok.encode("aaabdaaabac")]
        [b'aaab', b'd', b'aaab', b'a', b'c']
    """

    def train(self, text: str, vocab_size: int, min_frequency: int = 2, progress: ProgressFn | None = None) -> BasicBPE:
        """Learn merges from `text` until the vocabulary has `vocab_size` tokens.

        Args:
            text: the training text (one sequence).
            vocab_size: final vocabulary size including the 256 bytes and the special tokens.
            min_frequency: stop when the most frequent pair occurs fewer times than this.
            progress: called after each merge with (merges_done, merges_total).

        Returns:
            self, trained.
        """
        self._reset()
        _check_vocab_size(vocab_size)
        if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
            raise UserError(f"min_frequency must be an integer >= 1, got {min_frequency!r}")
        stats = TextStats()  # hash and count the text, as the other trainers do
        for _ in stats.stream([text]):
            pass
        self.info = TrainingInfo(vocab_size, min_frequency, stats.num_docs, stats.num_chars, stats.digest.hexdigest())

        ids = [self.byte_ids[b] for b in text.encode("utf-8")]
        total = max(0, vocab_size - self.vocab_size)
        done = 0
        while self.vocab_size < vocab_size:
            counts = get_pair_counts(ids)
            if not counts:
                break  # fewer than two tokens left
            pair = best_pair(counts)
            if counts[pair] < min_frequency:
                break
            merge = self._add_merge(pair[0], pair[1], counts[pair])
            ids = merge_pair(ids, pair, merge.new_id)
            done += 1
            if progress is not None:
                progress(done, max(total, done))
        if progress is not None:
            progress(done, done)
        return self
