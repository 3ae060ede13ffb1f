"""Hyperparameter sweeps: Ray Tune runs many trials, each a Ray Train run.

    playground tune --config configs/tune/lr.yaml [key=value ...]
    playground tune --config configs/tune/sft-lr.yaml

A sweep file names its stage (`pretrain`, the default, or `sft`), a config of that stage
(`base`), the settings every trial shares (`fixed`), and a search space over dotted
config keys (`search`):

    search:
      train.lr: {loguniform: [1.0e-4, 1.0e-2]}     # sampled num_samples times
      model.n_layer: {grid: [2, 4]}                # every value, crossed with the rest
      model: {grid: [{n_layer: 2, n_embd: 192}, {n_layer: 8, n_embd: 96}]}   # linked keys

Each trial runs the same recipe as `playground pretrain` (training/pretrain/pretrain.py) or
`playground sft` (training/posttrain/sft.py) as its own run, `runs/<sweep>-<trial>/`, so the
Runs page, export and serving work on trials too.
ASHA (asynchronous successive halving) stops the trials whose validation loss trails the
others' at the same step, which spends the compute on the promising ones; a limit on
concurrent trials keeps the cluster from being oversubscribed. The sweep's record,
`sweeps/<sweep_id>/sweep.json`, is rewritten as results arrive (the Sweeps page reads it;
training/pretrain/sweep_record.py), and at the end the best trial's model is registered in MLflow.

This module holds the sweep config (no Ray at import time); `run()` is the Ray Tune recipe.
"""

from __future__ import annotations

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
from training.pretrain.sweep_record import (
    best_of,
    close_mlflow_run,
    first_line,
    register_best,
    trial_results,
    trial_run_id,
    write_record,
)
from training.workspace import PROJECT_ROOT, Workspace

SPACES = ("grid", "choice", "uniform", "loguniform")
# Trials share the base config's data and tokenizer (or base model): they are prepared once, before Tune starts.
_FIXED_SECTIONS = {"pretrain": ("data", "tokenizer", "run_name"), "sft": ("data", "base", "run_name")}


def stage_config(stage: str) -> type[BaseModel]:
    """The run config schema a sweep's trials use."""
    if stage == "sft":
        from training.posttrain.config import SFTConfig

        return SFTConfig
    return PretrainConfig


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
    stage: Literal["pretrain", "sft"] = Field("pretrain", description="what each trial runs: pretraining or "
                                              "supervised fine-tuning")
    base: str | dict = Field(..., description="a config file of that stage (configs/pretrain, configs/sft), or "
                                              "the config itself")
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
        return search

    @model_validator(mode="after")
    def _metric_mode(self) -> SweepConfig:
        if self.mode == "max":
            raise ValueError("mode: every metric here (val_loss, perplexity, loss) is minimised; use mode: min")
        shared = _FIXED_SECTIONS[self.stage]
        for key in self.search:
            if key.split(".")[0] in shared:
                raise ValueError(f"search.{key}: {' and '.join(shared[:2])} settings are shared by all trials; sweep "
                                 + ("model.*, train.* or scale.* keys" if self.stage == "pretrain"
                                    else "method, lora.*, train.* or scale.* keys"))
        return self


# --------------------------------------------------------------------------- config


def load_sweep(path: str | Path | None, overrides: list[str] = (), data: dict | None = None) -> tuple:
    """Read and check a sweep: (SweepConfig, the base run config with `fixed` applied, sweep name).

    Every value the search can produce (each grid or choice value, both ends of a range) is
    checked against the stage's schema now, so a bad key or value is one line naming
    `search.<key>` instead of a failed trial later.
    """
    raw = deep_merge(read_yaml(path) if path else dict(data or {}), parse_overrides(list(overrides)))
    source = str(path) if path else "sweep"
    sweep = validate(SweepConfig, raw, source=source)
    base = sweep.base
    if isinstance(base, str):
        base_path = find_config(base, Path(path).parent if path else None)
        base = read_yaml(base_path)
    merged = deep_merge(base, nest_keys(sweep.fixed, "fixed"))
    schema = stage_config(sweep.stage)
    cfg = validate(schema, merged, source=f"{source}: base+fixed")
    for key, spec in sweep.search.items():
        kind, values = next(iter(spec.items()))
        for value in values:
            try:
                schema.model_validate(deep_merge(merged, nest_keys({key: value}, "search")))
            except (ValidationError, UserError) as e:
                err = e.errors()[0] if isinstance(e, ValidationError) else {"msg": str(e), "type": ""}
                msg = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
                raise UserError(f"{source}: search.{key}: {kind} value {value!r}: {msg}") from None
    name = sweep.name or (Path(path).stem if path else "sweep")
    return sweep, cfg, name


def find_config(ref: str, near: Path | None) -> Path:
    """A base config path: as given, next to the sweep file, or in the project."""
    for cand in (Path(ref), *(p / ref for p in (near, PROJECT_ROOT) if p is not None)):
        if cand.is_file():
            return cand.resolve()
    raise UserError(f"base: config file not found: {ref}")


def nest_keys(flat: dict[str, Any], where: str) -> dict:
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


def trial_config(base: BaseModel, params: dict[str, Any], *, run_name: str, experiment: str) -> BaseModel:
    """The run config of one trial (same schema as `base`): base+fixed, then this trial's values."""
    merged = deep_merge(base.model_dump(mode="json"), nest_keys(params, "search"))
    merged["run_name"] = run_name
    merged["tracking"]["experiment"] = experiment
    return type(base).model_validate(merged)


# --------------------------------------------------------------------------- the recipe


def _stage(stage: str, base: BaseModel, ws: Workspace, progress: bool):
    """The stage's recipe module (prepare_run, make_trainer), after preparing what all trials share
    once, here, so the trials never race to build it: pretraining's data, tokenizer and token
    shards; fine-tuning's instruction snapshot (each trial then finds it by its content hash)."""
    if stage == "sft":
        from training.posttrain import sft, sft_data

        sft_data.prepare(base.data, ws)
        return sft
    from training.pretrain import pretrain
    from training.pretrain.inputs import ensure_inputs

    ensure_inputs(base, ws, progress=progress)
    return pretrain


def run(sweep: SweepConfig, base: BaseModel, ws: Workspace, *, name: str, progress: bool = False) -> dict:
    """Run the sweep on Ray Tune; returns the final record (also in sweeps/<id>/sweep.json)."""
    import ray
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

    sweep_id = f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    experiment = f"sweep-{name}"
    recipe = _stage(sweep.stage, base, ws, progress)
    record = {"sweep_id": sweep_id, "name": name, "stage": sweep.stage, "status": "RUNNING",
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
        """One trial: the stage recipe's TorchTrainer, reporting each evaluation to Tune."""
        ctx = tune.get_context()
        run_id = trial_run_id(sweep_id, ctx.get_trial_id())
        cfg = trial_config(base, params, run_name=run_id, experiment=experiment)
        paths = recipe.prepare_run(cfg, ws, run_id=run_id, resume=False,
                                   tags={"sweep": sweep_id, "trial": ctx.get_trial_id()})
        result = recipe.make_trainer(cfg, ws, paths, callbacks=[_eval_to_tune()]).fit()
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
                close_mlflow_run(ws, record, t["run_id"])
            t["results"] = trial_results(ws, t["run_id"])
            self._save(force=True)

        def on_trial_error(self, iteration, trials, trial, **info):
            t = self._trial(trial)
            t["status"], t["error"] = "ERROR", first_line(getattr(trial, "error_file", None))
            self._save(force=True)

    return Recorder()
