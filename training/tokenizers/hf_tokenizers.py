"""The three classic subword models, trained with Hugging Face `tokenizers`: BPE, WordPiece, Unigram.

All three learn a vocabulary of frequent pieces from text; they differ in how
they build it and in what they do with text they cannot cover:

    bpe        byte-level BPE, the GPT-2 recipe (`training.tokenizers.tokenizer.train_tokenizer`).
               Starts from the 256 bytes and *merges* the most frequent pair, again
               and again. Every text is encodable and decodes back exactly.
    wordpiece  BERT's model. Text is first cut into words at whitespace and
               punctuation (`BertPreTokenizer`); a word is split greedily into the
               longest pieces in the vocabulary, continuation pieces start with
               "##" ("playing" -> "play", "##ing"). A word with a character outside
               the vocabulary becomes `[UNK]`, and whitespace is not kept: decoding
               gives "Hello, world" for "Hello,\n\n  world" (the decoder puts one
               space between words and none before punctuation). Lossy, on
               purpose: it shows what byte-level models fix.
    unigram    The SentencePiece model (T5, ALBERT, and with byte fallback Llama 1/2).
               Starts from a *large* set of candidate pieces and *removes* the ones
               whose loss hurts the corpus likelihood least; encoding picks the most
               probable segmentation (Viterbi). Spaces are kept as a visible "▁"
               (`Metaspace`), and characters outside the vocabulary fall back to
               byte tokens "<0x00>".."<0xFF>", so like byte-level BPE it is lossless
               (see `_add_byte_fallback` for why both, and the one caveat).

Every folder is saved with `training.tokenizers.tokenizer.save_tokenizer_folder`, so it loads
with `AutoTokenizer`, vLLM and the training pipeline, and has the playground's
special tokens at ids 0..3. WordPiece and Unigram add `UNK_TOKEN` as id 4 (they
need an unknown token; BERT's [CLS]/[SEP]/[MASK] are left out: a causal LM has no
use for them, and "<|endoftext|>" and "<|pad|>" play the roles of bos/eos and pad).
training_meta.json records `"trainer": "hf"` and `"model"`.

`tokenizers` has no progress callback; `progress` is called at the start (0, 1) and
at the end (1, 1), and `show_progress` shows the library's own progress bars.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Literal, get_args

from training.errors import UserError
from training.tokenizers.tokenizer import (
    SPECIAL_TOKENS,
    TextStats,
    _check_vocab_size,
    check_tokenizer_out_dir,
    save_tokenizer_folder,
    train_tokenizer,
)

ModelName = Literal["bpe", "wordpiece", "unigram"]
MODELS: tuple[str, ...] = get_args(ModelName)
UNK_TOKEN = "[UNK]"
WORDPIECE_PREFIX = "##"  # marks a piece that continues a word
METASPACE = "▁"  # U+2581, how Unigram (SentencePiece) writes a space inside a piece
# How far below the least likely learned piece the byte pieces "<0xNN>" score: far
# enough that the Viterbi search never picks one for *literal* text such as "<0x41>".
BYTE_PIECE_PENALTY = 1000.0
# Characters a Unigram vocabulary always holds as pieces, seen in training or not:
# printable ASCII, tab and newline. Byte fallback is then only for non-ASCII
# characters, and "<", "0", "x", ... spell out a literal "<0x41>" (see above).
UNIGRAM_ALPHABET: list[str] = [chr(c) for c in range(0x21, 0x7F)] + ["\t", "\n"]

# progress(done, total), as `training.tokenizers.bpe.ProgressFn`.
ProgressFn = Callable[[int, int], None]


def special_tokens_for(model: str) -> list[str]:
    """The special tokens at the start of a `model` vocabulary, in id order."""
    return SPECIAL_TOKENS if model == "bpe" else [*SPECIAL_TOKENS, UNK_TOKEN]


def check_vocab_size(vocab_size: int, model: str = "bpe") -> None:
    """Raise `UserError` unless `vocab_size` holds the 256 bytes plus the special tokens of `model`."""
    _check_model(model)
    _check_vocab_size(vocab_size, len(special_tokens_for(model)))


def _check_model(model: str) -> None:
    if model not in MODELS:
        raise UserError(f"model must be one of {', '.join(MODELS)}, got {model!r}")


def train_hf_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: Path,
    *,
    model: ModelName = "bpe",
    min_frequency: int = 2,
    show_progress: bool = False,
    model_max_length: int = 2048,
    progress: ProgressFn | None = None,
) -> Path:
    """Train a `model` tokenizer with Hugging Face `tokenizers` and save it as a tokenizer folder.

    Args:
        texts: training documents (streamed once; may be a generator).
        vocab_size: final vocabulary size, special tokens included.
        out_dir: destination folder; replaced atomically if it already exists.
        model: "bpe" (byte-level), "wordpiece" or "unigram" (see the module docstring).
        min_frequency: a pair (BPE, WordPiece) must occur at least this often to be
            merged. Unigram has no such setting; it is recorded but unused.
        show_progress: show the `tokenizers` progress bars.
        model_max_length: the context length recorded in tokenizer_config.json.
        progress: called with (0, 1) before training and (1, 1) after saving.

    Returns:
        `out_dir`, containing tokenizer.json, tokenizer_config.json and training_meta.json.

    Raises:
        UserError: for an unknown model, a vocab_size or min_frequency out of range,
            no text, or an `out_dir` that exists and is not a tokenizer folder.
    """
    check_vocab_size(vocab_size, model)
    if isinstance(min_frequency, bool) or not isinstance(min_frequency, int) or min_frequency < 1:
        raise UserError(f"min_frequency must be an integer >= 1, got {min_frequency!r}")
    out_dir = check_tokenizer_out_dir(out_dir)
    if progress is not None:
        progress(0, 1)
    if model == "bpe":
        out = train_tokenizer(texts, vocab_size, out_dir, min_frequency=min_frequency,
                              show_progress=show_progress, model_max_length=model_max_length)
    else:
        build = _wordpiece if model == "wordpiece" else _unigram
        tok, trainer, finish = build(vocab_size, min_frequency, show_progress)
        stats, chars = TextStats(), set()

        def stream() -> Iterable[str]:
            for text in stats.stream(texts):
                chars.update(text)  # the distinct characters, for the error below
                yield text

        def too_small(need: int) -> UserError:
            # Unigram keeps every character as a piece, and the 256 byte pieces come on top.
            return UserError(f"vocab_size={vocab_size} is too small for a {model} model of this text "
                             f"({len(chars)} distinct characters): use vocab_size >= {need}")

        try:
            tok.train_from_iterator(stream(), trainer=trainer)
        except Exception as e:
            if "not large enough to contain all chars" not in str(e):
                raise
            raise too_small(256 + len(special_tokens_for(model)) + len(chars | set(UNIGRAM_ALPHABET))) from None
        if stats.num_chars == 0:
            raise UserError(f"no text to train the tokenizer for {out_dir} on")
        finish(tok)
        if tok.get_vocab_size() > vocab_size:  # the Unigram trainer overshoots rather than drop a character
            raise too_small(tok.get_vocab_size())
        meta = {"vocab_size": vocab_size, "min_frequency": min_frequency, **stats.as_meta(),
                "trainer": "hf", "model": model}
        out = save_tokenizer_folder(tok, out_dir, meta, model_max_length=model_max_length, unk_token=UNK_TOKEN)
    if progress is not None:
        progress(1, 1)
    return out


def _wordpiece(vocab_size: int, min_frequency: int, show_progress: bool):
    """A cased BERT WordPiece: (tokenizer, trainer, finish)."""
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        normalizers,
        pre_tokenizers,
        trainers,
    )

    tok = Tokenizer(models.WordPiece(unk_token=UNK_TOKEN, continuing_subword_prefix=WORDPIECE_PREFIX))
    # BERT's normalizer, but cased and with accents kept (like bert-base-cased):
    # lowercasing and stripping accents would make the comparison with the other
    # models unfair. clean_text drops control characters and maps every whitespace
    # character to a plain space; offsets still point into the original text.
    tok.normalizer = normalizers.BertNormalizer(clean_text=True, handle_chinese_chars=True,
                                                strip_accents=False, lowercase=False)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()  # split at whitespace and punctuation
    tok.decoder = decoders.WordPiece(prefix=WORDPIECE_PREFIX)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=show_progress,
        special_tokens=special_tokens_for("wordpiece"),  # ids 0..4
        continuing_subword_prefix=WORDPIECE_PREFIX,
    )
    return tok, trainer, lambda t: None


def _unigram(vocab_size: int, min_frequency: int, show_progress: bool):
    """A SentencePiece-style Unigram with byte fallback: (tokenizer, trainer, finish)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.Unigram())
    # "Hello world" -> "Hello", "▁world": the space becomes part of the next piece,
    # as in byte-level BPE ("Ġworld"). prepend_scheme="never": no space is invented
    # at the start, so decoding gives back exactly the input.
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="never", split=True)
    trainer = trainers.UnigramTrainer(
        vocab_size=vocab_size - 256,  # the 256 byte pieces are added after training
        show_progress=show_progress,
        special_tokens=special_tokens_for("unigram"),  # ids 0..4
        unk_token=UNK_TOKEN,
        initial_alphabet=UNIGRAM_ALPHABET,
    )
    return tok, trainer, _add_byte_fallback


def _add_byte_fallback(tok) -> None:
    """Append the 256 byte pieces "<0x00>".."<0xFF>" to a trained Unigram and turn byte fallback on.

    Why both Metaspace and byte fallback: Metaspace makes *spaces* survive (they
    become "▁"), byte fallback makes *rare characters* survive: a character with no
    piece of its own (an emoji, a letter of another script, a tab) is written as
    its UTF-8 bytes instead of `[UNK]`. The `tokenizers` trainer cannot add the
    byte pieces itself, so we rebuild the model with them, scored far below every
    learned piece (`BYTE_PIECE_PENALTY`). The decoder turns "▁" back into spaces and
    byte pieces back into characters; the one caveat is that a "▁" typed in the
    input itself also decodes as a space.
    """
    import json

    from tokenizers import decoders, models

    data = json.loads(tok.to_str())["model"]
    pieces = [(piece, score) for piece, score in data["vocab"]]
    lowest = min(score for _, score in pieces)
    pieces += [(f"<0x{b:02X}>", lowest - BYTE_PIECE_PENALTY) for b in range(256)]
    tok.model = models.Unigram(pieces, data["unk_id"], True)
    tok.decoder = decoders.Sequence([decoders.Replace(METASPACE, " "), decoders.ByteFallback(), decoders.Fuse()])


__all__ = [
    "METASPACE",
    "MODELS",
    "UNIGRAM_ALPHABET",
    "UNK_TOKEN",
    "WORDPIECE_PREFIX",
    "ModelName",
    "check_vocab_size",
    "special_tokens_for",
    "train_hf_tokenizer",
]
