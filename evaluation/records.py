"""Evaluation records: what an evaluation found, kept in the workspace so it outlives every process.

```
workspace/evals/<eval_id>/
  eval.json                      the record: config, status, progress, each model's lineage, and one row
                                 per (model, task) and per (model, group) with its score, standard error,
                                 95% interval and the score normalised to chance
  samples/<model>/<task>.jsonl   one line per item: prompt, target, the model's answer, its score
workspace/evals/tasks/           the offline task suites, as lm-eval YAML + JSONL (evaluation/suites.py)
```

`eval.json` is rewritten (whole, by rename) after each (model, suite) finishes, so the API, the UI and
a terminal that poll it follow an evaluation live, and a crash leaves the last complete state.

A score's 95% interval is score +/- 1.96 standard errors (lm-eval's stderr of the mean over items).
Normalised to chance, 0 is random guessing and 1 is perfect, `(score - chance) / (1 - chance)`, as the
Open LLM Leaderboard and nanochat's CORE metric do: a 2-choice and a 4-choice task then average fairly.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from evaluation.harness import primary_metric
from training.workspace import Workspace

_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
Z95 = 1.959964


def evals_dir(ws: Workspace) -> Path:
    return ws.root / "evals"


def tasks_dir(ws: Workspace) -> Path:
    return evals_dir(ws) / "tasks"


def eval_dir(ws: Workspace, eval_id: str) -> Path:
    return evals_dir(ws) / eval_id


def _write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def write_record(ws: Workspace, record: dict) -> None:
    _write_json(eval_dir(ws, record["eval_id"]) / "eval.json", record)


def read_record(ws: Workspace, eval_id: str) -> dict | None:
    if not _ID.fullmatch(eval_id) or eval_id == "tasks":
        return None
    path = eval_dir(ws, eval_id) / "eval.json"
    return json.loads(path.read_text()) if path.is_file() else None


def read_all(ws: Workspace) -> list[dict]:
    """Every evaluation's whole record, oldest first (what the leaderboard is made of)."""
    root = evals_dir(ws)
    recs = [json.loads(p.read_text()) for p in root.glob("*/eval.json")] if root.is_dir() else []
    return sorted(recs, key=lambda r: r.get("finished_at") or r.get("created_at") or "")


def list_records(ws: Workspace) -> list[dict]:
    """Every evaluation's summary, newest first."""
    out = []
    root = evals_dir(ws)
    for path in root.glob("*/eval.json") if root.is_dir() else ():
        rec = json.loads(path.read_text())
        out.append({k: rec.get(k) for k in ("eval_id", "name", "status", "created_at", "finished_at", "progress")}
                   | {"models": rec["config"]["models"], "tasks": rec["config"]["tasks"],
                      "backend": rec["config"]["backend"]})
    return sorted(out, key=lambda r: r.get("created_at") or "", reverse=True)


def _slug(model: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("._") or "model"


def write_samples(ws: Workspace, eval_id: str, model: str, samples: dict[str, list[dict]]) -> None:
    folder = eval_dir(ws, eval_id) / "samples" / _slug(model)
    folder.mkdir(parents=True, exist_ok=True)
    for task, rows in samples.items():
        tmp = folder / f".{task}.jsonl.tmp"
        with tmp.open("w") as f:
            for row in rows:
                f.write(json.dumps(row) + "\n")
        os.replace(tmp, folder / f"{task}.jsonl")


def read_samples(ws: Workspace, eval_id: str, model: str, task: str) -> list[dict] | None:
    if not (_ID.fullmatch(eval_id) and re.fullmatch(r"[\w.-]+", task)):
        return None
    path = eval_dir(ws, eval_id) / "samples" / _slug(model) / f"{task}.jsonl"
    if not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def score_row(model: str, suite: str, task: str, metrics: dict, n: int | None, chance: float | None,
              *, group: bool = False) -> dict:
    """One leaderboard cell: the task's primary metric with its interval, and normalised to chance.

    >>> r = score_row("m", "world_facts", "world_facts", {"acc": 0.75, "acc_stderr": 0.05}, 100, 0.25)
    >>> r["metric"], r["score"], [round(x, 3) for x in r["ci95"]], round(r["normalized"], 3)
    ('acc', 0.75, [0.652, 0.848], 0.667)
    """
    metric = primary_metric(metrics)
    score = metrics.get(metric) if metric else None
    stderr = metrics.get(f"{metric}_stderr") if metric and "[" not in metric else None
    if metric and "[" in metric:  # exact_match[strip] -> exact_match_stderr[strip]
        name, filt = metric.split("[", 1)
        stderr = metrics.get(f"{name}_stderr[{filt}")
    stderr = stderr if isinstance(stderr, (int, float)) and not math.isnan(stderr) else None  # "N/A", NaN -> None
    ci = [max(0.0, score - Z95 * stderr), min(1.0, score + Z95 * stderr)] if score is not None and stderr else None
    normalized = ((score - chance) / (1 - chance) if score is not None and chance is not None and chance < 1
                  else None)
    return {"model": model, "suite": suite, "task": task, "group": group, "metric": metric, "score": score,
            "stderr": stderr, "ci95": ci, "chance": chance, "normalized": normalized, "n": n, "metrics": metrics}
