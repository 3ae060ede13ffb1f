"""The leaderboard: every model's latest score on every task, and whether two models really differ.

A leaderboard cell is a score from a finite sample of questions, so it comes with a 95% interval
(evaluation/records.py). Two models' intervals overlapping does not mean they are equal, and not
overlapping is a weak test too: both models answered the *same* questions, so the right comparison
is paired. Here, two:

- the **paired bootstrap**: resample the questions (with replacement) many times, and look at the
  distribution of the difference in mean score; its 2.5th-97.5th percentiles are the interval of the
  difference, and how often the difference changes sign gives a two-sided p-value;
- **McNemar's test** (for right/wrong scores): only the questions where the models disagree carry
  information; under "no difference" the ones only A got right and the ones only B got right are
  equally likely, a fair coin (an exact binomial test).

lm-eval's own comparison script uses an unpaired z-test on the two standard errors, which ignores
that the questions are shared and so misses real differences (lm-eval #3831).
"""

from __future__ import annotations

import math

import numpy as np

from evaluation import mmlu, records
from training.workspace import Workspace


def latest_rows(recs: list[dict]) -> dict[tuple[str, str], dict]:
    """(model, task) -> the row of the most recent evaluation that scored it (records oldest first).

    Each row also says where the model came from: its run and training step when its lineage
    has them, and `checkpoint: true` for a run's checkpoint (evaluation/checkpoints.py)."""
    out = {}
    for rec in sorted(recs, key=lambda r: r.get("finished_at") or r.get("created_at") or ""):
        for row in rec.get("groups", []) + rec.get("rows", []):
            if row.get("score") is not None:
                lineage = (rec.get("models") or {}).get(row["model"]) or {}
                out[(row["model"], row["task"])] = row | {
                    "eval_id": rec["eval_id"], "evaluated_at": rec.get("finished_at") or rec.get("created_at"),
                    "backend": rec["config"]["backend"], "run_id": lineage.get("run_id"),
                    "step": lineage.get("step"), "checkpoint": "checkpoint" in lineage}
    return out


def _default_tasks(cells: dict) -> list[str]:
    """The suites and groups (MMLU's 57 subjects stay out: ask for them by name, or see `breakdown`)."""
    return sorted({t for (_, t), row in cells.items() if row["group"] or row["suite"] == t})


def board(ws: Workspace, tasks: list[str] | None = None, *, checkpoints: bool = False) -> dict:
    """Models x tasks from every evaluation in the workspace.

    Returns `{"tasks": [...], "models": [{"model", "average", "n_tasks", "cells": {task: row}}]}`, models
    sorted by `average`: the mean over their tasks of the score normalised to chance (so a 2-choice
    and a 4-choice task count alike). By default the tasks are the suites and groups, and a run's
    checkpoints stay out (they are its `history`); `checkpoints=True` lists them as models too."""
    cells = {k: row for k, row in latest_rows(records.read_all(ws)).items() if checkpoints or not row["checkpoint"]}
    if tasks is None:
        tasks = _default_tasks(cells)
    models: dict[str, dict] = {}
    for (model, task), row in cells.items():
        if task in tasks:
            models.setdefault(model, {"model": model, "cells": {}})["cells"][task] = row
    for m in models.values():
        norms = [r["normalized"] for r in m["cells"].values() if r.get("normalized") is not None]
        m["average"] = sum(norms) / len(norms) if norms else None
        m["n_tasks"] = len(m["cells"])
    ordered = sorted(models.values(), key=lambda m: (m["average"] is None, -(m["average"] or 0), m["model"]))
    return {"tasks": tasks, "models": ordered}


def history(ws: Workspace, run: str | None = None, tasks: list[str] | None = None) -> dict:
    """Scores against training step: for `run`, each task's points `{step, model, score, ci95, ...}`
    oldest step first, from its evaluated checkpoints and the models exported from it (the newest
    evaluation of a step wins). Without `run`: the runs that have checkpoint scores, `{"runs": [{"run",
    "steps"}]}`, each with its scored steps in order."""
    cells = latest_rows(records.read_all(ws))
    if run is None:
        runs: dict[str, set] = {}
        for row in cells.values():
            if row["checkpoint"]:
                runs.setdefault(row["run_id"], set()).add(row["step"])
        return {"runs": [{"run": r, "steps": sorted(s)} for r, s in sorted(runs.items())]}
    mine = {k: row for k, row in cells.items() if row["run_id"] == run and row["step"] is not None}
    tasks = tasks or _default_tasks(mine)
    series: dict[str, dict[int, dict]] = {t: {} for t in tasks}
    for (model, task), row in sorted(mine.items(), key=lambda kv: kv[1]["evaluated_at"] or ""):
        if task in series:
            point = {k: row.get(k) for k in ("model", "step", "metric", "score", "ci95", "normalized", "n",
                                             "eval_id", "checkpoint")}
            series[task][row["step"]] = point
    return {"run": run, "tasks": tasks,
            "series": {t: [pts[s] for s in sorted(pts)] for t, pts in series.items()}}


def breakdown(ws: Workspace, group: str = mmlu.PREFIX, models: list[str] | None = None) -> dict:
    """The tasks inside a group, per model: MMLU's 57 subjects with their category.

    Returns `{"group", "members": [{"task", "category"}], "models": [{"model", "cells": {task: row}}]}`,
    members by category then name; only models (default: all) with a score on at least one member."""
    from evaluation.suites import members

    names = sorted(members(group))
    cells = latest_rows(records.read_all(ws))

    def category(task: str) -> str | None:
        subject = task.removeprefix(f"{mmlu.PREFIX}_")
        return mmlu.subjects()[subject][0] if task.startswith(f"{mmlu.PREFIX}_") and subject in mmlu.subjects() \
            else None

    rows = sorted(({"task": t, "category": category(t)} for t in names), key=lambda m: (m["category"] or "", m["task"]))
    out: dict[str, dict] = {}
    for (model, task), row in cells.items():
        if task in names and (models is None or model in models):
            out.setdefault(model, {"model": model, "cells": {}})["cells"][task] = row
    return {"group": group, "members": rows, "models": sorted(out.values(), key=lambda m: m["model"])}


def paired_scores(a: list[dict], b: list[dict], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """The two models' per-item scores on the items both answered, aligned by `doc_id`."""
    by_id = {r["doc_id"]: r[metric] for r in b if metric in r}
    pairs = [(r[metric], by_id[r["doc_id"]]) for r in a if metric in r and r["doc_id"] in by_id]
    arr = np.asarray(pairs, dtype=float).reshape(-1, 2)
    return arr[:, 0], arr[:, 1]


def paired_bootstrap(a: np.ndarray, b: np.ndarray, *, iters: int = 10_000, seed: int = 0) -> dict:
    """Mean difference a - b over shared items, its 95% interval and a two-sided p-value.

    >>> r = paired_bootstrap(np.array([1, 1, 1, 1, 0, 1] * 20), np.array([0, 1, 0, 1, 0, 0] * 20))
    >>> round(r["diff"], 3), r["p_value"] < 0.01
    (0.5, True)
    """
    n = len(a)
    if n == 0:
        return {"n": 0, "diff": None, "ci95": None, "p_value": None}
    d = a - b
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, n, size=(iters, n))].mean(axis=1)
    lo, hi = np.percentile(means, [2.5, 97.5])
    # How often a resample lands on the other side of zero, doubled: the two-sided p-value
    # (with one added to each count, so a p-value is never exactly 0 from finitely many resamples).
    if d.mean() == 0:
        p = 1.0
    else:
        other = (means <= 0).sum() if d.mean() > 0 else (means >= 0).sum()
        p = min(1.0, 2 * (int(other) + 1) / (iters + 1))
    return {"n": n, "diff": float(d.mean()), "ci95": [float(lo), float(hi)], "p_value": p}


def mcnemar(a: np.ndarray, b: np.ndarray) -> dict:
    """McNemar's exact test on right/wrong (1/0) scores: `only_a` items A got right and B wrong,
    `only_b` the reverse; p-value of the two-sided binomial test of only_a ~ Bin(only_a + only_b, 1/2).

    >>> mcnemar(np.array([1, 1, 1, 0]), np.array([0, 0, 1, 0]))["only_a"]
    2
    """
    only_a = int(((a == 1) & (b == 0)).sum())
    only_b = int(((a == 0) & (b == 1)).sum())
    k, n = min(only_a, only_b), only_a + only_b
    if n == 0:
        return {"only_a": 0, "only_b": 0, "p_value": 1.0}
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2 ** n
    return {"only_a": only_a, "only_b": only_b, "p_value": min(1.0, 2 * tail)}


def compare(a_rows: list[dict], b_rows: list[dict], metric: str, *, iters: int = 10_000) -> dict:
    """Model A against model B on one task, from their per-item records."""
    a, b = paired_scores(a_rows, b_rows, metric)
    out = {"metric": metric, "mean_a": float(a.mean()) if len(a) else None,
           "mean_b": float(b.mean()) if len(b) else None, "bootstrap": paired_bootstrap(a, b, iters=iters)}
    if len(a) and set(np.unique(np.concatenate([a, b]))) <= {0.0, 1.0}:
        out["mcnemar"] = mcnemar(a, b)
    return out
