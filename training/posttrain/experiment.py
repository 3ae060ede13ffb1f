"""Fine-tuning experiments: named variants of one SFT config, run one after another, side by side.

    playground experiment --config configs/experiments/lora-rank.yaml
    playground experiment --config configs/experiments/forgetting.yaml

Each variant is an ordinary `playground sft` run (training/posttrain/sft.py, on Ray Train),
`runs/<experiment id>-<variant>/`, so the Runs and Fine-tune pages show it like any other.
The experiment adds the table a learner wants at the end, one row per variant:

* what it learned: exact-match accuracy on the held-out instructions (by template, by entity);
* what it cost: trainable parameters, the worker's peak memory (the largest resident set,
  or CUDA's peak allocation, of the logs), tokens per second and wall time;
* what it forgot (`forgetting: true`): the perplexity of the base model's own pretraining
  validation text and the world facts as cloze questions, before and after
  (training/posttrain/forgetting.py).

The record, `experiments/<id>/experiment.json`, is rewritten after each variant, so
`GET /api/experiments/{id}` and the Fine-tune page follow a running experiment.
"""

from __future__ import annotations

import json
import os
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator

from training.config import _Strict, deep_merge, parse_overrides, read_yaml, validate
from training.posttrain.config import SFTConfig
from training.pretrain.sweep import find_config, nest_keys
from training.workspace import Workspace, read_jsonl

VARIANT_DATA_KEYS = {"data.replay", "data.replay_tokens"}  # data keys a variant may set (replay.py)


class ExperimentConfig(_Strict):
    name: str | None = Field(None, description="experiment id prefix; default: the file's name")
    base: str | dict = Field(..., description="an SFT config file (configs/sft/), or the config itself")
    fixed: dict[str, Any] = Field(default_factory=dict, description="dotted key -> value for every variant")
    variants: dict[str, dict[str, Any]] = Field(
        ..., description="variant name -> its dotted keys, e.g. {lora-r4: {method: lora, lora.r: 4}, full: "
                         "{method: full}}; run in this order")
    forgetting: bool = Field(True, description="measure what each variant forgot of pretraining (perplexity "
                                               "of the pretraining validation text, world facts as cloze questions)")

    @field_validator("variants")
    @classmethod
    def _variants(cls, variants: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        if not variants:
            raise ValueError("give at least one variant, e.g. {full: {method: full}}")
        for name, keys in variants.items():
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"{name!r}: variant names are letters, digits, - and _ (they name runs)")
            # Every variant fine-tunes one base on one instruction snapshot; replay changes the batches, not the data.
            if any(k.split(".")[0] in ("base", "data", "run_name") and k not in VARIANT_DATA_KEYS for k in keys or {}):
                raise ValueError(f"{name}: base, data and run_name are shared by all variants (set them in fixed); "
                                 f"of data, only {' and '.join(sorted(VARIANT_DATA_KEYS))} may differ")
        return variants


def load_experiment(path: str | Path | None, overrides: list[str] = (), data: dict | None = None) -> tuple:
    """(ExperimentConfig, {variant: its SFTConfig}, name); a bad key is one line naming it."""
    raw = deep_merge(read_yaml(path) if path else dict(data or {}), parse_overrides(list(overrides)))
    source = str(path) if path else "experiment"
    exp = validate(ExperimentConfig, raw, source=source)
    base = exp.base
    if isinstance(base, str):
        base = read_yaml(find_config(base, Path(path).parent if path else None))
    merged = deep_merge(base, nest_keys(exp.fixed, "fixed"))
    validate(SFTConfig, merged, source=f"{source}: base+fixed")
    configs = {name: validate(SFTConfig, deep_merge(merged, nest_keys(keys or {}, f"variants.{name}")),
                              source=f"{source}: variants.{name}")
               for name, keys in exp.variants.items()}
    return exp, configs, exp.name or (Path(path).stem if path else "experiment")


# --------------------------------------------------------------------------- the record


def experiment_dir(ws: Workspace, exp_id: str) -> Path:
    return ws.root / "experiments" / exp_id


def write_record(ws: Workspace, record: dict) -> None:
    folder = experiment_dir(ws, record["experiment_id"])
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".experiment.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(record, indent=2, default=str) + "\n")
    os.replace(tmp, folder / "experiment.json")


def read_record(ws: Workspace, exp_id: str) -> dict | None:
    path = experiment_dir(ws, exp_id) / "experiment.json"
    if "/" in exp_id or exp_id.startswith(".") or not path.is_file():
        return None
    return json.loads(path.read_text())


def list_experiments(ws: Workspace) -> list[dict]:
    """Every experiment's summary, newest first."""
    root = ws.root / "experiments"
    out = []
    for path in root.glob("*/experiment.json") if root.is_dir() else ():
        rec = json.loads(path.read_text())
        out.append({k: rec.get(k) for k in ("experiment_id", "name", "status", "created_at", "finished_at")}
                   | {"variants": list(rec.get("variants", {}))})
    return sorted(out, key=lambda r: r.get("created_at") or "", reverse=True)


def variant_row(ws: Workspace, run_id: str) -> dict:
    """What a finished variant learned and cost, from its run folder (results.json, metrics.jsonl)."""
    res = json.loads((ws.run(run_id) / "results.json").read_text())
    metrics = read_jsonl(ws.run(run_id) / "metrics.jsonl")
    heldout = [v for k, v in res["sft"].items() if k.startswith("heldout")]
    speeds = [m["tokens_per_s"] for m in metrics if "tokens_per_s" in m][1:]  # the first includes start-up
    losses = [m["val_loss"] for m in metrics if "val_loss" in m]
    return {"model": res["model"], "method": res["method"], "trainable_params": res["trainable_params"],
            "total_params": res["total_params"], "heldout_accuracy": sum(heldout) / len(heldout) if heldout else None,
            "accuracy": res["sft"], "base_accuracy": res["base"],
            "peak_memory_mb": max((m["memory_mb"] for m in metrics if "memory_mb" in m), default=None),
            "tokens_per_s": sum(speeds) / len(speeds) if speeds else None,
            "val_loss": losses[-1] if losses else None}


def forgetting_row(before: dict, after: dict) -> dict:
    """The change in what pretraining taught: perplexity ratio (>1 = forgot) and fact accuracy change."""
    out = {"world_facts": after["world_facts"]["accuracy"],
           "world_facts_change": after["world_facts"]["accuracy"] - before["world_facts"]["accuracy"]}
    if before.get("pretrain_val") and after.get("pretrain_val"):
        out |= {"pretrain_perplexity": after["pretrain_val"]["perplexity"],
                "pretrain_perplexity_ratio": after["pretrain_val"]["perplexity"] / before["pretrain_val"]["perplexity"]}
    return out


# --------------------------------------------------------------------------- the run


def run(exp: ExperimentConfig, configs: dict[str, SFTConfig], ws: Workspace, *, name: str) -> dict:
    """Run every variant in turn; returns the final record (also in experiments/<id>/experiment.json)."""
    from training.posttrain import adapters, forgetting, sft

    exp_id = f"{name}-{datetime.now():%Y%m%d-%H%M%S}"
    first = next(iter(configs.values()))
    base_path, _ = adapters.base_config(first.base.model, ws)  # a missing base is one line, before any work
    record = {"experiment_id": exp_id, "name": name, "status": "RUNNING", "base_model": first.base.model,
              "created_at": datetime.now().astimezone().isoformat(timespec="seconds"), "finished_at": None,
              "config": exp.model_dump(mode="json"), "before": None,
              "variants": {v: {"status": "PENDING", "run_id": f"{exp_id}-{v}", "params": exp.variants[v]}
                           for v in configs}}
    write_record(ws, record)
    if exp.forgetting:
        print(f"measuring what {first.base.model} knows before fine-tuning ...", flush=True)
        record["before"] = forgetting.measure(base_path, ws)
        write_record(ws, record)
    for variant, cfg in configs.items():
        row = record["variants"][variant]
        row["status"] = "RUNNING"
        write_record(ws, record)
        print(f"\n== {variant}: {json.dumps(exp.variants[variant])}", flush=True)
        start = time.perf_counter()
        try:
            result = sft.run(cfg.model_copy(update={"run_name": row["run_id"]}), ws, run_id=row["run_id"])
            error = result.error
        except Exception as e:  # noqa: BLE001 - Ray Train raises a failed run's error: record it, run the next
            error = e
        row["seconds"] = round(time.perf_counter() - start, 1)
        if error is not None:
            row.update(status="FAILED", error=str(error).strip().splitlines()[-1][:300])
            write_record(ws, record)
            continue
        row.update(variant_row(ws, row["run_id"]), status="FINISHED")
        if exp.forgetting:
            row["forgetting"] = forgetting_row(record["before"], forgetting.measure(ws.model(row["model"]), ws))
        write_record(ws, record)
    record["status"] = "FINISHED" if all(r["status"] == "FINISHED" for r in record["variants"].values()) \
        else "FAILED"
    record["finished_at"] = datetime.now().astimezone().isoformat(timespec="seconds")
    write_record(ws, record)
    return record


def table(record: dict) -> list[dict]:
    """One flat row per variant: the results view of the CLI, the API and the Fine-tune page."""
    rows = []
    for variant, r in record["variants"].items():
        f = r.get("forgetting") or {}
        rows.append({"variant": variant, "status": r["status"], "method": r.get("method"),
                     "heldout_accuracy": r.get("heldout_accuracy"), "trainable_params": r.get("trainable_params"),
                     "peak_memory_mb": r.get("peak_memory_mb"), "tokens_per_s": r.get("tokens_per_s"),
                     "seconds": r.get("seconds"), "pretrain_perplexity_ratio": f.get("pretrain_perplexity_ratio"),
                     "world_facts_change": f.get("world_facts_change"), "model": r.get("model")})
    return rows
