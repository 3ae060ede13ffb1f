"""Checkpoints: everything needed to continue a run bit-for-bit, in one folder.

A checkpoint folder (`runs/<run_id>/checkpoint_000500/`) holds:

- `state.pt`: model and optimizer state, the GradScaler (fp16 only), the step
  counter, every worker's RNG state, and the resolved config. The step is also the
  scheduler's and the data loader's position: the learning rate is a pure function
  of the step (`loop.get_lr`), and so are the batches (`TokenData.batch`), so
  nothing else needs saving for a bit-exact resume;
- `config.yaml`: the same config, human-readable.

Ray Train copies the folder into the run's storage; `load` validates it so a
truncated or foreign file is a one-line error, not a pickle traceback.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import torch
import yaml

from training.errors import UserError

STATE_FILE = "state.pt"
_CKPT_RE = re.compile(r"checkpoint_(\d+)$")


def save(directory: str | Path, *, model, optimizer, step: int, config: dict, rng_states: list,
         scaler=None, meta: dict | None = None) -> Path:
    """Write a checkpoint into `directory` (temporary name, then rename)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else None,
        "step": step,
        "rng_states": rng_states,
        "config": config,
        "meta": meta or {},
    }
    tmp = directory / f".{STATE_FILE}.tmp-{os.getpid()}"
    torch.save(state, tmp)
    os.replace(tmp, directory / STATE_FILE)
    (directory / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return directory


def load(directory: str | Path) -> dict:
    """Read a checkpoint folder; a missing or unreadable one is a UserError."""
    directory = Path(directory)
    path = directory / STATE_FILE
    if not path.is_file():
        raise UserError(f"no checkpoint in {directory} (missing {STATE_FILE})")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # truncated zip, foreign pickle, disk error: all mean "can't use it"
        raise UserError(f"corrupt checkpoint {path}: {type(e).__name__}") from None
    missing = {"model", "optimizer", "step", "config"} - set(state if isinstance(state, dict) else ())
    if missing:
        raise UserError(f"corrupt checkpoint {path}: missing {', '.join(sorted(missing))}")
    return state


def checkpoint_step(path: Path) -> int:
    m = _CKPT_RE.search(path.name)
    return int(m.group(1)) if m else -1


def latest(run_dir: str | Path) -> Path | None:
    """The checkpoint folder of `run_dir` with the highest step, or None."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return None
    found = [p for p in run_dir.iterdir() if p.is_dir() and _CKPT_RE.search(p.name)]
    return max(found, key=checkpoint_step) if found else None


def resolve(ref: str | Path, runs_dir: Path) -> Path:
    """Find a checkpoint folder from a run id, a run folder, or a checkpoint folder."""
    ref_path = Path(ref)
    candidates = [ref_path, runs_dir / str(ref)]
    for cand in candidates:
        if (cand / STATE_FILE).is_file():
            return cand
        if cand.is_dir():
            found = latest(cand)
            if found is None:
                raise UserError(f"no checkpoint in {cand}")
            return found
    raise UserError(f"no run or checkpoint named {ref!r} (looked in {runs_dir})")


def load_model(ref: str | Path, runs_dir: Path):
    """Rebuild the trained model from a checkpoint, in eval mode.

    Returns:
        (model, config dict, checkpoint state's `meta`, checkpoint folder, step)
    """
    from training.model import ModelConfig, Transformer

    ckpt_dir = resolve(ref, runs_dir)
    state = load(ckpt_dir)
    model = Transformer(ModelConfig(**state["config"]["model"]))
    model.load_state_dict(state["model"])
    model.eval()
    return model, state["config"], state.get("meta", {}), ckpt_dir, state["step"]
