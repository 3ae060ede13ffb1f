"""Checkpoints: everything needed to continue a run bit-for-bit, in one folder.

A checkpoint folder (`runs/<run_id>/checkpoint_000500/`) holds:

- `state.pt`: model and optimizer state, the GradScaler (fp16 only), the step
  counter, every worker's RNG state, and the resolved config. The step is also the
  scheduler's and the data loader's position: the learning rate is a pure function
  of the step (`loop.get_lr`), and so are the batches (`TokenData.batch`), so
  nothing else needs saving for a bit-exact resume;
- `config.yaml`: the same config, human-readable;
- `checkpoint.json`, the manifest, written last: the step, each file's size and
  sha256, and the checkpoint's `val_loss`, so `best()` and `list_checkpoints()`
  read a few bytes per checkpoint instead of opening every state.pt.

Why a manifest: `save()` writes each file under a temporary name and renames it into
place, so the folder it writes never holds half a file. But the training loop saves
into a temporary folder, and Ray Train then *copies* that folder into the run's
storage, file by file, in no fixed order and with no rename at the end. A worker
killed mid-copy leaves `checkpoint_000600/` holding half a state.pt, or a config.yaml
and nothing else. So no reader trusts a folder's name alone. A checkpoint is
*complete* when its manifest parses and every file it lists has the listed size
(`is_complete`: a few `stat` calls, no hashing). `latest()` returns the newest
complete checkpoint and skips (and logs) a newer incomplete one, so resume, export,
serve and sample fall back to checkpoint_000500 instead of failing on 000600.
`load()` checks the sizes too, so a bad folder is a one-line error, not a pickle
traceback. The hashes are for `verify()`, a slower check that reads every byte.

Checkpoints written before manifests existed have none. They count as complete when
state.pt is a whole zip archive (torch.save writes zips; a truncated copy lacks the
directory at the end of the file that `zipfile.is_zipfile` looks for).

All of this guards against a killed process, not a power cut: nothing is fsync'ed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import zipfile
from pathlib import Path

import torch
import yaml

from training.errors import UserError

STATE_FILE = "state.pt"
CONFIG_FILE = "config.yaml"
MANIFEST_FILE = "checkpoint.json"
MANIFEST_FORMAT = 1
_CKPT_RE = re.compile(r"checkpoint_(\d+)")

log = logging.getLogger(__name__)
_warned: set[str] = set()  # incomplete folders already logged by `latest()`, to say it once


# --------------------------------------------------------------------------- writing


def save(directory: str | Path, *, model, optimizer, step: int, config: dict, rng_states: list,
         scaler=None, meta: dict | None = None) -> Path:
    """Write a checkpoint into `directory`: state.pt, config.yaml, then the manifest.

    Each file is written under a temporary name and renamed into place. An existing
    manifest is removed first and the new one is written last, so a manifest always
    describes the files beside it. `model` and `optimizer` are the objects or their
    full state dicts (a sharded strategy gathers those first: training/pretrain/strategies.py).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / MANIFEST_FILE).unlink(missing_ok=True)
    meta = meta or {}
    state = {
        "model": model if isinstance(model, dict) else model.state_dict(),
        "optimizer": optimizer if isinstance(optimizer, dict) else optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": step,
        "rng_states": rng_states,
        "config": config,
        "meta": meta,
    }
    _write_atomic(directory / STATE_FILE, lambda f: torch.save(state, f))
    _write_atomic(directory / CONFIG_FILE, lambda f: f.write(yaml.safe_dump(config, sort_keys=False).encode()))
    manifest = {
        "format": MANIFEST_FORMAT,
        "step": step,
        "files": {name: {"bytes": (directory / name).stat().st_size, "sha256": _sha256(directory / name)}
                  for name in (STATE_FILE, CONFIG_FILE)},
        "metrics": {"val_loss": _finite(meta.get("val_loss"))},
    }
    _write_atomic(directory / MANIFEST_FILE, lambda f: f.write(json.dumps(manifest, indent=2).encode()))
    return directory


def _write_atomic(path: Path, write) -> None:
    """Call `write(file)` on a temporary sibling of `path`, then rename it to `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _sha256(path: Path) -> str:
    """The file's sha256, read in 1 MiB chunks (about 0.07 s per 100 MB on one core)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _finite(value) -> float | None:
    """A metric as a plain float for JSON; None when missing or not finite (NaN can't be best)."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


# --------------------------------------------------------------------------- checking


def _inspect(directory: Path) -> tuple[dict | None, str | None]:
    """Read a checkpoint folder's manifest and say what, if anything, is wrong.

    Returns (manifest, problem): the manifest is None when there is none (or it is
    unreadable); the problem is None when the checkpoint is complete, else one line.
    """
    manifest_path = directory / MANIFEST_FILE
    if not manifest_path.exists():
        return None, _legacy_problem(directory)
    try:
        manifest = json.loads(manifest_path.read_text())
        sizes = {name: int(entry["bytes"]) for name, entry in manifest["files"].items()}
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        return None, f"unreadable manifest {MANIFEST_FILE} ({type(e).__name__})"
    if STATE_FILE not in sizes:
        return manifest, f"the manifest lists no {STATE_FILE}"
    for name, expected in sizes.items():
        try:
            size = (directory / name).stat().st_size
        except FileNotFoundError:
            return manifest, f"{name} is missing (the manifest lists it)"
        except OSError as e:
            return manifest, f"cannot read {name} ({type(e).__name__})"
        if size != expected:
            return manifest, f"{name} is {size} bytes, manifest says {expected}"
    return manifest, None


def _legacy_problem(directory: Path) -> str | None:
    """The check for a folder without a manifest (written before manifests existed)."""
    state = directory / STATE_FILE
    if not state.is_file():
        return f"no {STATE_FILE} and no {MANIFEST_FILE} (an interrupted save or copy?)"
    if not zipfile.is_zipfile(state):
        return f"{STATE_FILE} is truncated or not a torch.save file (and there is no {MANIFEST_FILE})"
    return None


def is_complete(directory: str | Path) -> bool:
    """Whether `directory` holds a whole checkpoint (sizes only: cheap enough to scan a run)."""
    return _inspect(Path(directory))[1] is None


def verify(directory: str | Path) -> None:
    """Re-hash every file the manifest lists; a UserError on any mismatch.

    Slower than `is_complete` (it reads every byte), and it also catches a file of
    the right size with the wrong contents. A legacy folder has no hashes to check.
    """
    directory = Path(directory)
    manifest, problem = _inspect(directory)
    if problem:
        raise UserError(f"corrupt checkpoint {directory}: {problem}")
    for name, entry in (manifest or {}).get("files", {}).items():
        if _sha256(directory / name) != entry["sha256"]:
            raise UserError(f"corrupt checkpoint {directory}: {name} does not match its sha256 in the manifest")


# --------------------------------------------------------------------------- reading


def load(directory: str | Path) -> dict:
    """Read a checkpoint folder; a missing, incomplete or unreadable one is a UserError."""
    directory = Path(directory)
    path = directory / STATE_FILE
    if not path.is_file() and not (directory / MANIFEST_FILE).exists():
        raise UserError(f"no checkpoint in {directory} (missing {STATE_FILE})")
    _, problem = _inspect(directory)
    if problem:
        raise UserError(f"corrupt checkpoint {directory}: {problem}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - truncated zip, foreign pickle, disk error: all mean "can't use it"
        raise UserError(f"corrupt checkpoint {path}: {type(e).__name__}") from None
    missing = {"model", "optimizer", "step", "config"} - set(state if isinstance(state, dict) else ())
    if missing:
        raise UserError(f"corrupt checkpoint {path}: missing {', '.join(sorted(missing))}")
    return state


def checkpoint_step(path: Path) -> int:
    m = _CKPT_RE.fullmatch(path.name)
    return int(m.group(1)) if m else -1


def _checkpoint_dirs(run_dir: Path) -> list[Path]:
    """The `checkpoint_<step>` folders of a run, oldest first, complete or not."""
    if not run_dir.is_dir():
        return []
    found = [p for p in run_dir.iterdir() if p.is_dir() and _CKPT_RE.fullmatch(p.name)]
    return sorted(found, key=checkpoint_step)


def latest(run_dir: str | Path) -> Path | None:
    """The newest complete checkpoint folder of `run_dir`, or None.

    Newer incomplete folders (a copy still running, or one a kill interrupted) are
    skipped, with a warning logged once per folder.
    """
    for path in reversed(_checkpoint_dirs(Path(run_dir))):
        problem = _inspect(path)[1]
        if problem is None:
            return path
        if str(path) not in _warned:
            _warned.add(str(path))
            log.warning("skipping incomplete checkpoint %s: %s", path, problem)
    return None


def no_checkpoint_reason(run_dir: str | Path) -> str:
    """Why `latest(run_dir)` is None, as one line for an error message."""
    run_dir = Path(run_dir)
    found = _checkpoint_dirs(run_dir)
    if not found:
        return f"no checkpoint in {run_dir}"
    problem = _inspect(found[-1])[1] or "incomplete"
    return f"corrupt checkpoint {found[-1]}: {problem} (and no complete checkpoint before it)"


def list_checkpoints(run_dir: str | Path) -> list[dict]:
    """Every checkpoint folder of a run, oldest first, as JSON-ready rows:
    {"path", "step", "val_loss", "complete", "problem"}; from the manifests only."""
    rows = []
    for path in _checkpoint_dirs(Path(run_dir)):
        manifest, problem = _inspect(path)
        metrics = (manifest or {}).get("metrics") or {}
        rows.append({"path": str(path), "step": checkpoint_step(path), "val_loss": _finite(metrics.get("val_loss")),
                     "complete": problem is None, "problem": problem})
    return rows


def best(run_dir: str | Path, metric: str = "val_loss") -> Path | None:
    """The complete checkpoint with the lowest `metric` in its manifest (ties: the later
    step), or None when none recorded it. Legacy checkpoints have no manifest to read."""
    scored = []
    for path in _checkpoint_dirs(Path(run_dir)):
        manifest, problem = _inspect(path)
        value = _finite(((manifest or {}).get("metrics") or {}).get(metric))
        if problem is None and value is not None:
            scored.append((value, -checkpoint_step(path), path))
    return min(scored)[2] if scored else None


def _is_checkpoint_dir(path: Path) -> bool:
    """A folder named like a checkpoint, or holding a checkpoint's files (else: a run folder)."""
    return path.is_dir() and bool(_CKPT_RE.fullmatch(path.name) or (path / STATE_FILE).exists()
                                  or (path / MANIFEST_FILE).exists())


def resolve(ref: str | Path, runs_dir: Path) -> Path:
    """Find a complete checkpoint folder from a run id, a run folder, or a checkpoint folder.

    A run resolves to its newest complete checkpoint; a checkpoint folder named
    explicitly must itself be complete.
    """
    ref_path = Path(ref)
    candidates = [ref_path, runs_dir / str(ref)]
    for cand in candidates:
        if _is_checkpoint_dir(cand):
            problem = _inspect(cand)[1]
            if problem:
                raise UserError(f"corrupt checkpoint {cand}: {problem}")
            return cand
        if cand.is_dir():
            found = latest(cand)
            if found is None:
                raise UserError(no_checkpoint_reason(cand))
            return found
    raise UserError(f"no run or checkpoint named {ref!r} (looked in {runs_dir})")


def load_model(ref: str | Path, runs_dir: Path):
    """Rebuild the trained model from a checkpoint, in eval mode.

    Returns:
        (model, config dict, checkpoint state's `meta`, checkpoint folder, step)
    """
    from training.model.transformer import ModelConfig, Transformer

    ckpt_dir = resolve(ref, runs_dir)
    state = load(ckpt_dir)
    model = Transformer(ModelConfig(**state["config"]["model"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state["config"], state.get("meta", {}), ckpt_dir, state["step"]
