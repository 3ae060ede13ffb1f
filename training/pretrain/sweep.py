"""Hyperparameter sweeps: Ray Tune runs many pretraining trials, each a Ray Train run.

    playground tune --config configs/tune/lr.yaml [key=value ...]

A sweep file names a pretrain config (`base`), the settings every trial shares
(`fixed`), and a search space over dotted config keys (`search`):

    search:
      train.lr: {loguniform: [1.0e-4, 1.0e-2]}     # sampled num_samples times
      model.n_layer: {grid: [2, 4]}                # every value, crossed with the rest
      model: {grid: [{n_layer: 2, n_embd: 192}, {n_layer: 8, n_embd: 96}]}   # linked keys

Each trial runs the same loop as `playground pretrain` (training/pretrain/pretrain.py) as its own
run, `runs/<sweep>-<trial>/`, so the Runs page, export and serving work on trials too.
ASHA (asynchronous successive halving) stops the trials whose validation loss trails the
others' at the same step, which spends the compute on the promising ones; a limit on
concurrent trials keeps the cluster from being oversubscribed. The sweep's record,
`sweeps/<sweep_id>/sweep.json`, is rewritten as results arrive (the Sweeps page reads it),
and at the end the best trial's best checkpoint is exported and registered in MLflow.

This module holds the sweep config and the record (no Ray at import time); `run()` is
the Ray Tune recipe.
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from training.config import (
    PretrainConfig,
    deep_merge,
    parse_overrides,
    read_yaml,
    validate,
)
from training.errors import UserError
from training.workspace import PROJECT_ROOT, Workspace

SPACES = ("grid", "choice", "uniform", "loguniform")
# Trials share the base config's data and tokenizer: they are prepared once, before Tune starts.
_FIXED_SECTIONS = ("data", "tokenizer", "run_name")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SchedulerConfig(_Strict):
    """ASHA stops a trial at a rung (grace_period, ×reduction_factor, ...) when its metric is not
    in the top 1/reduction_factor of the trials that reached that rung; `fifo` runs all to the end."""

    type: Literal["asha", "fifo"] = "asha"
    grace_period: int = Field(50, gt=0, description="steps every trial runs before it can be stopped")
    reduction_factor: float = Field(2.0, gt=1.0)


class SweepConfig(_Strict):
    name: str | None = Field(None, description="sweep id prefix; default: the file's name")
    base: str | dict = Field(..., description="a pretrain config file, or the config itself")
    fixed: dict[str, Any] = Field(default_factory=dict, description="dotted key -> value for every trial")
    search: dict[str, dict[str, Any]] = Field(..., description="dotted key -> {grid|choice|uniform|loguniform: ...}")
    num_samples: int = Field(1, gt=0, description="samples of the random keys (grids are crossed with them)")
    metric: Literal["val_loss", "perplexity", "loss"] = "val_loss"
    mode: Literal["min", "max"] = "min"
    max_concurrent_trials: int = Field(2, gt=0)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    register_best: bool = Field(True, description="export the best trial's best checkpoint and register it")

    @field_validator("search")
    @classmethod
    def _spaces(cls, search: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not search:
            raise ValueError("at least one key to search is required")
        for key, spec in search.items():
            if len(spec) != 1 or next(iter(spec)) not in SPACES:
                raise ValueError(f"{key}: give exactly one of {', '.join(SPACES)}, e.g. {{grid: [1, 2]}}")
            kind, values = next(iter(spec.items()))
            if kind in ("grid", "choice") and (not isinstance(values, list) or not values):
                raise ValueError(f"{key}: {kind} takes a non-empty list")
            if kind in ("uniform", "loguniform"):
                ok = (isinstance(values, list) and len(values) == 2
                      and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
                      and values[0] < values[1] and (kind == "uniform" or values[0] > 0))
                if not ok:
                    raise ValueError(f"{key}: {kind} takes [low, high] with low < high"
                                     + (" and low > 0" if kind == "loguniform" else ""))
            if key.split(".")[0] in _FIXED_SECTIONS:
                raise ValueError(f"{key}: data and tokenizer settings are shared by all trials; "
                                 "sweep model.*, train.* or scale.* keys")
        return search

    @model_validator(mode="after")
    def _metric_mode(self) -> SweepConfig:
        if self.mode == "max":
            raise ValueError("mode: every metric here (val_loss, perplexity, loss) is minimised; use mode: min")
        return self


# --------------------------------------------------------------------------- config


def load_sweep(path: str | Path | None, overrides: list[str] = (), data: dict | None = None) -> tuple:
    """Read and check a sweep: (SweepConfig, the base PretrainConfig with `fixed` applied, sweep name).

    Every value the search can produce (each grid or choice value, both ends of a range) is
    checked against the pretrain schema now, so a bad key or value is one line naming
    `search.<key>` instead of a failed trial later.
    """
    raw = deep_merge(read_yaml(path) if path else dict(data or {}), parse_overrides(list(overrides)))
    source = str(path) if path else "sweep"
    sweep = validate(SweepConfig, raw, source=source)
    base = sweep.base
    if isinstance(base, str):
        base_path = _find(base, Path(path).parent if path else None)
        base = read_yaml(base_path)
    merged = deep_merge(base, _nest(sweep.fixed, "fixed"))
    cfg = validate(PretrainConfig, merged, source=f"{source}: base+fixed")
    for key, spec in sweep.search.items():
        kind, values = next(iter(spec.items()))
        for value in values:
            try:
                PretrainConfig.model_validate(deep_merge(merged, _nest({key: value}, "search")))
            except (ValidationError, UserError) as e:
                err = e.errors()[0] if isinstance(e, ValidationError) else {"msg": str(e), "type": ""}
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                raise UserError(f"{source}: search.{key}: {kind} value {value!r}: {msg}") from None
    name = sweep.name or (Path(path).stem if path else "sweep")
    return sweep, cfg, name


def _find(ref: str, near: Path | None) -> Path:
    """A base config path: as given, next to the sweep file, or in the project."""
    for cand in (Path(ref), *(p / ref for p in (near, PROJECT_ROOT) if p is not None)):
        if cand.is_file():
            return cand.resolve()
    raise UserError(f"base: config file not found: {ref}")


def _nest(flat: dict[str, Any], where: str) -> dict:
    """{"train.lr": 1e-3, "model": {...}} -> {"train": {"lr": 1e-3}, "model": {...}}."""
    out: dict = {}
    for key, value in flat.items():
        *parents, leaf = key.split(".")
        node = out
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"{where}.{key}: {part} is not a section")
        node[leaf] = deep_merge(node[leaf], value) if isinstance(value, dict) and isinstance(
            node.get(leaf), dict) else value
    return out


def param_space(sweep: SweepConfig) -> dict:
    """The search space as Ray Tune objects, keyed by the dotted names (flat, so results read well)."""
    from ray import tune

    make = {"grid": tune.grid_search, "choice": tune.choice,
            "uniform": lambda v: tune.uniform(*v), "loguniform": lambda v: tune.loguniform(*v)}
    return {key: make[kind](values) for key, spec in sweep.search.items() for kind, values in spec.items()}


def trial_config(base: PretrainConfig, params: dict[str, Any], *, run_name: str, experiment: str) -> PretrainConfig:
    """The pretrain config of one trial: base+fixed, then this trial's values."""
    merged = deep_merge(base.model_dump(mode="json"), _nest(params, "search"))
    merged["run_name"] = run_name
    merged["tracking"]["experiment"] = experiment
    return PretrainConfig.model_validate(merged)


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


# --------------------------------------------------------------------------- the recipe


def run(sweep: SweepConfig, base: PretrainConfig, ws: Workspace, *, name: str, progress: bool = False) -> dict:
    """Run the sweep on Ray Tune; returns the final record (also in sweeps/<id>/sweep.json)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    from training.pretrain import pretrain
    from training.pretrain.inputs import ensure_inputs

    sweep_id = f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    experiment = f"sweep-{name}"
    # Data, tokenizer and token shards once, here, so the trials never race to build them.
    ensure_inputs(base, ws, progress=progress)
    record = {"sweep_id": sweep_id, "name": name, "status": "RUNNING",
              "created_at": datetime.now().astimezone().isoformat(timespec="seconds"), "finished_at": None,
              "metric": sweep.metric, "mode": sweep.mode, "max_steps": base.train.max_steps,
              "config": sweep.model_dump(mode="json"), "base": base.model_dump(mode="json"),
              "search_keys": list(sweep.search), "trials": {}, "best_trial": None, "best_metric": None,
              "registered": None}
    write_record(ws, record)

    sc = base.scale
    per_trial = sc.num_workers * sc.threads_per_worker  # CPUs one trial's Ray Train workers reserve
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        need = sweep.max_concurrent_trials * per_trial + 1
        ray.init(address=address, num_cpus=None if address else max(os.cpu_count() or 1, need),
                 log_to_driver=progress)
    # Tune places a trial on its own sliver of CPU; the trial's workers ask Ray Train for theirs
    # afterwards, and time out if they never fit. So run no more trials at once than the
    # cluster's CPUs hold; Tune queues the rest.
    fits = max(1, int(ray.cluster_resources().get("CPU", 1) - 0.5) // per_trial)
    concurrent = min(sweep.max_concurrent_trials, fits)
    if concurrent < sweep.max_concurrent_trials and progress:
        print(f"running {concurrent} trials at a time: each needs {per_trial} CPUs and the cluster has "
              f"{ray.cluster_resources().get('CPU')}", flush=True)
    record["concurrent_trials"] = concurrent

    def trial(params: dict) -> None:
        """One trial: the pretrain recipe's TorchTrainer, reporting each evaluation to Tune."""
        ctx = tune.get_context()
        run_id = trial_run_id(sweep_id, ctx.get_trial_id())
        cfg = trial_config(base, params, run_name=run_id, experiment=experiment)
        paths = pretrain.prepare_run(cfg, ws, run_id=run_id, resume=False,
                                     tags={"sweep": sweep_id, "trial": ctx.get_trial_id()})
        result = pretrain.make_trainer(cfg, ws, paths, callbacks=[_eval_to_tune()]).fit()
        if result.error:
            raise result.error

    if sweep.scheduler.type == "asha":
        # stop_last_trials=False: a trial that reaches max_steps finishes on its own (last
        # checkpoint, model logged to MLflow) instead of being stopped at its final report.
        scheduler = ASHAScheduler(time_attr="step", max_t=base.train.max_steps,
                                  grace_period=min(sweep.scheduler.grace_period, base.train.max_steps),
                                  reduction_factor=sweep.scheduler.reduction_factor, stop_last_trials=False)
    else:
        scheduler = FIFOScheduler()
    tuner = tune.Tuner(
        # [1] Ray: the trial function only starts a Ray Train run and waits, so it asks for a
        # sliver of a CPU (Tune needs some resource); the run's workers ask for theirs.
        tune.with_resources(trial, {"cpu": 0.01}),
        param_space=param_space(sweep),
        # [2] Ray: ASHA early stopping on the sweep's metric, at most N trials at once.
        tune_config=tune.TuneConfig(metric=sweep.metric, mode=sweep.mode, scheduler=scheduler,
                                    num_samples=sweep.num_samples,
                                    max_concurrent_trials=concurrent),
        # [3] Ray: Tune's own state lives beside sweep.json; the trials' runs live in runs/.
        run_config=tune.RunConfig(name=sweep_id, storage_path=str(ws.root / "sweeps"),
                                  callbacks=[_recorder(ws, record)], verbose=1 if progress else 0),
    )
    try:
        tuner.fit()
    except KeyboardInterrupt:
        record["status"] = "STOPPED"
        write_record(ws, record)
        raise
    record["status"] = "FINISHED"
    record["best_trial"], record["best_metric"] = best_of(record["trials"], sweep.metric)
    if record["best_trial"] and sweep.register_best:
        record["registered"] = register_best(ws, record, record["trials"][record["best_trial"]])
    record["finished_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
    write_record(ws, record)
    return record


def _eval_to_tune():
    """A Ray Train callback that forwards the evaluation reports (those with val_loss) to Tune.

    Tune's scheduler compares trials on the metric at a given step, so only reports that
    carry it are passed on (Ray's TuneReportCallback forwards every report, and Tune
    refuses a result without the metric). Built inside the trial, where Tune's session is.
    """
    from ray.tune.integration.ray_train import TuneReportCallback

    class EvalToTune(TuneReportCallback):
        def after_report(self, run_context, metrics, checkpoint):
            if metrics and "val_loss" in metrics[0]:
                kept = [{k: v for k, v in m.items() if k != "samples"} for m in metrics]
                super().after_report(run_context, kept, checkpoint)

    return EvalToTune()


def _recorder(ws: Workspace, record: dict):
    """A Tune callback that keeps sweeps/<id>/sweep.json current: each trial's params, status,
    metric curve and best value so far."""
    from ray.tune import Callback

    class Recorder(Callback):
        def __init__(self):
            self._last_write = 0.0

        def _trial(self, trial) -> dict:
            tid = trial.trial_id
            return record["trials"].setdefault(tid, {
                "trial": tid, "run_id": trial_run_id(record["sweep_id"], tid), "params": dict(trial.config),
                "status": "PENDING", "step": None, "metric": None, "best_metric": None, "best_step": None,
                "curve": [], "error": None})

        def _save(self, force: bool = False) -> None:
            record["best_trial"], record["best_metric"] = best_of(record["trials"], record["metric"])
            if force or time.monotonic() - self._last_write > 1.0:
                write_record(ws, record)
                self._last_write = time.monotonic()

        def on_trial_start(self, iteration, trials, trial, **info):
            self._trial(trial)["status"] = "RUNNING"
            self._save(force=True)

        def on_trial_result(self, iteration, trials, trial, result, **info):
            t = self._trial(trial)
            value = result.get(record["metric"])
            t.update(status="RUNNING", step=result.get("step"), metric=value,
                     loss=result.get("loss"), tokens_per_s=result.get("tokens_per_s"))
            if isinstance(value, (int, float)):
                t["curve"].append([result.get("step"), value])
                if t["best_metric"] is None or value < t["best_metric"]:
                    t["best_metric"], t["best_step"] = value, result.get("step")
            self._save()

        def on_trial_complete(self, iteration, trials, trial, **info):
            t = self._trial(trial)
            t["status"] = "TERMINATED" if (t["step"] or 0) >= record["max_steps"] else "EARLY_STOPPED"
            if t["status"] == "EARLY_STOPPED":
                _close_mlflow_run(ws, record, t["run_id"])
            self._save(force=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            t = self._trial(trial)
            t["status"], t["error"] = "ERROR", _first_line(getattr(trial, "error_file", None))
            self._save(force=True)

    return Recorder()


def _close_mlflow_run(ws: Workspace, record: dict, run_id: str) -> None:
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


def trial_run_id(sweep_id: str, trial_id: str) -> str:
    """A trial's run folder name: the sweep id plus the trial's index (Tune ids end in _00003)."""
    return f"{sweep_id}-t{trial_id.split('_')[-1]}"


def _first_line(error_file: str | None) -> str | None:
    if not error_file or not Path(error_file).is_file():
        return None
    lines = [ln for ln in Path(error_file).read_text(errors="replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else None


def register_best(ws: Workspace, record: dict, best: dict) -> dict:
    """Export the best trial's best checkpoint (by the sweep metric) to models/<sweep_id>-best, a
    Hugging Face folder that `playground serve`/vLLM loads, and register it in MLflow's model
    registry as a new version of the model named after the sweep."""
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
    out = {"model": model_id, "path": str(ws.model(model_id)), "run_id": best["run_id"],
           "checkpoint": ckpt_dir.name, "step": step, "mlflow_model": None, "mlflow_version": None}
    try:
        out.update(_mlflow_register(ws, record, best, out))
    except Exception as e:  # noqa: BLE001 - the export is what serving needs; a registry error is reported
        out["mlflow_error"] = f"{type(e).__name__}: {e}"[:300]
    return out


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
    version = client.create_model_version(name, source=out["path"], run_id=run_id,
                                          tags={"sweep": record["sweep_id"], "trial": best["trial"],
                                                "checkpoint": out["checkpoint"],
                                                record["metric"]: str(best["best_metric"])})
    return {"mlflow_model": name, "mlflow_version": version.version}
