"""`playground bench tokenizer`: our from-scratch BPE against Hugging Face `tokenizers` and tiktoken.

On tinyshakespeare (~1.1 MB), by default:

* **training**: our `RegexBPE` and the `tokenizers` `BpeTrainer` (configured as
  `training.tokenizers.tokenizer.train_tokenizer` does) learn vocabularies of 1024 and 4096
  tokens from the same documents (the lines of the text: many documents, as the
  pipeline feeds them, which is also what lets `tokenizers` count words in
  parallel). Best of `repeats` runs; `train_ratio_*` is ours / hf (below 1: ours
  is faster).
* **parity**: at both sizes, the two trainers must learn the same merges and
  vocabulary, and encode the *whole* text (one string) to the same ids.
* **encoding** with the 4096 vocabulary, best of `repeats`:
  ours: `RegexBPE.encode(text)` (pure Python, one thread, starting with an empty
  word cache each time); hf: the backend of the saved tokenizer folder (what
  `tokenize_dataset` uses), the best of `encode_batch` over lines, over
  ~64 KB chunks of whole lines, and `encode_batch_fast` (no offsets) over lines,
  all parallel in Rust; tiktoken: an `Encoding` built offline from our merges
  (`to_tiktoken`), the best of `encode_ordinary(text)` and
  `encode_ordinary_batch(lines)`. Every method and its figure is reported;
  `encode_ratio_<x>_vs_ours` is x's speed over ours (above 1: x is faster).

Goals: our trainer reaches vocab 4096 in under 15 s; the hf path encodes at least
1M tokens/s. The figures go to reports/bench/tokenizer.json (`benchmarks.report.emit`).
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from training.errors import UserError
from training.workspace import PROJECT_ROOT

DEFAULT_TEXT = PROJECT_ROOT.parent / "shared" / "data" / "tinyshakespeare.txt"
VOCAB_SIZES = (1024, 4096)
GOAL_TRAIN_SECONDS = 15.0  # our trainer, vocab 4096, tinyshakespeare
GOAL_HF_TOKENS_PER_S = 1_000_000
CHUNK_CHARS = 64_000


def best_of(repeats: int, fn: Callable[[], Any], setup: Callable[[], Any] | None = None) -> tuple[float, Any]:
    """The shortest of `repeats` timed calls of `fn` (after an untimed `setup`), and the last result.

    The minimum, not the mean: on a shared machine the noise only ever adds time.
    """
    best, result = float("inf"), None
    for _ in range(max(1, repeats)):
        arg = setup() if setup is not None else None
        start = time.perf_counter()
        result = fn(arg) if setup is not None else fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def read_text(path: Path | str | None) -> tuple[Path, str]:
    """The benchmark text: `path`, or tinyshakespeare next to the project.

    Raises:
        UserError: if the file is missing, empty or not UTF-8.
    """
    path = Path(path).expanduser() if path else DEFAULT_TEXT
    if not path.is_file():
        hint = "" if path != DEFAULT_TEXT else " (the shared tinyshakespeare.txt; pass --text PATH for another file)"
        raise UserError(f"--text: {path} not found{hint}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"--text: {path} is not UTF-8 (byte offset {e.start})") from None
    if not text.strip():
        raise UserError(f"--text: {path} is empty")
    return path, text


def _hf_merges(hf_tok) -> list[tuple[str, str]]:
    merges = json.loads(hf_tok.to_str())["model"]["merges"]
    return [tuple(m.split(" ", 1)) if isinstance(m, str) else tuple(m) for m in merges]


def _chunks(lines: list[str], size: int) -> list[str]:
    """Consecutive lines joined into strings of about `size` characters."""
    out, current, n = [], [], 0
    for line in lines:
        current.append(line)
        n += len(line)
        if n >= size:
            out.append("".join(current))
            current, n = [], 0
    if current:
        out.append("".join(current))
    return out


def bench_tokenizer(text_path: Path | str | None = None, *, vocab_sizes: tuple[int, ...] = VOCAB_SIZES,
                    repeats: int = 3, emit_report: bool = True) -> dict:
    """Run the benchmark (see the module docstring), print a table and return the figures.

    Args:
        text_path: the text file; default tinyshakespeare (`DEFAULT_TEXT`).
        vocab_sizes: the vocabularies to train; the largest one is used for encoding.
        repeats: timed runs per measurement (the best counts).
        emit_report: write reports/bench/tokenizer.json and print the figures as
            the last line of stdout (`benchmarks.report.emit`).

    Returns:
        The figures, including `train_seconds_vocab<N>` (ours), `parity` and
        `encode_tokens_per_s_hf`.
    """
    import tiktoken
    import tokenizers

    from training.tokenizers.bpe import RegexBPE, Tokenizer, to_tiktoken
    from training.tokenizers.tokenizer import byte_level_bpe, load_tokenizer, train_tokenizer

    path, text = read_text(text_path)
    data_mb = len(text.encode("utf-8")) / 1e6
    lines = text.splitlines(keepends=True)  # the training documents
    print(f"bench tokenizer: {path.name}, {data_mb:.2f} MB, {len(lines):,} lines; best of {repeats} ...", flush=True)

    figures: dict[str, Any] = {"bench": "tokenizer", "text": path.name, "text_mb": round(data_mb, 3),
                               "documents": len(lines), "repeats": repeats}
    parity_detail, ours_by_vocab = {}, {}
    for vocab_size in vocab_sizes:
        # --- training: the same documents, vocab and min_frequency for both
        t_ours, ours = best_of(repeats, lambda v=vocab_size: RegexBPE().train(lines, v))

        def train_hf(pair):
            tok, trainer = pair
            tok.train_from_iterator(lines, trainer=trainer)
            return tok

        t_hf, hf = best_of(repeats, train_hf, setup=lambda v=vocab_size: byte_level_bpe(v))
        figures[f"train_seconds_vocab{vocab_size}"] = round(t_ours, 4)
        figures[f"train_seconds_hf_vocab{vocab_size}"] = round(t_hf, 4)
        figures[f"train_ratio_ours_vs_hf_vocab{vocab_size}"] = round(t_ours / t_hf, 3)

        # --- parity: merges, vocabulary, and the encoding of the whole text
        ours_merges = [(ours.token_str(m.left), ours.token_str(m.right)) for m in ours.encoding_merges()]
        same_merges = ours_merges == _hf_merges(hf) and ours.get_vocab() == hf.get_vocab(with_added_tokens=True)
        same_ids = ours.encode(text) == hf.encode(text, add_special_tokens=False).ids
        parity_detail[str(vocab_size)] = {"merges": same_merges, "encoding": same_ids,
                                          "vocab_size": ours.vocab_size}
        ours_by_vocab[vocab_size] = ours
        print(f"  vocab {vocab_size}: train ours {t_ours:.3f} s, hf {t_hf:.3f} s; "
              f"same merges {same_merges}, same ids {same_ids}", flush=True)
    figures["parity"] = all(p["merges"] and p["encoding"] for p in parity_detail.values())
    figures["parity_by_vocab"] = parity_detail

    # --- encoding throughput with the largest vocabulary
    vocab_size = max(vocab_sizes)
    ours = ours_by_vocab[vocab_size]
    state = ours.to_dict()
    # A fresh copy each run: the word cache starts empty, as for a new corpus.
    t, ids = best_of(repeats, lambda tok: tok.encode(text), setup=lambda: Tokenizer.from_dict(state))
    encode = {"ours": {"method": "RegexBPE.encode(text), 1 thread", "seconds": t, "tokens": len(ids)}}

    with tempfile.TemporaryDirectory() as tmp:
        # The wrapper path: a folder written by train_tokenizer, loaded as the pipeline does.
        folder = train_tokenizer(lines, vocab_size, Path(tmp) / "hf")
        backend = load_tokenizer(folder).backend_tokenizer
    chunks = _chunks(lines, CHUNK_CHARS)
    hf_methods = {
        "encode_batch(lines)": lambda: backend.encode_batch(lines, add_special_tokens=False),
        f"encode_batch({len(chunks)} chunks of ~64 KB)": lambda: backend.encode_batch(chunks, add_special_tokens=False),
        "encode_batch_fast(lines)": lambda: backend.encode_batch_fast(lines, add_special_tokens=False),
    }
    encode["hf"] = _best_method(hf_methods, repeats)

    enc = to_tiktoken(ours)
    tt_methods = {
        "encode_ordinary(text), 1 thread": lambda: [enc.encode_ordinary(text)],
        "encode_ordinary_batch(lines)": lambda: enc.encode_ordinary_batch(lines),
    }
    encode["tiktoken"] = _best_method(tt_methods, repeats)

    for name, e in encode.items():
        figures[f"encode_mb_per_s_{name}"] = round(data_mb / e["seconds"], 3)
        figures[f"encode_tokens_per_s_{name}"] = round(e["tokens"] / e["seconds"], 1)
        figures[f"encode_method_{name}"] = e["method"]
    figures["encode_hf_by_method_tokens_per_s"] = encode["hf"]["all"]
    figures["encode_tiktoken_by_method_tokens_per_s"] = encode["tiktoken"]["all"]
    figures["encode_vocab_size"] = vocab_size
    figures["encode_ratio_hf_vs_ours"] = round(encode["ours"]["seconds"] / encode["hf"]["seconds"], 3)
    figures["encode_ratio_tiktoken_vs_ours"] = round(encode["ours"]["seconds"] / encode["tiktoken"]["seconds"], 3)

    # --- goals
    largest = f"train_seconds_vocab{vocab_size}"
    figures["goal_train_seconds"] = GOAL_TRAIN_SECONDS
    figures["goal_train_met"] = figures[largest] < GOAL_TRAIN_SECONDS
    figures["goal_hf_tokens_per_s"] = GOAL_HF_TOKENS_PER_S
    figures["goal_hf_encode_met"] = figures["encode_tokens_per_s_hf"] >= GOAL_HF_TOKENS_PER_S
    figures["host"] = (f"{platform.machine()} {os.cpu_count()} cpus, tokenizers {tokenizers.__version__}, "
                       f"tiktoken {tiktoken.__version__}, python {platform.python_version()}")

    print_table(figures, vocab_sizes)
    if emit_report:
        from benchmarks.report import emit

        emit("tokenizer", figures)
    return figures


def _best_method(methods: dict[str, Callable[[], list]], repeats: int) -> dict:
    """Time each method (best of `repeats`); the fastest one, with tokens/s for all of them."""
    timed = {}
    for name, fn in methods.items():
        seconds, out = best_of(repeats, fn)
        tokens = sum(len(e.ids) if hasattr(e, "ids") else len(e) for e in out)
        timed[name] = (seconds, tokens)
    name = max(timed, key=lambda k: timed[k][1] / timed[k][0])
    seconds, tokens = timed[name]
    return {"method": name, "seconds": seconds, "tokens": tokens,
            "all": {k: round(n / s, 1) for k, (s, n) in timed.items()}}


def print_table(f: dict, vocab_sizes: tuple[int, ...]) -> None:
    """The figures as a readable table, with the goals."""
    print(f"\n{'training':<12}{'ours s':>10}{'hf s':>10}{'ours/hf':>10}   parity (merges, ids)")
    for v in vocab_sizes:
        p = f["parity_by_vocab"][str(v)]
        print(f"vocab {v:<6}{f[f'train_seconds_vocab{v}']:>10.3f}{f[f'train_seconds_hf_vocab{v}']:>10.3f}"
              f"{f[f'train_ratio_ours_vs_hf_vocab{v}']:>10.2f}   {p['merges']}, {p['encoding']}")
    print(f"\n{'encoding':<10}{'MB/s':>9}{'tokens/s':>14}   method (vocab {f['encode_vocab_size']})")
    for name in ("ours", "hf", "tiktoken"):
        print(f"{name:<10}{f[f'encode_mb_per_s_{name}']:>9.2f}{f[f'encode_tokens_per_s_{name}']:>14,.0f}"
              f"   {f[f'encode_method_{name}']}")
    for name, tps in f["encode_hf_by_method_tokens_per_s"].items():
        print(f"  hf {name}: {tps:,.0f} tokens/s")
    v = max(vocab_sizes)

    def met(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(f"\ngoal: our trainer reaches vocab {v} in < {f['goal_train_seconds']:.0f} s: "
          f"{f[f'train_seconds_vocab{v}']:.2f} s, {met(f['goal_train_met'])}")
    print(f"goal: hf encodes >= {f['goal_hf_tokens_per_s']:,} tokens/s: "
          f"{f['encode_tokens_per_s_hf']:,.0f} tokens/s, {met(f['goal_hf_encode_met'])}")
    print(f"parity with Hugging Face at every size: {f['parity']}\n", flush=True)
