"""Training, fine-tuning, tokenizer and data jobs over HTTP, through the Ray Jobs API.

    POST   /api/jobs                      {"kind": "pretrain" | "sft" | "reward" | "dpo" | "grpo" |
                                           "tokenizer" | "data" | "tune" | "experiment" | "eval",
                                           "config": {...}} -> 202
    GET    /api/jobs                      the playground's jobs, newest first (kind, name, status, times)
    GET    /api/jobs/{job_id}             one job: status, its config file, Ray's message
    GET    /api/jobs/{job_id}/logs?tail=  the last lines of its output
    POST   /api/jobs/{job_id}/stop        ask Ray to stop it (SIGTERM, then SIGKILL)

Each job is the `playground` CLI run as a Ray job with the config written to
`workspace/jobs/`: the same job a user starts with

    ray job submit --address http://127.0.0.1:8265 -- playground pretrain --config workspace/jobs/<file>.yaml

Kinds and the command each runs: pretrain (`playground pretrain`, a `PretrainConfig`), sft
(`playground sft`, an `SFTConfig`: fine-tune a workspace model), tokenizer (`playground
tokenizer train`, a `PretrainConfig`), reward, dpo and grpo (`playground reward|dpo|grpo`, an
`AlignConfig` whose method is the kind: align an SFT model), data (`playground data run`, a `PipelineConfig`), tune
(`playground tune`, a `SweepConfig`), experiment (`playground experiment`, an `ExperimentConfig`).
Quantize and import jobs (`playground models quantize|import`) are started by POST /api/models/...
(services/models_api.py) and followed here like the others.

The API keeps no state of its own: Ray's job table (in the head's GCS) holds the jobs,
so they survive a restart of the UI or of this deployment. When the cluster is busy,
Ray queues the work itself: the job is RUNNING (its driver started) while Ray Train
waits for the CPUs or GPUs its workers asked for, and its log says so.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, ValidationError

from services.data_api import error_response
from services.jobs import (
    job_client,
    job_error,
    job_status,
    submit_cli_job,
    workspace,
    write_job_config,
)
from services.llm import openai_error
from training.errors import UserError

router = APIRouter()

KINDS = ("pretrain", "sft", "reward", "dpo", "grpo", "tokenizer", "data", "tune", "experiment", "eval")
ALIGN_KINDS = ("reward", "dpo", "grpo")
MODEL_KINDS = ("quantize", "import")  # started by services/models_api.py, listed and followed here
DONE = ("SUCCEEDED", "FAILED", "STOPPED")
_JOB_ID = re.compile(r"^[A-Za-z0-9_-]{1,128}$")


class JobRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    kind: Literal["pretrain", "sft", "reward", "dpo", "grpo", "tokenizer", "data", "tune", "experiment", "eval"]
    config: dict[str, Any] = {}


def _schema(kind: str):
    if kind == "data":
        from training.data.config import PipelineConfig

        return PipelineConfig
    if kind == "sft":
        from training.posttrain.config import SFTConfig

        return SFTConfig
    if kind in ALIGN_KINDS:
        from training.posttrain.align_config import AlignConfig

        return AlignConfig
    if kind == "eval":
        from evaluation.config import EvalConfig

        return EvalConfig
    from training.config import (
        PretrainConfig,  # pretrain and tokenizer jobs read a run config
    )

    return PretrainConfig


def check_config(kind: str, config: dict) -> BaseModel:
    """The config validated against its kind's schema (UserError naming `config.<dotted key>`)."""
    if kind == "tune":  # a sweep: its base config and every value it searches are checked too
        from training.pretrain.sweep import load_sweep

        try:
            return load_sweep(None, data=config)[0]
        except UserError as e:
            raise UserError(f"config.{str(e).removeprefix('sweep: ')}") from None
    if kind == "experiment":  # every variant's SFT config is checked too
        from training.posttrain.experiment import load_experiment

        try:
            return load_experiment(None, data=config)[0]
        except UserError as e:
            raise UserError(f"config.{str(e).removeprefix('experiment: ')}") from None
    if kind in ALIGN_KINDS:  # the kind is the method, as the command is in `playground dpo`
        if config.get("method", kind) != kind:
            raise UserError(f"config.method: {config['method']!r} in a {kind} job; leave it out or use {kind!r}")
        config = {**config, "method": kind}
    try:
        return _schema(kind).model_validate(config)
    except ValidationError as e:
        err = e.errors()[0]
        where, msg = ".".join(str(p) for p in err["loc"]), err["msg"]
        if not where:  # a check across keys (SFT's fp16 needs a GPU): its message starts with the key
            msg = msg.removeprefix("Value error, ")
            named = re.match(r"([A-Za-z_][\w.]*)[=:]", msg)
            where = named.group(1) if named else ""
        raise UserError(f"config.{where}: {msg}" if where else f"config: {msg}") from None


def check_sft_sources(cfg):
    """An SFT (or alignment) config with its local .jsonl sources checked on this machine (a 404 naming
    `config.data.sources[i]`) and made absolute, since the job does not run in this folder.
    Generated instructions, hf:NAME and snapshot:ID are checked by the job itself."""
    sources = []
    for i, src in enumerate(s.strip() for s in cfg.data.sources):
        if src.lower().endswith(".jsonl") and not src.startswith(("hf:", "snapshot:")):
            path = Path(src).expanduser()
            if not path.is_file():
                raise UserError(f"config.data.sources[{i}]: no file {src!r} on the server (a path on the "
                                "machine that runs the API)")
            src = str(path.resolve())
        sources.append(src)
    return cfg.model_copy(update={"data": cfg.data.model_copy(update={"sources": sources})})


def _args(kind: str, path: Path) -> list[str]:
    return {"pretrain": ["pretrain"], "sft": ["sft"], "reward": ["reward"], "dpo": ["dpo"], "grpo": ["grpo"],
            "tokenizer": ["tokenizer", "train"], "data": ["data", "run"],
            "tune": ["tune"], "experiment": ["experiment"], "eval": ["eval"]}[kind] + ["--config", str(path)]


def _summary(info: Any) -> dict:
    meta = info.metadata or {}
    return {"job_id": info.submission_id, "kind": meta.get("kind"), "name": meta.get("name"),
            "status": job_status(info), "entrypoint": info.entrypoint, "config_file": meta.get("config_file"),
            "start_time": info.start_time, "end_time": info.end_time, "message": info.message}


def _ours(info: Any) -> bool:
    return (info.metadata or {}).get("kind") in KINDS + MODEL_KINDS and bool(info.submission_id)


def _find(request: Request, job_id: str):
    """(client, info) of one of the playground's jobs; UserError "job_id: no job ..." otherwise."""
    client = job_client(request)
    try:
        info = client.get_job_info(job_id) if _JOB_ID.fullmatch(job_id) else None
    except RuntimeError:  # the job client's "does not exist"
        info = None
    if info is None or not _ours(info):
        raise UserError(f"job_id: no job {job_id!r} (GET /api/jobs lists them)")
    return client, info


def _error(e: UserError):
    if str(e).startswith("job_id: no job"):
        return openai_error(404, str(e), "job_id", code="not_found")
    return error_response(e)


async def _run(fn, *args):
    try:
        return await asyncio.to_thread(fn, *args)
    except UserError as e:
        return _error(e)


@router.post("/jobs", status_code=202)
async def submit(req: JobRequest, request: Request):
    """Check the config now (a bad key is a 400 naming it), write it, submit the CLI as a Ray job."""
    ws = workspace(request)

    def go():
        cfg = check_config(req.kind, req.config)
        if req.kind == "data":
            from services.data_api import check_config as check_sources

            cfg = check_sources(ws, cfg)
        elif req.kind in ("sft", *ALIGN_KINDS):
            cfg = check_sft_sources(cfg)
        path = write_job_config(ws, req.kind, cfg)
        name = getattr(cfg, "run_name", None) or getattr(cfg, "name", None) or path.stem
        job_id = submit_cli_job(request, _args(req.kind, path),
                                {"kind": req.kind, "name": str(name), "config_file": str(path)})
        return {"job_id": job_id, "kind": req.kind, "name": str(name), "config_file": str(path), "status": "PENDING"}

    return await _run(go)


@router.get("/jobs")
async def list_jobs(request: Request) -> list[dict]:
    jobs = await asyncio.to_thread(lambda: job_client(request).list_jobs())
    return sorted((_summary(j) for j in jobs if _ours(j)), key=lambda j: j["start_time"] or 0, reverse=True)


@router.get("/jobs/{job_id}")
async def get_job(job_id: str, request: Request):
    def read():
        _, info = _find(request, job_id)
        out = _summary(info)
        if out["status"] == "FAILED":
            out["error"] = job_error(out["status"], info, job_client(request).get_job_logs(job_id))
        return out

    return await _run(read)


@router.get("/jobs/{job_id}/logs")
async def logs(job_id: str, request: Request, tail: int = Query(200, ge=1, le=10_000)):
    def read():
        client, info = _find(request, job_id)
        lines = client.get_job_logs(job_id).replace("\r", "\n").splitlines()
        return {"job_id": job_id, "status": job_status(info), "lines": lines[-tail:], "total_lines": len(lines)}

    return await _run(read)


@router.post("/jobs/{job_id}/stop")
async def stop(job_id: str, request: Request):
    def go():
        client, info = _find(request, job_id)
        status = job_status(info)
        if status in DONE:
            return {"job_id": job_id, "status": status, "stopped": False}
        return {"job_id": job_id, "status": "STOPPING", "stopped": bool(client.stop_job(job_id))}

    return await _run(go)
