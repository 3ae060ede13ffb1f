"""Token shards: a snapshot's text splits -> token ids on disk -> training batches.

    <dataset_dir>/                 a snapshot (training/data/snapshot.py)
      train.jsonl, val.jsonl       one {"text": ...} per document
      tokens/<tokenizer_id>/
        manifest.json              inputs and outputs with sha256, token counts, dtype
        train.bin, val.bin         all token ids back to back, each document followed by eos

The manifest records sha256 fingerprints, so re-running on the same inputs is a no-op,
and the shards are written into a temp folder that is renamed into place, so a crash
never leaves half of them. Training reads the .bin files through `TokenData`, a memory
map: the OS pages in only the windows a batch needs, so data larger than RAM works.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from training.atomic import atomic_dir
from training.data.snapshot import manifest_at, read_json, sha256_file
from training.errors import UserError

SPLITS = ("train", "val")  # the snapshot's test split is held out of training
_SPLIT_CODE = {"train": 0, "val": 1}  # part of the batch RNG seed
_ENCODE_CHUNK_CHARS = 4_000_000  # tokenize this much text at a time: bounded memory


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
        dataset_dir: a snapshot folder (from `playground data prepare` or `playground data run`).
        tokenizer_dir: a tokenizer folder with tokenizer.json (e.g. from `train_tokenizer`).
        tokenizer_id: name of the output subfolder, e.g. "bpe4k".
        progress: show a progress bar.

    Returns:
        The tokens manifest, plus "reused": True when the existing shards already matched.
    """
    dataset_dir, tokenizer_dir = Path(dataset_dir), Path(tokenizer_dir)
    text = manifest_at(dataset_dir)
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
    old = read_json(out_dir / "manifest.json")
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
            "chars": {s: text["outputs"][f"{s}.jsonl"]["chars"] for s in SPLITS},
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
        self.manifest: dict = read_json(tokens_dir / "manifest.json") or {}
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
