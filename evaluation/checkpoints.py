"""A run's checkpoints as models lm-eval can load: the history of a score against training step.

`playground eval --checkpoints all --model RUN` evaluates every complete checkpoint a run kept,
in-process (checkpoints are not served). Two kinds of run keep checkpoints:

- pretraining (training/pretrain): `runs/<run>/checkpoint_000300/`, our own format (state.pt and a
  manifest, training/model/checkpoint.py). Each is exported once to a Hugging Face folder, like
  `playground export` does, under `workspace/evals/checkpoints/<run>/step_000300/`;
- fine-tuning (training/posttrain, TRL's Trainer): `runs/<run>/checkpoints/checkpoint-60/`, a
  Hugging Face folder already for full fine-tuning, or a LoRA adapter that is merged into its base
  once, into the same cache.

Each checkpoint becomes a model named `<run>@<step>` whose lineage carries the run and the step, so
the leaderboard can draw the score of a task against the step (evaluation/leaderboard.py, `history`).
Exports are written atomically and kept: evaluating the same run again reuses them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from training.errors import UserError
from training.workspace import Workspace

_HF_CKPT = re.compile(r"checkpoint-(\d+)")
SEP = "@"  # demo-20261203-173608@300


@dataclass(frozen=True)
class Checkpoint:
    run: str
    step: int
    path: Path                      # the checkpoint folder as training wrote it
    kind: str                       # "pretrain" (ours), "hf" (a full HF model), "adapter" (a LoRA adapter)
    val_loss: float | None = None

    @property
    def name(self) -> str:
        return f"{self.run}{SEP}{self.step}"


def run_of(ws: Workspace, spec: str) -> str:
    """The run `spec` names: a run id, or a workspace model whose lineage names its run.

    Raises:
        UserError: "models: ..." when neither a run folder nor a model with a run.
    """
    if spec and "/" not in spec and (ws.runs / spec).is_dir():
        return spec
    info = ws.model(spec) / "playground.json" if spec and "/" not in spec else None
    if info is not None and info.is_file():
        run = json.loads(info.read_text()).get("run_id")
        if run and (ws.runs / run).is_dir():
            return run
    raise UserError(f"models: no run {spec!r} with checkpoints in {ws.runs} (checkpoints=all takes run ids, "
                    "or models exported from a run)")


def _trainer_val_loss(folder: Path) -> float | None:
    """The last eval_loss TRL's Trainer logged before this checkpoint, from its trainer_state.json."""
    state = folder / "trainer_state.json"
    if not state.is_file():
        return None
    losses = [e["eval_loss"] for e in json.loads(state.read_text()).get("log_history", []) if "eval_loss" in e]
    return float(losses[-1]) if losses else None


def list_run(ws: Workspace, run: str) -> list[Checkpoint]:
    """The complete checkpoints of `run`, oldest first (incomplete ones, a copy cut short, left out).

    Raises:
        UserError: the run kept no complete checkpoint.
    """
    from training.model import checkpoint as ckpt

    run_dir = ws.runs / run
    found = [Checkpoint(run, row["step"], Path(row["path"]), "pretrain", row["val_loss"])
             for row in ckpt.list_checkpoints(run_dir) if row["complete"]]
    hf_root = run_dir / "checkpoints"
    for folder in sorted(hf_root.iterdir()) if hf_root.is_dir() else ():
        m = _HF_CKPT.fullmatch(folder.name)
        if not m or not folder.is_dir():
            continue
        kind = "hf" if (folder / "config.json").is_file() else \
            "adapter" if (folder / "adapter_config.json").is_file() else None
        if kind:
            found.append(Checkpoint(run, int(m.group(1)), folder, kind, _trainer_val_loss(folder)))
    if not found:
        raise UserError(f"models: run {run!r} kept no complete checkpoint ({run_dir})")
    return sorted(found, key=lambda c: c.step)


def cache_dir(ws: Workspace, c: Checkpoint) -> Path:
    return ws.root / "evals" / "checkpoints" / c.run / f"step_{c.step:06d}"


def materialize(ws: Workspace, c: Checkpoint, out: Path | None = None, info: dict | None = None) -> Path:
    """A Hugging Face folder holding checkpoint `c`: itself, or an export made once (atomically).

    With `out` (the Models page's "export this checkpoint", training/registry/checkpoints.py) the
    export goes there instead of the evaluation cache, a full fine-tuning checkpoint included (its
    model files copied, the trainer's optimizer state left out), and `info` is added to its
    playground.json."""
    if c.kind == "hf" and out is None:
        return c.path
    target = out if out is not None else cache_dir(ws, c)
    if out is None and (target / "config.json").is_file():
        return target
    info = {"run_id": c.run, "checkpoint": str(c.path), "step": c.step, "val_loss": c.val_loss} | (info or {})
    if c.kind == "pretrain":
        from training.model import checkpoint as ckpt
        from training.model.export import export_hf

        model, config, meta, _, _ = ckpt.load_model(c.path, ws.runs)
        tokenizer_dir = meta.get("tokenizer_dir")
        if not tokenizer_dir or not Path(tokenizer_dir).is_dir():
            raise UserError(f"models: the tokenizer of run {c.run!r} is missing ({tokenizer_dir})")
        export_hf(model, target, tokenizer_dir=tokenizer_dir,
                  extra_files={"playground.json": json.dumps(info | {"config": config}, indent=2)})
        return target
    if c.kind == "hf":
        return _copy_model_files(c.path, target, info)
    return _merge_adapter(ws, c, target, info)


# What TRL's Trainer keeps in a checkpoint besides the model: needed to resume, not to serve.
_TRAINER_STATE = ("optimizer.pt", "scheduler.pt", "rng_state*.pth", "trainer_state.json", "training_args.bin",
                  "scaler.pt", "playground.json")


def _copy_model_files(src: Path, out: Path, info: dict) -> Path:
    import shutil

    from training.atomic import atomic_dir

    with atomic_dir(out) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True, ignore=shutil.ignore_patterns(*_TRAINER_STATE))
        (tmp / "playground.json").write_text(json.dumps(info, indent=2))
    return out


def _merge_adapter(ws: Workspace, c: Checkpoint, out: Path, info: dict) -> Path:
    """A LoRA checkpoint of a fine-tuning run, folded into the base the run started from."""
    import yaml
    from transformers import AutoTokenizer

    from training.posttrain.adapters import merge, resolve_model

    config = yaml.safe_load((ws.runs / c.run / "config.yaml").read_text()) or {}
    base = resolve_model(((config.get("base") or {}).get("model")) or "", ws, field="models")
    tokenizer = AutoTokenizer.from_pretrained(str(c.path))  # the run's tokenizer, chat tokens included
    return merge(base, c.path, out, tokenizer=tokenizer, extra_files={"playground.json": json.dumps(info)})


def sources(ws: Workspace, specs: list[str], *, export: bool = True) -> dict:
    """Every checkpoint of the runs `specs` name, as evaluation/harness.py ModelSources keyed by name.

    With `export=False` only the checkpoints are listed (what the API checks before starting a job);
    the folders are then those training wrote, not yet exported.
    """
    from evaluation.harness import ModelSource, folder_source

    out = {}
    for spec in specs:
        for c in list_run(ws, run_of(ws, spec)):
            lineage = {"model": c.name, "run_id": c.run, "step": c.step, "val_loss": c.val_loss,
                       "checkpoint": str(c.path)}
            if not export:
                out[c.name] = ModelSource(c.name, str(c.path), None, False, lineage)
                continue
            src = folder_source(c.name, materialize(ws, c))
            out[c.name] = ModelSource(c.name, src.path, src.context, src.chat_template,
                                      lineage | {"path": src.path})
    return out
