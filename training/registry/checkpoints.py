"""The checkpoint browser: a run's checkpoints (step, validation loss, size), any of them exported as a
model, and references to compare two of them.

A run keeps checkpoints as it trains (pretraining: `runs/<run>/checkpoint_000300/`, our own format;
fine-tuning: `runs/<run>/checkpoints/checkpoint-60/`, TRL's). `playground export RUN` exports the
newest; here any step can become a model, `workspace/models/<run>-step<step>/`, which can then be
served, evaluated, fine-tuned or compared like any other. The listing and the conversions are
evaluation/checkpoints.py's (the evaluation of every checkpoint uses the same ones).

A checkpoint is named `<run>@<step>` wherever a model id is accepted for a diff.
"""

from __future__ import annotations

import json
from pathlib import Path

from evaluation import checkpoints as eval_ckpts
from training.errors import UserError
from training.registry.card import try_write_card
from training.registry.registry import check_id, folder_bytes, is_model, read_info
from training.workspace import Workspace


def _run(ws: Workspace, run: str) -> str:
    if not run or "/" in run or run.startswith(".") or not (ws.runs / run / "config.yaml").is_file():
        raise UserError(f"run: no run {run!r} in the workspace (playground runs)")
    return run


def _exported(ws: Workspace) -> dict[tuple[str, int], list[str]]:
    """(run, step) -> the models exported from that checkpoint (from their playground.json)."""
    out: dict[tuple[str, int], list[str]] = {}
    for d in sorted(ws.models.iterdir()) if ws.models.is_dir() else ():
        info = read_info(d) if is_model(d) else {}
        if info.get("run_id") and info.get("step") is not None and not info.get("quantization"):
            out.setdefault((info["run_id"], int(info["step"])), []).append(d.name)
    return out


def run_checkpoints(ws: Workspace, run: str) -> list[dict]:
    """The complete checkpoints of `run`, oldest first: `{"name": "<run>@<step>", "run", "step",
    "kind" ("pretrain" | "hf" | "adapter"), "val_loss", "size_bytes", "folder", "exported_as": [model ids]}`.
    A run without checkpoints gives [] (one that never kept any, or whose last was exported and pruned)."""
    _run(ws, run)
    try:
        found = eval_ckpts.list_run(ws, run)
    except UserError:
        return []
    exported = _exported(ws)
    return [{"name": c.name, "run": c.run, "step": c.step, "kind": c.kind, "val_loss": c.val_loss,
             "size_bytes": folder_bytes(c.path), "folder": c.path.name,
             "exported_as": exported.get((c.run, c.step), [])} for c in found]


def find(ws: Workspace, run: str, step: int) -> eval_ckpts.Checkpoint:
    """Checkpoint `run@step`; UserError naming what is there when it is not."""
    _run(ws, run)
    try:
        found = eval_ckpts.list_run(ws, run)
    except UserError:
        found = []
    for c in found:
        if c.step == step:
            return c
    steps = ", ".join(str(c.step) for c in found) or "none"
    raise UserError(f"step: no checkpoint at step {step} in run {run!r} (its steps: {steps})")


def _run_lineage(ws: Workspace, run: str) -> dict:
    path = ws.run(run) / "run.json"
    record = json.loads(path.read_text()) if path.is_file() else {}
    return {"lineage": record["lineage"]} if isinstance(record.get("lineage"), dict) else {}


def export_checkpoint(ws: Workspace, run: str, step: int, model_id: str | None = None) -> dict:
    """Export checkpoint `run@step` to `workspace/models/<model_id>` (default `<run>-step<step>`),
    atomically: a pretraining checkpoint is converted to Hugging Face format, a full fine-tuning one
    copied without its optimizer state, a LoRA one merged into its base. A fine-tuning checkpoint's
    model keeps the run's lineage, so it sits in the lineage graph beside the run's final model.

    Returns `{"model", "run", "step", "path"}`. An existing model id is refused (delete it first)."""
    c = find(ws, run, step)
    model_id = check_id(model_id or f"{run}-step{step}")
    out = ws.model(model_id)
    if out.exists():
        raise UserError(f"model: {model_id!r} already exists (choose another id, or delete it first)")
    eval_ckpts.materialize(ws, c, out=out, info=_run_lineage(ws, run) if c.kind != "pretrain" else None)
    try_write_card(ws, out)
    return {"model": model_id, "run": run, "step": step, "path": str(out)}


def resolve_ref(ws: Workspace, ref: str, field: str = "a") -> Path:
    """The folder a diff reads for `ref`: a workspace model id, or a checkpoint `<run>@<step>` (a
    LoRA checkpoint merged into its base first, once)."""
    if eval_ckpts.SEP in ref:
        run, _, step = ref.rpartition(eval_ckpts.SEP)
        if not step.isdigit():
            raise UserError(f"{field}: {ref!r} is not <run>@<step>")
        try:
            c = find(ws, run, int(step))
        except UserError as e:
            raise UserError(f"{field}: {str(e).split(': ', 1)[1]}") from None
        return eval_ckpts.materialize(ws, c) if c.kind == "adapter" else c.path
    folder = ws.model(check_id(ref, field))
    if not is_model(folder):
        raise UserError(f"{field}: no model or checkpoint {ref!r} (a model id, or <run>@<step>)")
    return folder
