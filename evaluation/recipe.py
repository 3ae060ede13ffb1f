"""`playground eval`: every model on every suite, each (model, suite) a Ray task, recorded as it goes.

The recipe around evaluation/harness.py. Everything a user can get wrong (an unknown task, a model
that is not there or not served) is checked before anything is written or started. Then:

    [1] Ray: join the cluster (`ray job submit` sets RAY_ADDRESS) or start a local one.
    [2] Ray: one task per (model, suite), 1 CPU each; Ray runs as many at once as the cluster has
        CPUs for, so a large cluster evaluates many models in parallel.
    [3] Ray: as each finishes (in any order), its scores and items go into the record.

The record (evaluation/records.py) is rewritten after each (model, suite), so the Evaluate page
follows progress; it ends SUCCEEDED, or FAILED naming the suite that failed (the others still count).
"""

from __future__ import annotations

import os
import platform
import subprocess
import time
from datetime import datetime, timezone

from evaluation import checkpoints, online_tasks, records, suites
from evaluation import custom as custom_
from evaluation.config import EvalConfig
from evaluation.harness import check_served, model_source, run_suite
from training.errors import UserError
from training.workspace import PROJECT_ROOT, Workspace


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=PROJECT_ROOT,
                             capture_output=True, text=True, timeout=5)
    except OSError:
        return None
    return out.stdout.strip() or None


def check_backend(cfg: EvalConfig, units: dict, custom: dict | None) -> None:
    """A chat endpoint gives no log-likelihoods: refuse a multiple-choice suite on served-chat."""
    if cfg.backend == "served-chat":
        scored = [u for u in units if not suites.is_chat(u, custom) and suites.engine(u) == "lm_eval"]
        if scored:
            raise UserError(f"tasks: {scored[0]} is scored by log-likelihood, which a chat endpoint cannot give; "
                            "backend served-chat runs generation tasks only (use backend=served for it)")


def plan(cfg: EvalConfig, ws: Workspace) -> dict:
    """What will run: each model resolved, each suite expanded to lm-eval tasks (the workspace's
    custom benchmarks among them). Raises UserError (naming `models` or `tasks`) before anything is written."""
    registered = custom_.list_custom(ws.root)
    units = suites.units(cfg.tasks, registered)
    tasks = {t for ts in units.values() for t in ts}
    # only the benchmarks this run uses: their metas travel to every Ray task and into the record
    custom = {name: meta for name, meta in registered.items() if meta["task"] in tasks}
    if cfg.checkpoints:  # each run's checkpoints, exported once to folders lm-eval's hf backend loads
        sources = checkpoints.sources(ws, cfg.models)
    else:
        sources = {m: model_source(ws, m) for m in cfg.models}
    check_backend(cfg, units, custom)
    if cfg.backend in ("served", "served-chat"):
        check_served(cfg.endpoint, cfg.models)
    elif cfg.apply_chat_template:
        missing = [m for m, s in sources.items() if not s.chat_template]
        if missing:
            raise UserError(f"apply_chat_template: model {missing[0]!r} has no chat template")
    return {"units": units, "sources": sources, "custom": custom}


def new_record(cfg: EvalConfig, eval_id: str, planned: dict) -> dict:
    import lm_eval

    total = len(planned["sources"]) * len(planned["units"])
    return {"eval_id": eval_id, "name": cfg.name or eval_id, "status": "RUNNING", "created_at": _now(),
            "finished_at": None, "config": cfg.model_dump(mode="json"),
            "progress": {"done": 0, "total": total, "running": []},
            "models": {m: s.lineage for m, s in planned["sources"].items()},
            "suites": planned["units"], "custom": planned["custom"], "rows": [], "groups": [], "errors": [],
            "seconds": None,
            "environment": {"lm_eval": getattr(lm_eval, "__version__", None), "git_commit": _git_commit(),
                            "python": platform.python_version(), "machine": platform.machine(),
                            "cpus": os.cpu_count()}}


def _chat(cfg: EvalConfig, suite: str, source, custom: dict | None = None) -> bool:
    if cfg.backend == "served-chat":
        return True  # lm-eval sends chat-completions messages only when it renders the task as a chat
    if cfg.apply_chat_template is not None:
        return cfg.apply_chat_template
    return suites.is_chat(suite, custom) and source.chat_template


def evaluate_one(cfg_data: dict, source, suite: str, tasks: list[str], tasks_root: str,
                 custom: dict | None = None) -> dict:
    """One model on one suite (runs inside a Ray task). `custom`: the metas of the custom benchmarks
    the run uses (plain data, from `plan`), so the worker knows them without reading the workspace."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    # Our suites' data are local files: never ask the Hub; lm-eval's own tasks (hellaswag...) must.
    online_tasks.datasets_offline(tasks)
    cfg = EvalConfig.model_validate(cfg_data)
    if suites.engine(suite) == "humaneval":
        return run_humaneval(cfg, source)
    tm = suites.task_manager(tasks_root, tasks, custom)
    return run_suite(cfg, source, tasks, tm, apply_chat_template=_chat(cfg, suite, source, custom))


def run_humaneval(cfg: EvalConfig, source) -> dict:
    """HumanEval pass@1, greedy, through evaluation/humaneval.py; in run_suite's shape."""
    from evaluation import humaneval

    max_tokens = min(512, (source.context or 2048) // 2)
    if cfg.backend in ("served", "served-chat"):
        key = os.environ.get("PLAYGROUND_API_KEY")
        generate = humaneval.served_generator(cfg.endpoint.rstrip("/").removesuffix("/v1"), source.name,
                                              max_tokens=max_tokens, api_key=key)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(source.path)
        generate = humaneval.hf_generator(model, AutoTokenizer.from_pretrained(source.path),
                                          max_new_tokens=max_tokens)
    t0 = time.perf_counter()
    out = humaneval.evaluate(generate, limit=cfg.limit)
    samples = [s | {"doc_id": i, "pass@1": float(s["passed"])} for i, s in enumerate(out["samples"])]
    return {"tasks": {"humaneval": {"pass@1": out["pass@1"], "pass@1_stderr": out["pass@1_stderr"]}},
            "groups": {}, "samples": {"humaneval": samples}, "n": {"humaneval": out["n_problems"]},
            "versions": {"humaneval": 1}, "seconds": time.perf_counter() - t0}


def add_result(ws: Workspace, record: dict, model: str, suite: str, out: dict) -> None:
    """Put one finished (model, suite) into the record: a row per task and per group, items to disk."""
    custom = record.get("custom")
    for task, metrics in out["tasks"].items():
        record["rows"].append(records.score_row(model, suite, task, metrics, out["n"].get(task),
                                                suites.chance(task, custom)))
    for group, metrics in out["groups"].items():
        n = sum(v or 0 for t, v in out["n"].items() if t in suites.members(group)) or None
        record["groups"].append(records.score_row(model, suite, group, metrics, n, suites.chance(group),
                                                  group=True))
    records.write_samples(ws, record["eval_id"], model, out["samples"])


def run(cfg: EvalConfig, ws: Workspace, *, eval_id: str, say=print, planned: dict | None = None) -> dict:
    """Plan (unless `planned` is given), then evaluate on Ray. Returns the final record."""
    import ray  # here, not at the top: `playground eval` sets Ray's auth mode first, and Ray reads it on import

    planned = planned or plan(cfg, ws)
    tasks_root = suites.prepare(records.tasks_dir(ws), list(planned["units"]), planned["custom"])
    t0 = time.perf_counter()
    if not ray.is_initialized():
        address = os.environ.get("RAY_ADDRESS")
        # [1] Ray: join the cluster of `ray job submit` or of `playground up` (RAY_ADDRESS; `playground eval`
        # sets it when one runs here: an evaluation is small work beside the models it asks), else start one.
        ray.init(address=address, num_cpus=None if address else max(os.cpu_count() or 1, 2), log_to_driver=True)
    record = new_record(cfg, eval_id, planned)  # written once Ray is there: no record of an evaluation that never ran
    records.write_record(ws, record)
    # [2] Ray: one CPU task per (model, suite); the object store carries the items back.
    remote = ray.remote(num_cpus=1, max_retries=0)(evaluate_one)
    pending = {}
    for model, source in planned["sources"].items():
        for suite, tasks in planned["units"].items():
            ref = remote.remote(cfg.model_dump(mode="json"), source, suite, tasks, str(tasks_root), planned["custom"])
            pending[ref] = (model, suite)
    record["progress"]["running"] = [f"{m}/{s}" for m, s in pending.values()]
    while pending:
        # [3] Ray: take whichever finishes first, record it, and wait for the rest.
        [ref], _ = ray.wait(list(pending), num_returns=1)
        model, suite = pending.pop(ref)
        try:
            out = ray.get(ref)
            add_result(ws, record, model, suite, out)
            say(f"  {model} {suite}: " + ", ".join(
                f"{r['task']} {r['metric']} {r['score']:.3f}" for r in record["rows"] + record["groups"]
                if r["model"] == model and r["suite"] == suite and r["score"] is not None
                and (r["group"] or r["task"] == suite or len(out["tasks"]) <= 3)) + f" ({out['seconds']:.0f} s)")
        except ray.exceptions.RayTaskError as e:
            cause = e.cause if isinstance(e.cause, Exception) else e
            record["errors"].append({"model": model, "suite": suite, "error": str(cause).strip().splitlines()[-1]})
            say(f"  {model} {suite}: FAILED: {record['errors'][-1]['error']}")
        record["progress"]["done"] += 1
        record["progress"]["running"] = [f"{m}/{s}" for m, s in pending.values()]
        say(f"progress {record['progress']['done']}/{record['progress']['total']}")
        records.write_record(ws, record)
    record.update(status="FAILED" if record["errors"] else "SUCCEEDED", finished_at=_now(),
                  seconds=round(time.perf_counter() - t0, 2))
    records.write_record(ws, record)
    return record
