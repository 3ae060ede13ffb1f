"""The model registry over HTTP: every model, its lineage, card and checkpoints, a diff of two, and
the actions on a model (quantize, import, publish, delete).

    GET    /api/models?kind=                  every model: kind, parent, size, deployed (training/registry)
    GET    /api/models/diff?a=&b=             per-layer relative weight change of two models or checkpoints
                                              (`<run>@<step>`) of one shape, and their evaluation scores
    GET    /api/models/{id}                   one model: facts, lineage graph (+ DOT), card, evaluations,
                                              its run's checkpoints, the models made from it, MLflow versions
    DELETE /api/models/{id}                   delete it (409 while it is deployed)
    POST   /api/models/{id}/quantize          {"method": "int8" | "int4", "id"?}: a Ray job -> 202
    POST   /api/models/{id}/publish           {"repo_id", "private"}: push to the Hugging Face Hub
    POST   /api/models/import                 {"path"} a local folder (201), or {"hub"} a Hub name (a Ray job, 202)
    GET    /api/runs/{run}/checkpoints        the run's checkpoints: step, val loss, size, exported as
    POST   /api/runs/{run}/checkpoints/{step}/export   {"id"?}: that checkpoint as a model -> 201

Slow work (quantizing, downloading from the Hub) runs as the `playground models` CLI in a Ray job,
like training does (services/jobs_api.py; GET /api/jobs/{job_id} follows it); the rest answers at
once. After each change MLflow's model registry is brought in step (training/registry/mlflow_sync.py).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.data_api import error_response
from services.jobs import submit_cli_job, workspace
from services.llm import openai_error
from training.errors import UserError
from training.registry import checkpoints, mlflow_sync, registry
from training.registry.detail import model_detail

router = APIRouter()


class QuantizeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    method: Literal["int8", "int4"]
    id: str | None = Field(None, description="the variant's model id (default <model>-<method>)")


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: str | None = Field(None, description="a Hugging Face model folder on the server")
    hub: str | None = Field(None, description="a Hub name, owner/name (needs the internet)")
    id: str | None = Field(None, description="the model id in the workspace (default: the folder's name)")


class PublishRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    repo_id: str
    private: bool = True


class ExportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    id: str | None = Field(None, description="the model id (default <run>-step<step>)")


def _deployed(request: Request) -> set[str]:
    """The models the LLM app serves now (the API deployment puts how to ask in app.state)."""
    fn = getattr(request.app.state, "deployed_models", None)
    return set(fn()) if fn else set()


def _sync_later(request: Request) -> None:
    """Bring MLflow's registry in step in the background (a registry error never fails the request)."""
    ws = workspace(request)

    def go():
        mlflow_sync.safe_sync(ws, _deployed(request))

    asyncio.get_running_loop().run_in_executor(None, go)


async def _run(fn, *args, status: int = 200):
    try:
        out = await asyncio.to_thread(fn, *args)
    except UserError as e:
        message = str(e)
        if " is deployed; " in message:
            return openai_error(409, message, "model", code="conflict")
        if " already exists" in message:
            return openai_error(409, message, message.split(":", 1)[0], code="conflict")
        if "cannot reach the Hugging Face Hub" in message:
            return openai_error(503, message, "hub", code="hub_unreachable")
        return error_response(e)
    if status != 200:
        from fastapi.responses import JSONResponse

        return JSONResponse(status_code=status, content=out)
    return out


@router.get("/models/diff")
async def diff(request: Request, a: str = Query(..., description="model id or <run>@<step>"),
               b: str = Query(..., description="model id or <run>@<step>")):
    ws = workspace(request)

    def go():
        from training.registry import diff as diff_lib

        out = diff_lib.weight_diff(checkpoints.resolve_ref(ws, a, "a"), checkpoints.resolve_ref(ws, b, "b"))
        scores = diff_lib.score_diff(ws, a, b)
        return {"a": a, "b": b, **out, "scores": scores}

    return await _run(go)


@router.post("/models/import")
async def import_model(req: ImportRequest, request: Request):
    ws = workspace(request)
    if bool(req.path) == bool(req.hub):
        return openai_error(400, "path: give exactly one of path (a folder on the server) or hub (owner/name)",
                            "path")

    def local():
        from pathlib import Path

        from training.registry import hub
        from training.registry.card import try_write_card

        try:
            folder = hub.import_folder(ws, Path(req.path).expanduser(), req.id)
        except UserError as e:  # the folder's problems name the field they come from
            raise UserError(str(e) if str(e).startswith("id:") else f"path: {e}") from None
        try_write_card(ws, folder)
        return {"model": folder.name, "path": str(folder), "status": "imported"}

    def remote():
        from training.registry import hub

        hub.check_name(req.hub)
        hub.check_online()  # offline: a 503 now, not a job that fails later
        model_id = registry.check_id(req.id or req.hub.split("/")[-1], "id")
        if ws.model(model_id).exists():
            raise UserError(f"id: {model_id!r} already exists (choose another id)")
        job = submit_cli_job(request, ["models", "import", req.hub, "--id", model_id],
                             {"kind": "import", "name": model_id})
        return {"model": model_id, "job_id": job, "status": "downloading"}

    out = await _run(local if req.path else remote, status=201 if req.path else 202)
    if req.path and getattr(out, "status_code", 201) == 201:
        _sync_later(request)
    return out


@router.get("/models/{model_id}")
async def get_model(model_id: str, request: Request):
    ws, deployed = workspace(request), await asyncio.to_thread(_deployed, request)
    return await _run(model_detail, ws, model_id, deployed)


@router.delete("/models/{model_id}")
async def delete_model(model_id: str, request: Request):
    ws, deployed = workspace(request), await asyncio.to_thread(_deployed, request)
    out = await _run(registry.delete_model, ws, model_id, deployed)
    if isinstance(out, dict):
        _sync_later(request)
    return out


@router.post("/models/{model_id}/quantize", status_code=202)
async def quantize(model_id: str, req: QuantizeRequest, request: Request):
    ws = workspace(request)

    def go():
        registry.require(ws, model_id)
        out_id = registry.check_id(req.id or f"{model_id}-{req.method}", "id")
        if ws.model(out_id).exists():
            raise UserError(f"id: {out_id!r} already exists (choose another id, or delete it first)")
        job = submit_cli_job(request, ["models", "quantize", model_id, "--method", req.method, "--id", out_id],
                             {"kind": "quantize", "name": out_id})
        return {"model": out_id, "source": model_id, "method": req.method, "job_id": job, "status": "PENDING"}

    return await _run(go, status=202)


@router.post("/models/{model_id}/publish")
async def publish(model_id: str, req: PublishRequest, request: Request):
    ws = workspace(request)

    def go():
        from training.registry import hub

        registry.require(ws, model_id)
        return {"model": model_id, "url": hub.publish(ws, model_id, req.repo_id, private=req.private)}

    return await _run(go)


@router.get("/runs/{run}/checkpoints")
async def run_checkpoints(run: str, request: Request):
    return await _run(checkpoints.run_checkpoints, workspace(request), run)


@router.post("/runs/{run}/checkpoints/{step}/export")
async def export_checkpoint(run: str, step: int, req: ExportRequest, request: Request):
    out = await _run(checkpoints.export_checkpoint, workspace(request), run, step, req.id, status=201)
    if getattr(out, "status_code", None) == 201:
        _sync_later(request)
    return out
