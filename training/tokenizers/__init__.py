"""Tokenizers: the from-scratch BPE (`bpe/`), Hugging Face `tokenizers` wrappers and the tokenizer lab."""
