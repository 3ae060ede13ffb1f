"""Data preparation: text sources -> train/val JSONL -> token shards -> training batches.

    <dataset_dir>/
      manifest.json            what went in (sources, input sha256s, split) and came out
      train.jsonl, val.jsonl   one {"text": ...} per document
      tokens/<tokenizer_id>/
        manifest.json          inputs and outputs with sha256, token counts, dtype
        train.bin, val.bin     all token ids back to back, each document followed by eos

Each step records sha256 fingerprints, so re-running it on the same inputs is a no-op,
and writes into a temp folder that is renamed into place, so a crash never leaves a
half-written dataset. Training reads the .bin files through `TokenData`, a memory
map: the OS pages in only the windows a batch needs, so data larger than RAM works.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import random
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from training.atomic import atomic_dir
from training.data import corpus
from training.errors import UserError

TEXT_EXTS = (".txt", ".jsonl", ".parquet")
SPLITS = ("train", "val")
_SPLIT_CODE = {"train": 0, "val": 1}  # part of the batch RNG seed
_ENCODE_CHUNK_CHARS = 4_000_000  # tokenize this much text at a time: bounded memory


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _intact(folder: Path, outputs: dict) -> bool:
    """True when every recorded output file still has its recorded sha256."""
    return all((folder / f).is_file() and sha256_file(folder / f) == o["sha256"] for f, o in outputs.items())


def _progress(items: Iterable, on: bool, desc: str) -> Iterable:
    if not on:
        return items
    from tqdm import tqdm
    # disable=None: bars on a terminal only, so job logs and captured stderr stay clean.
    return tqdm(items, desc=desc, unit=" it", disable=None)


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _files_of(path: Path) -> list[Path]:
    """The data files a local source stands for (one file, or a folder's files, sorted)."""
    if not path.exists():
        raise UserError(f"source not found: {path}")
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in TEXT_EXTS
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise UserError(f"no {'/'.join(TEXT_EXTS)} files in directory: {path}")
        return files
    if path.suffix.lower() not in TEXT_EXTS:
        raise UserError(f"unsupported file type {path.suffix or '(none)'} for {path}; use one of {', '.join(TEXT_EXTS)}")
    return [path]


def _parse_hf(spec: str) -> tuple[str, str | None, str]:
    """Split "hf:NAME[:CONFIG][@SPLIT]" into (name, config, split); NAME may be a local folder."""
    rest, split, config = spec[3:], "train", None
    if "@" in rest and not Path(rest).exists():
        rest, split = rest.rsplit("@", 1)
    name = rest
    if ":" in rest and not Path(rest).exists():
        name, config = rest.split(":", 1)
    if not name or not split or config == "":
        raise UserError(f"bad source spec {spec!r}; expected hf:NAME, hf:NAME:CONFIG or hf:NAME@SPLIT")
    return name, config, split


def _iter_txt(path: Path) -> Iterator[str]:
    # Documents are separated by blank lines; reading line by line means a huge file
    # never has to fit in memory.
    lines: list[str] = []
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in itertools.chain(f, ["\n"]):  # the extra blank line flushes the last doc
            if line.strip():
                lines.append(line)
            elif lines:
                yield "".join(lines).rstrip("\n")
                lines = []


def _iter_jsonl(path: Path, field: str) -> Iterator[str]:
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except ValueError as e:
                raise UserError(f"invalid JSON at {path}:{n}: {e}") from e
            if not isinstance(row, dict) or field not in row:
                raise UserError(f"text field {field!r} missing at {path}:{n}")
            if row[field] is not None:
                yield str(row[field])


def _iter_parquet(path: Path, field: str) -> Iterator[str]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    if field not in pf.schema_arrow.names:
        raise UserError(f"text field {field!r} missing in {path} (columns: {', '.join(pf.schema_arrow.names)})")
    for batch in pf.iter_batches(columns=[field], batch_size=1024):
        yield from (t for t in batch.column(0).to_pylist() if t is not None)


def _iter_hf(spec: str, field: str) -> Iterator[str]:
    import datasets  # imported lazily: slow to import and only needed here

    name, config, split = _parse_hf(spec)
    try:
        ds = datasets.load_dataset(name, config, split=split)
    except (OSError, ValueError, ConnectionError) as e:  # unknown name/config/split, offline
        raise UserError(f"cannot load {spec}: {type(e).__name__}: {(str(e) or '?').splitlines()[0]}") from e
    if field not in ds.column_names:
        raise UserError(f"text field {field!r} missing in {spec} (columns: {', '.join(ds.column_names)})")
    for batch in ds.select_columns([field]).iter(batch_size=1024):
        yield from (t for t in batch[field] if t is not None)


def _iter_files(files: list[Path], field: str) -> Iterator[str]:
    readers = {".txt": lambda f, _field: _iter_txt(f), ".jsonl": _iter_jsonl, ".parquet": _iter_parquet}
    for f in files:
        yield from readers[f.suffix.lower()](f, field)


def iter_source(spec: str, *, text_field: str = "text", synthetic_chars: int = 2_000_000,
                synthetic_seed: int = 0) -> Iterator[str]:
    """Yield the non-empty documents of one source.

    Args:
        spec: "synthetic"; a local .txt (blank-line separated), .jsonl or .parquet file;
            a directory of such files (recursive, sorted); or "hf:NAME[:CONFIG][@SPLIT]"
            for `datasets.load_dataset` (NAME may be a local folder of data files).
        text_field: JSONL key / Parquet or dataset column holding the text.
        synthetic_chars: size of the "synthetic" source in characters.
        synthetic_seed: seed of the "synthetic" source.

    Returns:
        An iterator of documents; whitespace-only documents are skipped.
    """
    if spec == "synthetic":
        docs: Iterator[str] = corpus.generate_documents(synthetic_chars, seed=synthetic_seed)
    elif spec.startswith("hf:"):
        docs = _iter_hf(spec, text_field)
    else:
        docs = _iter_files(_files_of(Path(spec).expanduser()), text_field)  # validates paths up front
    return (d for d in docs if d.strip())


def _local_inputs(spec: str) -> list[Path]:
    """Local files a spec reads (hashed for the fingerprint); [] for synthetic and Hub data."""
    if spec == "synthetic":
        return []
    if spec.startswith("hf:"):
        p = Path(_parse_hf(spec)[0]).expanduser()
        if not p.exists():
            return []  # a Hub dataset: identified by its name only
        return [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and ".cache" not in f.parts)
    return _files_of(Path(spec).expanduser())


class _JsonlWriter:
    """Writes {"text": ...} lines while hashing and counting them."""

    def __init__(self, path: Path):
        self.f = open(path, "wb")  # noqa: SIM115  (closed by _split_into, after the last document)
        self.sha, self.docs, self.chars = hashlib.sha256(), 0, 0

    def write(self, doc: str) -> None:
        line = (json.dumps({"text": doc}, ensure_ascii=False) + "\n").encode("utf-8")
        self.f.write(line)
        self.sha.update(line)
        self.docs, self.chars = self.docs + 1, self.chars + len(doc)


def prepare_text(sources: list[str], dataset_dir: Path, *, val_fraction: float = 0.05, split_seed: int = 1337,
                 text_field: str = "text", synthetic_chars: int = 2_000_000, synthetic_seed: int = 0,
                 progress: bool = False) -> dict[str, Any]:
    """Read all sources and write train.jsonl / val.jsonl plus manifest.json.

    Args:
        sources: source specs (see `iter_source`), read in order.
        dataset_dir: output folder; replaced atomically (tokens included) when inputs changed.
        val_fraction: expected share of documents put in val (at least one document).
        split_seed: seeds the per-document train/val draw.
        text_field: field/column holding the text in JSONL, Parquet and hf: sources.
        synthetic_chars: size of a "synthetic" source in characters.
        synthetic_seed: seed of a "synthetic" source.
        progress: show a progress bar.

    Returns:
        The manifest, plus "reused": True when the existing dataset already matched.
    """
    dataset_dir = Path(dataset_dir)
    if not sources or not all(isinstance(s, str) and s for s in sources):
        raise UserError(f"sources must be a non-empty list of source specs, got {sources!r}")
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"val_fraction must be between 0 and 1 (exclusive), got {val_fraction}")
    inputs = [{"path": str(p), "sha256": sha256_file(p), "size": p.stat().st_size}
              for spec in sources for p in _local_inputs(spec)]
    fingerprint = {
        "sources": list(sources), "inputs": inputs, "val_fraction": val_fraction, "split_seed": split_seed,
        "text_field": text_field,
        "synthetic": ({"chars": synthetic_chars, "seed": synthetic_seed, "version": corpus.VERSION}
                      if "synthetic" in sources else None),
    }
    old = _read_json(dataset_dir / "manifest.json")
    is_dataset = bool(old) and old.get("kind") == "text"
    if dataset_dir.exists() and (not dataset_dir.is_dir() or any(dataset_dir.iterdir())) and not is_dataset:
        # Never delete a folder we did not create (it might hold the user's sources).
        raise UserError(f"refusing to overwrite {dataset_dir}: it exists and is not a prepared dataset")
    if is_dataset and old.get("fingerprint") == fingerprint and _intact(dataset_dir, old["outputs"]):
        return {**old, "reused": True}

    with atomic_dir(dataset_dir) as tmp:
        docs = (d for spec in sources for d in iter_source(
            spec, text_field=text_field, synthetic_chars=synthetic_chars, synthetic_seed=synthetic_seed))
        out = _split_into(tmp, _progress(docs, progress, "prepare"), val_fraction, split_seed)
        if out is None:
            raise UserError(f"no text found in sources: {', '.join(sources)}")
        if out["val"].docs == 0:
            raise UserError(f"only 1 document in sources {', '.join(sources)}; need at least 2 "
                            "(in .txt files, separate documents with a blank line)")
        manifest = {
            "kind": "text", "sources": list(sources), "inputs": inputs,
            "split": {"seed": split_seed, "val_fraction": val_fraction},
            "counts": {s: {"docs": w.docs, "chars": w.chars} for s, w in out.items()},
            "outputs": {f"{s}.jsonl": {"sha256": w.sha.hexdigest(), "size": (tmp / f"{s}.jsonl").stat().st_size}
                        for s, w in out.items()},
            "fingerprint": fingerprint, "created_at": _now(),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {**manifest, "reused": False}


def _split_into(tmp: Path, docs: Iterable[str], val_fraction: float, split_seed: int) -> dict | None:
    """Stream docs into train/val writers; returns them, or None when there were no docs."""
    # One uniform draw per document, in reading order: nothing is shuffled or held in
    # memory, and the same inputs always give the same split.
    rng = random.Random(split_seed)
    out = {s: _JsonlWriter(tmp / f"{s}.jsonl") for s in SPLITS}
    held = None  # the latest train doc is written one step late, so it can still become val
    try:
        for i, doc in enumerate(docs):
            if i > 0 and rng.random() < val_fraction:  # doc 0 always trains
                out["val"].write(doc)
                continue
            if held is not None:
                out["train"].write(held)
            held = doc
        if held is None:
            return None
        # Tiny data can end with an empty val split; the held doc fills it (train keeps doc 0).
        out["val" if out["val"].docs == 0 and out["train"].docs > 0 else "train"].write(held)
    finally:
        for w in out.values():
            w.f.close()
    return out


def _tokenize_split(src: Path, dst: Path, backend, eos: int, dtype, progress: bool) -> tuple[str, int]:
    """Encode one JSONL split into a .bin file in chunks; returns (sha256, token count)."""
    def chunks() -> Iterator[list[str]]:
        chunk, size = [], 0
        with open(src, encoding="utf-8") as f:
            for line in f:
                chunk.append(json.loads(line)["text"])
                size += len(chunk[-1])
                if size >= _ENCODE_CHUNK_CHARS:
                    yield chunk
                    chunk, size = [], 0
        if chunk:
            yield chunk

    sha, n = hashlib.sha256(), 0
    with open(dst, "wb") as f:
        for chunk in _progress(chunks(), progress, f"tokenize {src.stem}"):
            encs = backend.encode_batch(chunk, add_special_tokens=False)  # parallel, in Rust
            ids = np.fromiter((t for e in encs for t in (*e.ids, eos)), dtype=np.int64)
            data = ids.astype(dtype).tobytes()
            f.write(data)
            sha.update(data)
            n += len(ids)
    return sha.hexdigest(), n


def tokenize_dataset(dataset_dir: Path, tokenizer_dir: Path, tokenizer_id: str, *,
                     progress: bool = False) -> dict[str, Any]:
    """Encode train.jsonl / val.jsonl into tokens/<tokenizer_id>/{train,val}.bin.

    Args:
        dataset_dir: a folder written by `prepare_text`.
        tokenizer_dir: a tokenizer folder with tokenizer.json (e.g. from `train_tokenizer`).
        tokenizer_id: name of the output subfolder, e.g. "bpe4k".
        progress: show a progress bar.

    Returns:
        The tokens manifest, plus "reused": True when the existing shards already matched.
    """
    dataset_dir, tokenizer_dir = Path(dataset_dir), Path(tokenizer_dir)
    text = _read_json(dataset_dir / "manifest.json")
    if not text or text.get("kind") not in ("text", "snapshot"):  # prepare_text's, or a pipeline snapshot
        raise UserError(f"no prepared text dataset at {dataset_dir} (run data prepare first)")
    if not tokenizer_id or tokenizer_id in (".", "..") or "/" in tokenizer_id or "\\" in tokenizer_id:
        raise UserError(f"tokenizer_id must be a plain folder name, got {tokenizer_id!r}")
    from training.tokenizers.tokenizer import (
        load_tokenizer,  # here: transformers is slow to import, most callers skip it
    )

    tok = load_tokenizer(str(tokenizer_dir))  # a str, so a Hub id works too (when online)
    if tok.eos_token_id is None:
        raise UserError(f"tokenizer {tokenizer_dir} has no eos token")
    out_dir = dataset_dir / "tokens" / tokenizer_id
    inputs = {f"{s}.jsonl": {"sha256": sha256_file(dataset_dir / f"{s}.jsonl")} for s in SPLITS}
    tok_file = tokenizer_dir / "tokenizer.json"
    inputs["tokenizer.json"] = {"path": str(tok_file), "sha256": sha256_file(tok_file) if tok_file.is_file()
                                else hashlib.sha256(tok.backend_tokenizer.to_str().encode()).hexdigest()}
    old = _read_json(out_dir / "manifest.json")
    if old and old.get("inputs") == inputs and _intact(out_dir, old.get("outputs", {})):
        return {**old, "reused": True}

    vocab_size = len(tok)
    dtype = np.uint16 if vocab_size < 65536 else np.uint32  # uint16 halves disk and RAM when ids fit
    with atomic_dir(out_dir) as tmp:
        outputs, counts = {}, {}
        for s in SPLITS:
            sha, counts[s] = _tokenize_split(dataset_dir / f"{s}.jsonl", tmp / f"{s}.bin", tok.backend_tokenizer,
                                             tok.eos_token_id, dtype, progress)
            outputs[f"{s}.bin"] = {"sha256": sha, "size": (tmp / f"{s}.bin").stat().st_size}
        manifest = {
            "kind": "tokens", "inputs": inputs, "outputs": outputs, "tokens": counts,
            "chars": {s: (text["counts"].get(s) or text["outputs"][f"{s}.jsonl"])["chars"] for s in SPLITS},
            "dataset": dataset_dir.name, "dtype": np.dtype(dtype).name,
            "tokenizer_path": str(tokenizer_dir), "tokenizer_id": tokenizer_id, "vocab_size": vocab_size,
            "eos_token_id": tok.eos_token_id, "split_seed": text["split"]["seed"], "created_at": _now(),
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {**manifest, "reused": False}


class TokenData:
    """Read-only, memory-mapped token shards with deterministic, stateless batching.

    Args:
        tokens_dir: a tokens/<tokenizer_id> folder written by `tokenize_dataset`.
    """

    def __init__(self, tokens_dir: Path):
        tokens_dir = Path(tokens_dir)
        self.manifest: dict = _read_json(tokens_dir / "manifest.json") or {}
        if self.manifest.get("kind") != "tokens":
            raise UserError(f"no tokenized dataset at {tokens_dir} (run data tokenize first)")
        dtype = np.dtype(self.manifest["dtype"])
        self._data = {}
        for s in SPLITS:
            path = tokens_dir / f"{s}.bin"
            if not path.is_file():
                raise UserError(f"missing token file {path}")
            self._data[s] = np.memmap(path, dtype=dtype, mode="r") if path.stat().st_size else np.empty(0, dtype)
        self.vocab_size: int = self.manifest["vocab_size"]
        self.eos_token_id: int = self.manifest["eos_token_id"]

    def _split(self, split: str) -> np.ndarray:
        if split not in self._data:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        return self._data[split]

    def num_tokens(self, split: str) -> int:
        """Number of tokens in `split` ("train" or "val")."""
        return len(self._split(split))

    def batch(self, split: str, batch_size: int, block_size: int, *, seed: int, step: int, micro_step: int = 0,
              rank: int = 0, world_size: int = 1):
        """Sample `batch_size` random windows of `block_size + 1` tokens.

        Offsets depend only on the arguments (no hidden state), so resuming at a step
        reproduces exactly the batches an uninterrupted run would have seen. For
        "train" each DDP rank samples only inside its own contiguous shard.

        Args:
            split: "train" or "val".
            batch_size, block_size: shape (B, T) of the result.
            seed: run seed.
            step, micro_step: optimizer step and gradient-accumulation micro step.
            rank, world_size: this worker's rank and the number of workers.

        Returns:
            (x, y): int64 torch tensors of shape (B, T); y is x shifted left by one.
        """
        import torch

        data = self._split(split)
        if batch_size < 1 or block_size < 1 or not 0 <= rank < world_size:
            raise ValueError(f"bad batch arguments: batch_size={batch_size} block_size={block_size} "
                             f"rank={rank} world_size={world_size}")
        n = len(data)
        lo, hi = ((rank * n) // world_size, ((rank + 1) * n) // world_size) if split == "train" else (0, n)
        if hi - lo < block_size + 1:
            where = f"train shard of rank {rank}/{world_size}" if split == "train" and world_size > 1 else f"{split} split"
            raise UserError(f"the {where} is too small for block_size {block_size}: it has {hi - lo} "
                            f"tokens, needs at least {block_size + 1}")
        rng = np.random.default_rng([seed, _SPLIT_CODE[split], rank, step, micro_step])
        starts = rng.integers(lo, hi - block_size, size=batch_size)  # last start: hi - block_size - 1
        windows = data[starts[:, None] + np.arange(block_size + 1)].astype(np.int64)
        return torch.from_numpy(windows[:, :-1].copy()), torch.from_numpy(windows[:, 1:].copy())

    def eval_batches(self, batch_size: int, block_size: int, iters: int, *, seed: int) -> list:
        """Return `iters` fixed val batches, identical on every call, so losses are comparable.

        Args:
            batch_size, block_size: shape (B, T) of each batch.
            iters: number of batches.
            seed: run seed.

        Returns:
            A list of (x, y) tensor pairs.
        """
        return [self.batch("val", batch_size, block_size, seed=seed, step=i) for i in range(iters)]
