"""A sweep's record, `sweeps/<id>/sweep.json`, and what happens to its best trial.

The record is rewritten as Tune reports (the Sweeps page and `GET /api/sweeps/{id}` poll
it): each trial's params, status, metric curve and best value, and, for fine-tuning
sweeps, the trial's held-out accuracy from its `results.json`. At the end the best trial's
model is registered in MLflow's model registry (a pretraining trial's best checkpoint is
exported first; a fine-tuning trial has saved its model already).
"""

from __future__ import annotations

import json
import logging
import math
import os
from pathlib import Path

from training.workspace import Workspace

# --------------------------------------------------------------------------- the record


def sweep_dir(ws: Workspace, sweep_id: str) -> Path:
    return ws.root / "sweeps" / sweep_id


def write_record(ws: Workspace, record: dict) -> None:
    """sweeps/<id>/sweep.json, replaced atomically (the API and UI read it while Tune runs)."""
    folder = sweep_dir(ws, record["sweep_id"])
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".sweep.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, folder / "sweep.json")


def read_record(ws: Workspace, sweep_id: str) -> dict | None:
    path = sweep_dir(ws, sweep_id) / "sweep.json"
    if "/" in sweep_id or sweep_id.startswith(".") or not path.is_file():
        return None
    return json.loads(path.read_text())


def list_sweeps(ws: Workspace) -> list[dict]:
    """Every sweep's summary, newest first."""
    root = ws.root / "sweeps"
    out = []
    for path in root.glob("*/sweep.json") if root.is_dir() else ():
        rec = json.loads(path.read_text())
        out.append({k: rec.get(k) for k in ("sweep_id", "name", "status", "created_at", "finished_at", "metric",
                                           "best_trial", "best_metric")} | {"trials": len(rec.get("trials", {}))})
    return sorted(out, key=lambda r: r.get("created_at") or "", reverse=True)


def best_of(trials: dict[str, dict], metric: str) -> tuple[str | None, float | None]:
    """The trial with the lowest best-so-far metric (early-stopped trials count with what they reached)."""
    scored = [(t["best_metric"], tid) for tid, t in trials.items()
              if isinstance(t.get("best_metric"), (int, float)) and math.isfinite(t["best_metric"])]
    if not scored:
        return None, None
    value, tid = min(scored)
    return tid, value


def summary_line(record: dict) -> dict:
    """The JSON line `playground tune` ends with (like the benches)."""
    best = record.get("best_trial")
    finished = [t for t in record["trials"].values() if t["status"] in ("TERMINATED", "EARLY_STOPPED")]
    return {"trials": len(finished), "best_trial": best, "best_metric": record.get("best_metric"),
            "best_config": record["trials"][best]["params"] if best else None}



def close_mlflow_run(ws: Workspace, record: dict, run_id: str) -> None:
    """Mark an early-stopped trial's MLflow run KILLED (its workers were stopped mid-run, so
    they never ended it themselves)."""
    if not record["base"]["tracking"]["mlflow"]:
        return
    try:
        client, mlflow_run = _mlflow(ws, record, run_id)
        if mlflow_run is not None:
            client.set_terminated(mlflow_run, status="KILLED")
    except Exception as e:  # noqa: BLE001 - bookkeeping only: the sweep goes on
        logging.getLogger(__name__).warning("could not mark MLflow run of %s KILLED: %s", run_id, e)


def trial_results(ws: Workspace, run_id: str) -> dict | None:
    """A fine-tuning trial's held-out accuracy before and after, from its results.json (None for
    pretraining trials, and for fine-tuning trials stopped early: they never reached the end)."""
    path = ws.run(run_id) / "results.json"
    if not path.is_file():
        return None
    res = json.loads(path.read_text())
    return {"model": res.get("model"), "base": res.get("base"), "sft": res.get("sft")}


def trial_run_id(sweep_id: str, trial_id: str) -> str:
    """A trial's run folder name: the sweep id plus the trial's index (Tune ids end in _00003)."""
    return f"{sweep_id}-t{trial_id.split('_')[-1]}"


def first_line(error_file: str | None) -> str | None:
    if not error_file or not Path(error_file).is_file():
        return None
    lines = [ln for ln in Path(error_file).read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else None


def register_best(ws: Workspace, record: dict, best: dict) -> dict:
    """Register the best trial's model in MLflow's model registry, as a new version of the model
    named after the sweep. A pretraining trial's best checkpoint (by the sweep metric) is first
    exported to models/<sweep_id>-best, a Hugging Face folder that `playground serve`/vLLM loads;
    a fine-tuning trial saved its model, models/<run>-sft, when it finished."""
    if record.get("stage") == "sft":
        model_id = (best.get("results") or {}).get("model")
        if not model_id or not ws.model(model_id).is_dir():
            return {"error": f"trial {best['trial']} saved no model (stopped before its last step?)"}
        out = {"model": model_id, "path": str(ws.model(model_id)), "run_id": best["run_id"], "checkpoint": None,
               "step": record["max_steps"], "mlflow_model": None, "mlflow_version": None}
    else:
        out = _export_best(ws, record, best)
        if "error" in out:
            return out
    try:
        out.update(_mlflow_register(ws, record, best, out))
    except Exception as e:  # noqa: BLE001 - the model folder is what serving needs; a registry error is reported
        out["mlflow_error"] = f"{type(e).__name__}: {e}"[:300]
    return out


def _export_best(ws: Workspace, record: dict, best: dict) -> dict:
    from training.model import checkpoint as ckpt_lib
    from training.model.export import export_hf

    run_dir = ws.run(best["run_id"])
    ckpt_dir = ckpt_lib.best(run_dir) or ckpt_lib.latest(run_dir)
    if ckpt_dir is None:
        return {"error": f"no checkpoint in {run_dir}"}
    model, config, meta, ckpt_dir, step = ckpt_lib.load_model(ckpt_dir, ws.runs)
    model_id = f"{record['sweep_id']}-best"
    info = {"run_id": best["run_id"], "checkpoint": str(ckpt_dir), "step": step, "val_loss": meta.get("val_loss"),
            "config": config, "sweep": record["sweep_id"], "trial": best["trial"]}
    export_hf(model, ws.model(model_id), tokenizer_dir=meta.get("tokenizer_dir"),
              extra_files={"playground.json": json.dumps(info, indent=2)})
    from training.registry.card import try_write_card

    try_write_card(ws, ws.model(model_id))  # README.md: the model card
    return {"model": model_id, "path": str(ws.model(model_id)), "run_id": best["run_id"],
            "checkpoint": ckpt_dir.name, "step": step, "mlflow_model": None, "mlflow_version": None}


def _mlflow(ws: Workspace, record: dict, run_id: str):
    """(an MLflow client on the sweep's store, the MLflow run id of our run `run_id` or None)."""
    from mlflow.tracking import MlflowClient

    id_file = ws.run(run_id) / "mlflow_run_id"
    uri = record["base"]["tracking"].get("tracking_uri") or ws.mlflow_uri()
    return MlflowClient(tracking_uri=uri), id_file.read_text().strip() if id_file.is_file() else None


def _mlflow_register(ws: Workspace, record: dict, best: dict, out: dict) -> dict:
    import mlflow

    client, run_id = _mlflow(ws, record, best["run_id"])
    name = f"sweep-{record['name']}"
    try:
        client.get_registered_model(name)
    except mlflow.exceptions.MlflowException:
        client.create_registered_model(name, description=f"Best trials of the '{record['name']}' sweeps")
    tags = {"sweep": record["sweep_id"], "trial": best["trial"], record["metric"]: str(best["best_metric"])}
    if out["checkpoint"]:
        tags["checkpoint"] = out["checkpoint"]
    version = client.create_model_version(name, source=out["path"], run_id=run_id, tags=tags)
    return {"mlflow_model": name, "mlflow_version": version.version}
