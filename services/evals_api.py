"""Evaluations over HTTP: submit one, follow it, read its scores and items.

    POST /api/evals                       {"models": [...], "tasks": [...], "limit", "num_fewshot", "backend"}
                                          -> 202 {"eval_id", "job_id"}: `playground eval` as a Ray job
    GET  /api/evals                       every evaluation, newest first: status, progress, models, tasks
    GET  /api/evals/{eval_id}             one record: config, progress, lineage, a row per (model, task)
    GET  /api/evals/{eval_id}/samples     ?model=&task=: the per-item records of one model on one task
    GET  /api/eval-tasks                  the suites that can be asked for, with their kind and chance level,
                                          the workspace's custom benchmarks among them (`custom: true`)
    POST /api/eval-tasks                  {"name", "text" (JSONL), "metric"?, "description"?} -> 201 its meta:
                                          register a custom benchmark (evaluation/custom.py); a bad line is a
                                          400 naming `text`, "line 7: answer: ..."; re-posting a name replaces it
    DELETE /api/eval-tasks/{name}         unregister one -> 200 the meta it had (404 naming `name` if none)
    GET  /api/leaderboard                 ?tasks=a,b&format=json|csv&checkpoints=false: every model's latest score
                                          on each task, with its 95% interval and normalised to chance; models by
                                          average (a run's checkpoints only with checkpoints=true)
    GET  /api/leaderboard/compare         ?task=&a=&b=: a paired test of two models on one task (paired
                                          bootstrap; McNemar for right/wrong scores), from their items
    GET  /api/leaderboard/history         ?run=&tasks=: each task's score against training step, from the run's
                                          evaluated checkpoints (`playground eval --checkpoints all`); without
                                          `run`, the runs that have such scores
    GET  /api/leaderboard/breakdown       ?group=mmlu&models=a,b: the tasks inside a group per model (MMLU's
                                          57 subjects with their category)

Everything is checked before the job starts: a task nobody knows or a model that is not in the
workspace is a 404 naming it; a model that is not served, for the `served` backend, a 409. The
evaluation itself runs in Ray tasks (evaluation/recipe.py) and writes `workspace/evals/<id>/`, which
these routes read: records survive restarts of the API and the UI.
"""

from __future__ import annotations

import asyncio
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, ValidationError

from evaluation import custom, leaderboard, records
from evaluation.config import EvalConfig
from services.data_api import error_response
from services.jobs import submit_cli_job, workspace, write_job_config
from services.llm import openai_error
from training.errors import UserError

router = APIRouter()


class EvalRequest(BaseModel):
    model_config = ConfigDict(extra="allow")  # the rest is EvalConfig's, checked against it


class BenchmarkRequest(BaseModel):
    """A custom benchmark to register: the JSONL file's content in `text` (evaluation/custom.py)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    text: str
    metric: str | None = None
    description: str = ""


def _not_found(field: str, message: str):
    return openai_error(404, message, field, code="not_found")


def check_request(ws, body: dict[str, Any]) -> EvalConfig:
    """The request as an EvalConfig, with its tasks and models checked (UserError naming the field)."""
    try:
        cfg = EvalConfig.model_validate(body)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err["loc"])
        msg = err["msg"].removeprefix("Value error, ")
        raise UserError(f"{where}: {msg}" if where else msg) from None  # a check across fields names its own
    from evaluation.harness import model_source
    from evaluation.recipe import check_backend
    from evaluation.suites import units

    registered = custom.list_custom(ws.root)
    check_backend(cfg, units(cfg.tasks, registered), registered)
    if cfg.checkpoints:
        from evaluation.checkpoints import sources

        sources(ws, cfg.models, export=False)  # each a run that kept checkpoints (the job exports them)
        return cfg
    for m in cfg.models:
        if not model_source(ws, m).path.startswith("/"):  # a Hub name: the CLI takes those, the API does not
            raise UserError(f"models: no model {m!r} in the workspace (GET /api/models lists them)")
    return cfg


@router.post("/evals", status_code=202)
async def submit(req: EvalRequest, request: Request):
    ws = workspace(request)

    def go():
        from evaluation.harness import check_served

        cfg = check_request(ws, req.model_dump())
        if cfg.backend != "hf":
            check_served(cfg.endpoint, cfg.models)
        eval_id = cfg.name or f"eval-{datetime.now():%Y%m%d-%H%M%S-%f}"[:-3]
        if records.read_record(ws, eval_id) is not None:
            raise UserError(f"name: an evaluation {eval_id!r} exists already")
        cfg = cfg.model_copy(update={"name": eval_id})
        path = write_job_config(ws, "eval", cfg)
        job_id = submit_cli_job(request, ["eval", "--config", str(path)],
                                {"kind": "eval", "name": eval_id, "config_file": str(path)})
        return {"eval_id": eval_id, "job_id": job_id, "status": "PENDING"}

    try:
        return await asyncio.to_thread(go)
    except UserError as e:
        msg = str(e)
        if msg.startswith("tasks:") and "unknown" in msg:
            return _not_found("tasks", msg)
        if msg.startswith("models:") and "is not served" in msg:
            return openai_error(409, msg, "models", code="model_not_served")
        if msg.startswith(("models: no model", "models: no run")):
            return _not_found("models", msg)
        if msg.startswith("endpoint:"):
            return openai_error(409, msg, "endpoint", code="no_endpoint")
        return error_response(e)


@router.get("/evals")
async def list_evals(request: Request) -> list[dict]:
    return await asyncio.to_thread(records.list_records, workspace(request))


@router.get("/evals/{eval_id}")
async def get_eval(eval_id: str, request: Request):
    record = await asyncio.to_thread(records.read_record, workspace(request), eval_id)
    if record is None:
        return _not_found("eval_id", f"eval_id: no evaluation {eval_id!r} (GET /api/evals lists them)")
    return record


@router.get("/evals/{eval_id}/samples")
async def get_samples(eval_id: str, request: Request, model: str = Query(...), task: str = Query(...)):
    ws = workspace(request)
    record = await asyncio.to_thread(records.read_record, ws, eval_id)
    if record is None:
        return _not_found("eval_id", f"eval_id: no evaluation {eval_id!r} (GET /api/evals lists them)")
    rows = await asyncio.to_thread(records.read_samples, ws, eval_id, model, task)
    if rows is None:
        return _not_found("task", f"task: no items of model {model!r} on task {task!r} in {eval_id}")
    return {"eval_id": eval_id, "model": model, "task": task, "samples": rows}


@router.get("/eval-tasks")
async def eval_tasks(request: Request) -> list[dict]:
    from evaluation.suites import catalog

    return catalog(await asyncio.to_thread(custom.list_custom, workspace(request).root))


@router.post("/eval-tasks", status_code=201)
async def add_eval_task(req: BenchmarkRequest, request: Request):
    """Register a custom benchmark; every line of `text` is checked first, and nothing is written on an error."""
    try:
        return await asyncio.to_thread(custom.register, workspace(request).root, req.name, req.text,
                                       metric=req.metric, description=req.description)
    except UserError as e:
        if str(e).startswith(("line ", "text:")):  # the file's content: "line 7: answer: ..."
            return openai_error(400, str(e), "text")
        return error_response(e)


@router.delete("/eval-tasks/{name}")
async def remove_eval_task(name: str, request: Request):
    try:
        return await asyncio.to_thread(custom.remove, workspace(request).root, name)  # the meta it had
    except UserError as e:
        return _not_found("name", str(e))


def board_csv(b: dict) -> str:
    """The leaderboard as CSV: one row per model, per task its score, interval and normalised score."""
    import csv
    import io

    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["model", "average_normalized"] + [f"{t}{part}" for t in b["tasks"]
                                                  for part in ("", "_ci_low", "_ci_high", "_normalized", "_n")])
    for m in b["models"]:
        row = [m["model"], m["average"]]
        for t in b["tasks"]:
            c = m["cells"].get(t) or {}
            ci = c.get("ci95") or [None, None]
            row += [c.get("score"), ci[0], ci[1], c.get("normalized"), c.get("n")]
        w.writerow(["" if v is None else v for v in row])
    return buf.getvalue()


def _names(csv: str | None) -> list[str] | None:
    return [t.strip() for t in csv.split(",") if t.strip()] or None if csv else None


@router.get("/leaderboard")
async def get_leaderboard(request: Request, tasks: str | None = None, format: str = Query("json"),
                          checkpoints: bool = False):
    if format not in ("json", "csv"):
        return openai_error(400, f"format: 'json' or 'csv', got {format!r}", "format")
    b = await asyncio.to_thread(leaderboard.board, workspace(request), _names(tasks), checkpoints=checkpoints)
    if format == "csv":
        return PlainTextResponse(board_csv(b), media_type="text/csv",
                                 headers={"Content-Disposition": 'attachment; filename="leaderboard.csv"'})
    return b


@router.get("/leaderboard/compare")
async def compare(request: Request, task: str = Query(...), a: str = Query(...), b: str = Query(...)):
    ws = workspace(request)

    def go():
        b_ = leaderboard.board(ws, [task])
        cells = {m["model"]: m["cells"].get(task) for m in b_["models"]}
        for field, model in (("a", a), ("b", b)):
            if not cells.get(model):
                return _not_found(field, f"{field}: model {model!r} has no score on task {task!r}")
        rows = {}
        for field, model in (("a", a), ("b", b)):
            rows[field] = records.read_samples(ws, cells[model]["eval_id"], model, task)
            if rows[field] is None:
                return _not_found(field, f"{field}: no per-item records of {model!r} on {task!r} (a group's "
                                         "score has none: compare its tasks)")
        metric = cells[a]["metric"].split("[")[0]  # items keep the bare name: exact_match[strip] -> exact_match
        return {"task": task, "a": a, "b": b, "eval_ids": [cells[a]["eval_id"], cells[b]["eval_id"]]} | \
            leaderboard.compare(rows["a"], rows["b"], metric)

    return await asyncio.to_thread(go)


@router.get("/leaderboard/history")
async def get_history(request: Request, run: str | None = None, tasks: str | None = None):
    out = await asyncio.to_thread(leaderboard.history, workspace(request), run, _names(tasks))
    if run is not None and not any(out["series"].values()):
        return _not_found("run", f"run: no scores of run {run!r} against training step; evaluate its checkpoints "
                                 f"with `playground eval --checkpoints all --model {run} --backend hf`")
    return out


@router.get("/leaderboard/breakdown")
async def get_breakdown(request: Request, group: str = Query("mmlu"), models: str | None = None):
    from evaluation.suites import expand

    ws = workspace(request)
    try:
        [name] = expand([group], custom.list_custom(ws.root))  # "mmlu" -> mmlu_offline, "mmlu_stem" -> its category
    except (UserError, ValueError):
        return _not_found("group", f"group: {group!r} is not one task group (try mmlu, or mmlu_stem)")
    out = await asyncio.to_thread(leaderboard.breakdown, ws, name, _names(models))
    if not out["models"]:
        return _not_found("group", f"group: no model has scores on the tasks of {group!r} yet")
    return out
