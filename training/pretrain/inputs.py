"""The stages before training, wired to the workspace: snapshot -> tokenizer -> token shards.

The dataset is always a snapshot (training/data/snapshot.py): the one `data.snapshot`
names (made by `playground data run`), or the one `playground data prepare` makes from
`data.sources` under `data.dataset_id()` (training/data/prepare.py).

Each stage is idempotent: run it twice with the same config and the second run
reuses what the first made (the manifests record input hashes). `pretrain` calls
`ensure_inputs`, so a fresh workspace needs only one command; the CLI also exposes
each stage on its own (`playground data prepare`, `playground tokenizer train`).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from training.config import PretrainConfig
from training.data import shards as data_lib
from training.data import snapshot
from training.errors import UserError
from training.tokenizers import tokenizer as tok_lib
from training.tokenizers.hf_tokenizers import train_hf_tokenizer
from training.workspace import Workspace


@dataclass(frozen=True)
class Inputs:
    dataset_dir: Path
    tokenizer_dir: Path
    tokens_dir: Path


def prepare_text(cfg: PretrainConfig, ws: Workspace, progress: bool = False) -> dict:
    """The run's dataset: check the snapshot `data.snapshot`, or make (or reuse) the one of `data.sources`.

    Returns:
        The snapshot's manifest, plus "reused".
    """
    d = cfg.data
    if d.snapshot:
        manifest = snapshot.load_manifest(ws, d.snapshot, "data.snapshot")
        if not manifest["outputs"]["val.jsonl"]["docs"]:
            raise UserError(f"data.snapshot: {d.snapshot} has an empty val split; rerun the pipeline with "
                            "more documents or a larger split.val")
        return {**manifest, "reused": True}
    from training.data.prepare import prepare

    return prepare(d.pipeline_config(), ws, snapshot_id=d.dataset_id(), prefix="data.", progress=progress)


def tokenizer_dir(cfg: PretrainConfig, ws: Workspace) -> Path:
    if cfg.tokenizer.path:
        local = Path(cfg.tokenizer.path).expanduser()
        return local.resolve() if local.exists() else Path(cfg.tokenizer.path)
    return ws.tokenizer(cfg.tokenizer.tokenizer_id(cfg.data.dataset_id()))


def train_tokenizer(cfg: PretrainConfig, ws: Workspace, progress: bool = False, force: bool = False) -> Path:
    """Train the run's tokenizer on the dataset's train split (reused when it exists).

    `tokenizer.trainer` picks Hugging Face `tokenizers` ("hf", any `tokenizer.model`)
    or our own byte-level BPE ("scratch", `training.tokenizers.bpe.train_bpe_folder`); both
    write the same kind of folder.
    """
    tc = cfg.tokenizer
    if tc.path:
        raise UserError("tokenizer.path is set: this run uses an existing tokenizer, nothing to train")
    out = tokenizer_dir(cfg, ws)
    if (out / "tokenizer.json").is_file() and not force:
        return out
    dataset_dir = ws.dataset(cfg.data.dataset_id())
    if not snapshot.is_snapshot(dataset_dir):  # not made yet, or by an older playground
        prepare_text(cfg, ws, progress)
    show = progress and sys.stderr.isatty()
    if tc.trainer == "scratch":
        from training.tokenizers.bpe import train_bpe_folder

        train_bpe_folder(snapshot.iter_split(dataset_dir), tc.vocab_size, out, min_frequency=tc.min_frequency,
                         show_progress=show)
    else:
        train_hf_tokenizer(snapshot.iter_split(dataset_dir), tc.vocab_size, out, model=tc.model,
                           min_frequency=tc.min_frequency, show_progress=show)
    return out


def check_vocab(cfg: PretrainConfig, tokenizer_path: Path) -> int:
    """The model must have a row in its embedding for every token id the tokenizer emits."""
    n = len(tok_lib.load_tokenizer(tokenizer_path))
    if n > cfg.model.vocab_size:
        raise UserError(
            f"model.vocab_size={cfg.model.vocab_size} is smaller than the tokenizer's vocabulary "
            f"({n} tokens in {tokenizer_path}); set model.vocab_size>={n}"
        )
    return n


def ensure_inputs(cfg: PretrainConfig, ws: Workspace, progress: bool = False) -> Inputs:
    """Make (or reuse) everything a training run reads, and check it fits the model."""
    prepare_text(cfg, ws, progress)
    tok_dir = tokenizer_dir(cfg, ws) if cfg.tokenizer.path else train_tokenizer(cfg, ws, progress)
    check_vocab(cfg, tok_dir)
    dataset_dir = ws.dataset(cfg.data.dataset_id())
    tok_id = cfg.tokenizer.tokenizer_id(cfg.data.dataset_id())
    data_lib.tokenize_dataset(dataset_dir, tok_dir, tok_id, progress=progress)
    return Inputs(dataset_dir, tok_dir, ws.tokens(cfg.data.dataset_id(), tok_id))
