"""A byte-level BPE like the project's, learned from a few texts (offline, milliseconds), and a
one-layer GPT-2 over it, for tests that need a real Hugging Face tokenizer or model but not the
project's trained ones."""

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


def tiny_model(tokenizer, seed: int = 0):
    """A 1-layer, 32-wide `GPT2LMHeadModel` over `tokenizer`, dropout off, in eval mode."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    eos = tokenizer.eos_token_id
    cfg = GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=len(tokenizer), n_positions=64,
                     bos_token_id=eos, eos_token_id=eos, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0)
    return GPT2LMHeadModel(cfg).eval()
