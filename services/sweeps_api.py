"""Ray Tune sweeps over HTTP, read from each sweep's record (`sweeps/<id>/sweep.json`).

    GET /api/sweeps               every sweep, newest first: status, trials, best metric
    GET /api/sweeps/{sweep_id}    one sweep: its config, each trial's params, status, metric
                                  curve and best value, the best trial and the registered model

A sweep is started like any other job: `POST /api/jobs {"kind": "tune", "config": {...}}`
(or `playground tune --config configs/tune/lr.yaml`). The record is rewritten while Tune
runs, so polling this route follows the sweep live.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from services.jobs import workspace
from services.llm import openai_error
from training.pretrain import sweep_record

router = APIRouter()


@router.get("/sweeps")
async def list_sweeps(request: Request) -> list[dict]:
    return await asyncio.to_thread(sweep_record.list_sweeps, workspace(request))


@router.get("/sweeps/{sweep_id}")
async def get_sweep(sweep_id: str, request: Request):
    record = await asyncio.to_thread(sweep_record.read_record, workspace(request), sweep_id)
    if record is None:
        return openai_error(404, f"sweep_id: no sweep {sweep_id!r} (GET /api/sweeps lists them)", "sweep_id",
                            code="not_found")
    return record
