"""Use a from-scratch tokenizer elsewhere: as a Hugging Face folder or as a tiktoken `Encoding`.

The Hugging Face folder is what the rest of the playground loads (training,
`AutoTokenizer`, vLLM), so `train_bpe_folder` is a drop-in replacement for
`training.tokenizers.tokenizer.train_tokenizer` that uses our own trainer.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from training.errors import UserError
from training.tokenizers.bpe.base import FILE_NAME, GPT2_PATTERN, ProgressFn, Tokenizer
from training.tokenizers.bpe.regex_bpe import RegexBPE
from training.tokenizers.tokenizer import (
    _check_vocab_size,
    check_tokenizer_out_dir,
    save_tokenizer_folder,
)

if TYPE_CHECKING:
    import tiktoken
    import tokenizers


def to_hf_tokenizer(tok: Tokenizer) -> tokenizers.Tokenizer:
    """Build the equivalent `tokenizers.Tokenizer` (vocabulary, merges, special tokens, pipeline).

    The pipeline is the one `training.tokenizers.tokenizer.train_tokenizer` sets up: ByteLevel
    pre-tokenizer (no prefix space), ByteLevel decoder and post-processor. A tokenizer
    without pre-tokenization (`BasicBPE`) gets `use_regex=False`; a custom pattern is
    applied with a `Split` before the byte-level mapping.
    """
    from tokenizers import (
        AddedToken,
        Regex,
        decoders,
        models,
        pre_tokenizers,
        processors,
    )
    from tokenizers import Tokenizer as HFTokenizer

    merges = [(tok.token_str(m.left), tok.token_str(m.right)) for m in tok.encoding_merges()]
    hf = HFTokenizer(models.BPE(vocab=tok.get_vocab(), merges=merges))
    if tok.pattern == GPT2_PATTERN:
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    elif tok.pattern is None:
        hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    else:
        hf.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(tok.pattern), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ])
    hf.decoder = decoders.ByteLevel()
    hf.post_processor = processors.ByteLevel(trim_offsets=True)
    # Already in the vocabulary with ids 0..3; this marks them as never-split specials.
    by_id = sorted(tok.special_tokens.items(), key=lambda kv: kv[1])
    hf.add_special_tokens([AddedToken(t, special=True, normalized=False) for t, _ in by_id])
    return hf


def save_hf_folder(tok: Tokenizer, out_dir: Path, *, model_max_length: int = 2048) -> Path:
    """Save `tok` as a Hugging Face tokenizer folder (atomically), loadable by `AutoTokenizer` and vLLM.

    The folder has the same files as `training.tokenizers.tokenizer.train_tokenizer` writes
    (tokenizer.json, tokenizer_config.json with the ChatML template, training_meta.json);
    training_meta.json says `"trainer": "scratch"`. It also holds our own format,
    bpe.json (`Tokenizer.save`), which keeps how often each merge's pair occurred:
    the tokenizer lab (`training.tokenizers.labtokenizer`) reads it for merges and replays.

    Raises:
        UserError: if `out_dir` exists and is not a tokenizer folder.
    """
    out_dir = check_tokenizer_out_dir(out_dir)
    info = tok.info
    meta = {
        "vocab_size": info.vocab_size or tok.vocab_size,
        "min_frequency": info.min_frequency,
        "num_docs": info.num_docs,
        "num_chars": info.num_chars,
        "text_sha256": info.text_sha256,
        "trainer": "scratch",
        "model": "bpe",
        "tokenizer_class": type(tok).__name__,
    }
    return save_tokenizer_folder(to_hf_tokenizer(tok), out_dir, meta, model_max_length=model_max_length,
                                 extra_files={FILE_NAME: tok.to_json()})


def to_tiktoken(tok: Tokenizer, name: str = "playground-bpe") -> tiktoken.Encoding:
    """Build a `tiktoken.Encoding` from our ranks, offline.

    tiktoken has no merge list: its `mergeable_ranks` maps each token's *bytes* to
    its id, and encoding repeatedly joins the adjacent pair whose concatenation has
    the lowest id. Our ids grow with the merge order, so this reproduces our
    encoding, with one inherent difference: tiktoken joins *any* two neighbours
    whose bytes form a token, even if that token was learned from a different split
    (say "a"+"bc" when the merge was "ab"+"c"); a merge-based BPE never does. This
    is rare (see the tests for the measured rate).

    Args:
        tok: a trained tokenizer.
        name: the encoding's name.
    """
    import tiktoken

    pattern = tok.pattern
    if pattern is None:
        # No pre-tokenization: one piece per text. tiktoken needs *some* regex.
        pattern = r"[\s\S]+"
    return tiktoken.Encoding(
        name,
        pat_str=pattern,
        mergeable_ranks={data: i for i, data in tok.vocab.items()},
        special_tokens=dict(tok.special_tokens),
    )


def train_bpe_folder(
    texts: Iterable[str],
    vocab_size: int,
    out_dir: Path,
    *,
    min_frequency: int = 2,
    show_progress: bool = False,
    model_max_length: int = 2048,
    progress: ProgressFn | None = None,
) -> Path:
    """Like `training.tokenizers.tokenizer.train_tokenizer`, but trained with our `RegexBPE`.

    The result is the same folder (same vocabulary, merges and ids, since the
    trainers agree); only training_meta.json differs (`"trainer": "scratch"`), and
    the folder also holds bpe.json (see `save_hf_folder`).

    Args:
        texts: training documents (streamed once; may be a generator).
        vocab_size: final vocabulary size including bytes and special tokens.
        out_dir: destination folder; replaced atomically if it already exists.
        min_frequency: a pair must occur at least this often to be merged.
        show_progress: print progress to stderr (a simple percentage).
        model_max_length: the context length recorded in tokenizer_config.json.
        progress: called with (merges_done, merges_total), e.g. for a UI.

    Returns:
        `out_dir`, containing tokenizer.json, tokenizer_config.json and training_meta.json.

    Raises:
        UserError: for a bad vocab_size or min_frequency, no text, or an `out_dir`
            that is not a tokenizer folder.
    """
    _check_vocab_size(vocab_size)
    if min_frequency < 1:
        raise UserError(f"min_frequency must be >= 1, got {min_frequency}")
    out_dir = check_tokenizer_out_dir(out_dir)

    report = progress
    if show_progress:
        import sys

        def report(done: int, total: int) -> None:
            print(f"\rmerges {done}/{total}", end="\n" if done == total else "", file=sys.stderr, flush=True)
            if progress is not None:
                progress(done, total)

    tok = RegexBPE().train(texts, vocab_size, min_frequency=min_frequency, progress=report)
    if tok.info.num_chars == 0:
        raise UserError(f"no text to train the tokenizer for {out_dir} on")
    return save_hf_folder(tok, out_dir, model_max_length=model_max_length)
