"""Train and load a byte-level BPE tokenizer (the GPT-2 recipe) with Hugging Face `tokenizers`.

Byte-level means the base alphabet is the 256 possible bytes, so *any* text
(emoji, accents, code) can be encoded without an "unknown" token and decoded back
exactly. BPE then learns merges of frequent byte pairs until the vocabulary is full.
(WordPiece and Unigram, for comparison, are in `training/tokenizers/hf_tokenizers.py`; our own
from-scratch BPE trainer is `training/tokenizers/bpe`.)

The result is saved with `transformers.PreTrainedTokenizerFast.save_pretrained`, so
the same folder works with `AutoTokenizer.from_pretrained`, with vLLM and with the
training code. Special tokens get fixed, low ids:

    0 <|endoftext|>  document separator; used as bos and eos
    1 <|pad|>        padding for batched inference / fine-tuning
    2 <|im_start|>   start of a chat turn (ChatML)
    3 <|im_end|>     end of a chat turn; the model learns to stop here
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from training.atomic import atomic_dir
from training.errors import UserError

EOS_TOKEN = "<|endoftext|>"
PAD_TOKEN = "<|pad|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"
SPECIAL_TOKENS = [EOS_TOKEN, PAD_TOKEN, IM_START, IM_END]
MAX_VOCAB_SIZE = 1_000_000
MIN_VOCAB_SIZE = 256 + len(SPECIAL_TOKENS)  # every byte plus the special tokens

# ChatML, as used by Qwen and others. Each turn is
#   <|im_start|>role\ncontent<|im_end|>\n
# and `add_generation_prompt=True` opens an assistant turn for the model to complete.
# vLLM's /v1/chat/completions refuses tokenizers without a chat template, so this
# is stored inside tokenizer_config.json.
# The {% generation %} ... {% endgeneration %} markers around each assistant reply
# (its <|im_end|> included) render nothing; they let `apply_chat_template(...,
# return_assistant_tokens_mask=True)` say which tokens the assistant wrote, which is
# what supervised fine-tuning computes its loss on (TRL's assistant_only_loss). The
# <|im_end|> is inside, so a tuned model learns to end its reply, and stops.
# A conversation that ends with an assistant reply ends at its <|im_end|>: the newline that
# separates turns comes only before a next turn. Otherwise prompt + reply would end on a token
# that fine-tuning never trains and generation never writes, and preference training (TRL's DPO
# takes the reply as everything after the prompt) would train and score it: the SFT model gives
# it about -14 nats, more than the rest of a short reply together.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- generation %}{{- message['content'] + '<|im_end|>' }}{%- endgeneration %}"
    "{%- if not loop.last or add_generation_prompt %}{{- '\\n' }}{%- endif %}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}"
    "{{- '<|im_start|>assistant\\n' }}"
    "{%- endif %}"
)


def _check_vocab_size(vocab_size: int, n_special: int = len(SPECIAL_TOKENS)) -> None:
    """Refuse a vocab_size that is not an integer or leaves no room for the 256 bytes and the special tokens.

    Args:
        vocab_size: the requested vocabulary size.
        n_special: how many special tokens the vocabulary holds (WordPiece and
            Unigram add an unknown token to `SPECIAL_TOKENS`).
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int):
        raise UserError(f"vocab_size must be an integer, got {vocab_size!r}")
    minimum = 256 + n_special
    if not minimum <= vocab_size <= MAX_VOCAB_SIZE:
        raise UserError(
            f"vocab_size must be between {minimum} (256 bytes + {n_special} special tokens) "
            f"and {MAX_VOCAB_SIZE}, got {vocab_size}"
        )


def train_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: Path,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
    model_max_length: int = 2048,
) -> Path:
    """Train a byte-level BPE tokenizer and save it as a Hugging Face tokenizer folder.

    Args:
        texts: training documents (streamed once; may be a generator).
        vocab_size: final vocabulary size including bytes and special tokens.
        out_dir: destination folder; replaced atomically if it already exists.
        min_frequency: a pair must occur at least this often to be merged.
        show_progress: show the `tokenizers` progress bars.
        model_max_length: the context length recorded in tokenizer_config.json.

    Returns:
        `out_dir`, containing tokenizer.json, tokenizer_config.json and training_meta.json.
    """
    _check_vocab_size(vocab_size)
    if min_frequency < 1:
        raise UserError(f"min_frequency must be >= 1, got {min_frequency}")
    out_dir = check_tokenizer_out_dir(out_dir)

    tok, trainer = byte_level_bpe(vocab_size, min_frequency=min_frequency, show_progress=show_progress)
    stats = TextStats()
    tok.train_from_iterator(stats.stream(texts), trainer=trainer)
    if stats.num_chars == 0:
        raise UserError(f"no text to train the tokenizer for {out_dir} on")
    meta = {"vocab_size": vocab_size, "min_frequency": min_frequency, **stats.as_meta(), "trainer": "hf", "model": "bpe"}
    return save_tokenizer_folder(tok, out_dir, meta, model_max_length=model_max_length)


def byte_level_bpe(vocab_size: int, *, min_frequency: int = 2, show_progress: bool = False):
    """An untrained byte-level BPE `tokenizers.Tokenizer` and its `BpeTrainer`, as `train_tokenizer` sets them up.

    Returns:
        (tokenizer, trainer): train with `tokenizer.train_from_iterator(texts, trainer=trainer)`.
    """
    from tokenizers import (
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )

    tok = Tokenizer(models.BPE())
    # add_prefix_space=False: "Hello" at the start of a document and " Hello" after a
    # space are different tokens, exactly as they appear in the text (lossless).
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=show_progress,
        special_tokens=SPECIAL_TOKENS,  # listed first, so they get ids 0..3
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, even unseen ones
    )
    return tok, trainer


def check_tokenizer_out_dir(out_dir: Path) -> Path:
    """Refuse an `out_dir` that exists and is not a tokenizer folder (replacing is fine for an old tokenizer).

    Returns:
        `out_dir` as a `Path`.
    """
    out_dir = Path(out_dir)
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())) and not (out_dir / "tokenizer.json").is_file():
        # Replacing is fine for an old tokenizer, never for some unrelated folder.
        raise UserError(f"refusing to overwrite {out_dir}: it exists and is not a tokenizer folder")
    return out_dir


class TextStats:
    """Hash and count training documents while a trainer consumes them.

    training_meta.json records the hash, so one can tell whether two tokenizers were
    trained on the same text.
    """

    def __init__(self) -> None:
        self.digest = hashlib.sha256()
        self.num_docs = 0
        self.num_chars = 0

    def stream(self, texts: Iterable[str]) -> Iterator[str]:
        """Yield `texts` unchanged, counting and hashing each one on the way."""
        for text in texts:
            self.digest.update(text.encode("utf-8"))
            self.digest.update(b"\x00")  # document boundary, so ["ab"] and ["a", "b"] differ
            self.num_chars += len(text)
            self.num_docs += 1
            yield text

    def as_meta(self) -> dict:
        """The training_meta.json fields: num_docs, num_chars, text_sha256."""
        return {"num_docs": self.num_docs, "num_chars": self.num_chars, "text_sha256": self.digest.hexdigest()}


def save_tokenizer_folder(
    tok,
    out_dir: Path,
    meta: dict,
    *,
    model_max_length: int = 2048,
    unk_token: str | None = None,
    extra_files: dict[str, str] | None = None,
) -> Path:
    """Save a trained `tokenizers.Tokenizer` as a Hugging Face tokenizer folder, atomically.

    Wraps it in a `PreTrainedTokenizerFast` with the special tokens and the ChatML
    chat template, so `AutoTokenizer.from_pretrained` and vLLM can load the folder.

    Args:
        tok: a `tokenizers.Tokenizer` whose vocabulary starts with `SPECIAL_TOKENS`.
        out_dir: destination folder; replaced atomically if it already exists.
        meta: what to record in training_meta.json; `actual_vocab_size` and
            `special_tokens` (name -> id) are added here.
        model_max_length: the context length recorded in tokenizer_config.json.
        unk_token: the unknown token of a WordPiece or Unigram model (byte-level
            BPE has none: every byte is in the vocabulary).
        extra_files: more files to write into the folder, name -> text (e.g. bpe.json).

    Returns:
        `out_dir`, containing tokenizer.json, tokenizer_config.json and training_meta.json.
    """
    from transformers import PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    hf_tok = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=PAD_TOKEN,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        # Cleanup would turn "a ." into "a." when decoding and break the round trip.
        clean_up_tokenization_spaces=False,
        **({"unk_token": unk_token} if unk_token else {}),
    )
    specials = SPECIAL_TOKENS + ([unk_token] if unk_token else [])
    meta = {
        **meta,
        "actual_vocab_size": len(hf_tok),
        "special_tokens": {t: hf_tok.convert_tokens_to_ids(t) for t in specials},
    }

    with atomic_dir(out_dir) as tmp:
        # save_jinja_files=False keeps the chat template inside tokenizer_config.json
        # (instead of a separate chat_template.jinja) where every loader finds it.
        hf_tok.save_pretrained(str(tmp), save_jinja_files=False)
        (tmp / "training_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
        for name, text in (extra_files or {}).items():
            (tmp / name).write_text(text, encoding="utf-8")
    return out_dir


def _looks_local(name: str) -> bool:
    """Guess whether a missing `name` was meant as a local path rather than a Hub id.

    Hub ids look like "gpt2" or "org/name"; paths start with "/", ".", "~" or have
    more than one "/".
    """
    return name.startswith(("/", ".", "~", "\\")) or name.count("/") > 1 or "\\" in name


def load_tokenizer(path_or_name: str | Path):
    """Load a tokenizer folder (or, when online, a Hugging Face Hub name).

    Args:
        path_or_name: folder written by `train_tokenizer` (or any folder with a
            tokenizer.json), or a Hub id such as "gpt2".

    Returns:
        A `transformers.PreTrainedTokenizerFast`.
    """
    from transformers import AutoTokenizer

    name = str(path_or_name)
    path = Path(name).expanduser()
    if path.exists() or _looks_local(name):
        if path.is_file() and path.name == "tokenizer.json":
            path = path.parent
        if not (path / "tokenizer.json").is_file():
            raise UserError(f"tokenizer not found: {name} (expected a folder with tokenizer.json)")
        return AutoTokenizer.from_pretrained(str(path))
    try:
        return AutoTokenizer.from_pretrained(name)
    except (OSError, ValueError) as e:  # not found, offline, invalid repo id
        raise UserError(f"tokenizer not found: {name} ({type(e).__name__}: {str(e).splitlines()[0]})") from e
