"""The data pipeline over HTTP, mounted into the playground API (services/api.py) at /api.

    GET    /api/data/snapshots                    every snapshot, newest first (parent, sources, docs)
    GET    /api/data/snapshots/{id}               {"manifest", "stats"}: what went in, what each stage removed
    GET    /api/data/snapshots/{id}/samples       ?status=kept|removed&stage=&reason=&limit=&offset=
    GET    /api/data/diff?a=ID&b=ID               config keys, inputs, counts per stage and outputs, a -> b
    POST   /api/data/jobs                         {"config": {...PipelineConfig...}} -> 202 and a Ray job id
    GET    /api/data/jobs/{job_id}                status, progress (stages done / total), the snapshot, the error

Snapshots are read with `training/data/snapshot.py` (the same readers as the CLI);
the pipeline itself runs as a Ray job (`playground data run --config FILE`), so this
module only checks the request (a bad field is a 4xx now, not a failed job later),
writes the resolved config to `workspace/jobs/` and reads the job's logs back.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict

from services.jobs import (
    job_error,
    job_status,
    read_job,
    submit_cli_job,
    workspace,
    write_job_config,
)
from services.llm import openai_error
from services.tokenizer_api import user_error
from training.data import snapshot, uploads
from training.data.config import PipelineConfig
from training.errors import UserError
from training.workspace import Workspace

router = APIRouter()

_NOT_FOUND = re.compile(r"^([A-Za-z_][\w.\[\]]*): no ")  # "snapshot: no snapshot 'x' ...": a 404
_PROGRESS = re.compile(r"^progress: (\d+)/(\d+)(?: (\S+))?")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class DataJobRequest(BaseModel):
    """The pipeline's config, as in configs/data/*.yaml (errors name the field, `config.split.train`)."""

    model_config = ConfigDict(extra="forbid")
    config: PipelineConfig


def error_response(e: UserError) -> JSONResponse:
    """A `UserError` as a 4xx naming its field: 404 for something that is not there, else 400."""
    named = _NOT_FOUND.match(str(e))
    if named:
        return openai_error(404, str(e), named.group(1), code="not_found")
    return user_error(e)


async def _run(fn, *args, **kwargs):
    """Read off the event loop, with UserError turned into its 4xx."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except UserError as e:
        return error_response(e)


def _int(value: str, field: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise UserError(f"{field}: an integer, got {value!r}") from None


# ---------------------------------------------------------------------------- snapshots


@router.get("/data/snapshots")
async def snapshots(request: Request) -> list[dict]:
    return await asyncio.to_thread(snapshot.list_snapshots, workspace(request))


@router.get("/data/snapshots/{snapshot_id}")
async def snapshot_detail(snapshot_id: str, request: Request):
    ws = workspace(request)
    return await _run(lambda: {"manifest": snapshot.load_manifest(ws, snapshot_id),
                               "stats": snapshot.load_stats(ws, snapshot_id)})


@router.get("/data/snapshots/{snapshot_id}/samples")
async def snapshot_samples(
        snapshot_id: str, request: Request,
        status: str | None = Query(None, description="kept | removed (empty or 'all': both)"),
        stage: str | None = Query(None, description="the stage that removed the document"),
        reason: str | None = Query(None, description="the removal reason, or its prefix ('lang:')"),
        limit: str = Query("20", description="an integer, 1-500"),
        offset: str = Query("0", description="an integer, >= 0")):
    ws = workspace(request)

    def read():
        n, skip = _int(limit, "limit"), _int(offset, "offset")
        if stage:  # a typo would silently match nothing: name the stages there are instead
            stages = [s["stage"] for s in snapshot.load_stats(ws, snapshot_id).get("stages", [])]
            if stage not in stages:
                raise UserError(f"stage: unknown stage {stage!r}; this snapshot's stages are {stages}")
        return snapshot.samples(ws, snapshot_id, status=None if status in (None, "", "all") else status,
                                stage=stage or None, reason=reason or None, limit=n, offset=skip)

    return await _run(read)


@router.get("/data/diff")
async def diff(request: Request, a: str | None = Query(None, description="the snapshot to compare from"),
               b: str | None = Query(None, description="the snapshot to compare to")):
    return await _run(snapshot.diff, workspace(request), a, b)


# ---------------------------------------------------------------------------- jobs


def resolve_sources(ws: Workspace, sources: list[str]) -> list[str]:
    """Check each source now (UserError naming `config.sources[i]`); local paths become absolute."""
    out = []
    for i, src in enumerate(s.strip() for s in sources):
        field = f"config.sources[{i}]"
        if src in ("synthetic", "planted") or src.startswith(("hf:", "planted:")):
            out.append(src)
        elif src.startswith("upload:"):
            upload_id = src[len("upload:"):]
            # read_upload's rules, without reading the file
            if not uploads.UPLOAD_ID.fullmatch(upload_id):
                raise UserError(f"{field}: not an upload id: {upload_id!r} (POST the file to /api/uploads)")
            if not (ws.root / "uploads" / f"{upload_id}.txt").is_file():
                raise UserError(f"{field}: no upload {upload_id!r} (POST the file to /api/uploads first)")
            out.append(src)
        elif src.startswith("snapshot:"):
            snapshot.snapshot_dir(ws, src[len("snapshot:"):], field)
            out.append(src)
        elif Path(src).expanduser().exists():
            out.append(str(Path(src).expanduser().resolve()))
        elif _NAME.fullmatch(src) and (ws.dataset(src) / "manifest.json").is_file():
            try:
                snapshot.snapshot_dir(ws, src)
                hint = f"use 'snapshot:{src}'"
            except UserError:
                hint = "give the path of its text files instead"
            raise UserError(f"{field}: {src!r} is a registered dataset, not a source: {hint}")
        else:
            raise UserError(f"{field}: no file or folder {src!r} on the server (a file of yours: "
                            "POST it to /api/uploads, then 'upload:ID')")
    return out


def check_config(ws: Workspace, cfg: PipelineConfig) -> PipelineConfig:
    """The config with its sources checked and resolved, and its tokenizer (if any) found."""
    tok = cfg.stats.tokenizer
    if tok and not (ws.tokenizer(tok).is_dir() or Path(tok).expanduser().is_dir()):
        raise UserError(f"config.stats.tokenizer: no tokenizer {tok!r} in {ws.tokenizers} (nor such a folder)")
    return cfg.model_copy(update={"sources": resolve_sources(ws, cfg.sources)})


def parse_job_logs(logs: str) -> dict:
    """The last `progress: done/total stage` line and the snapshot id of the final JSON line."""
    progress = {"done": 0, "total": 0, "stage": None}
    snapshot_id = None
    for line in logs.splitlines():
        line = line.strip()
        if m := _PROGRESS.match(line):
            progress = {"done": int(m.group(1)), "total": int(m.group(2)), "stage": m.group(3)}
        elif line.startswith("{") and '"snapshot"' in line:
            try:
                out = json.loads(line)
            except ValueError:
                continue
            if isinstance(out, dict) and isinstance(out.get("snapshot"), str):
                snapshot_id = out["snapshot"]
    return {"progress": progress, "snapshot": snapshot_id}


@router.post("/data/jobs", status_code=202)
async def run_pipeline(req: DataJobRequest, request: Request):
    """Check the config here, write it to the workspace, then run `playground data run` as a Ray job."""
    ws = workspace(request)
    try:
        path = await asyncio.to_thread(lambda: write_job_config(ws, "data", check_config(ws, req.config)))
    except UserError as e:
        return error_response(e)
    job_id = await asyncio.to_thread(submit_cli_job, request, ["data", "run", "--config", str(path)],
                                     {"kind": "data", "name": req.config.name})
    return {"job_id": job_id, "name": req.config.name, "config_file": str(path), "status": "PENDING"}


@router.get("/data/jobs/{job_id}")
async def data_job(job_id: str, request: Request):
    found = await asyncio.to_thread(read_job, request, job_id, "data")
    if found is None:
        return openai_error(404, f"no data pipeline job {job_id!r}", "job_id", code="not_found")
    info, logs = found
    status = job_status(info)
    return {"job_id": job_id, "name": (info.metadata or {}).get("name"), "status": status,
            **parse_job_logs(logs), "error": job_error(status, info, logs)}
