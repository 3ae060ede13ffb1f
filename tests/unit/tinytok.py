"""A byte-level BPE like the project's, learned from a few texts (offline, milliseconds), for tests
that need a real Hugging Face tokenizer but not the project's trained one."""

from __future__ import annotations

from collections.abc import Iterable


def byte_bpe(texts: Iterable[str], vocab_size: int = 300):
    """A `PreTrainedTokenizerFast` learned from `texts`, with <|endoftext|> as its bos and eos token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>")
