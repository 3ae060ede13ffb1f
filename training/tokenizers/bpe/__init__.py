"""A from-scratch byte-level BPE tokenizer that matches Hugging Face `tokenizers` exactly.

Read in this order:

    bytes_unicode.py  how bytes are written as printable characters ("Ġthe")
    pairs.py          count pairs, pick the best (Hugging Face's tie-break), merge it
    base.py           vocabulary, merges, encode/decode, save/load (`Tokenizer`)
    basic.py          `BasicBPE`: the textbook training loop, no pre-tokenization
    regex_bpe.py      `RegexBPE`: GPT-2 pre-tokenization + fast incremental training
    export.py         to a Hugging Face folder (`train_bpe_folder`) or to tiktoken

Example:
    >>> from training.tokenizers.bpe import RegexBPE
    >>> tok = RegexBPE().train(open("tinyshakespeare.txt").read(), vocab_size=1024)  # doctest: +SKIP
    >>> tok.encode("To be, or not to be")  # doctest: +SKIP
"""

from training.tokenizers.bpe.base import (
    GPT2_PATTERN,
    Merge,
    ReplayStep,
    Tokenizer,
    TrainingInfo,
)
from training.tokenizers.bpe.basic import BasicBPE
from training.tokenizers.bpe.bytes_unicode import (
    ALPHABET,
    BYTE_TO_UNICODE,
    UNICODE_TO_BYTE,
    from_byte_level,
    to_byte_level,
)
from training.tokenizers.bpe.export import (
    save_hf_folder,
    to_hf_tokenizer,
    to_tiktoken,
    train_bpe_folder,
)
from training.tokenizers.bpe.pairs import best_pair, get_pair_counts, merge_pair
from training.tokenizers.bpe.regex_bpe import RegexBPE, merge_word

load = Tokenizer.load

__all__ = [
    "ALPHABET",
    "BYTE_TO_UNICODE",
    "GPT2_PATTERN",
    "UNICODE_TO_BYTE",
    "BasicBPE",
    "Merge",
    "RegexBPE",
    "ReplayStep",
    "Tokenizer",
    "TrainingInfo",
    "best_pair",
    "from_byte_level",
    "get_pair_counts",
    "load",
    "merge_pair",
    "merge_word",
    "save_hf_folder",
    "to_byte_level",
    "to_hf_tokenizer",
    "to_tiktoken",
    "train_bpe_folder",
]
