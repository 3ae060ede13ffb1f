"""Fine-tuning experiments over HTTP, read from each experiment's record
(`experiments/<id>/experiment.json`, written by training/posttrain/experiment.py).

    GET /api/experiments                every experiment, newest first: status, variants
    GET /api/experiments/{experiment}   one experiment: its config, the base model's scores
                                        before fine-tuning, each variant's run and results,
                                        and `table`, one flat row per variant

An experiment is started like any other job: `POST /api/jobs {"kind": "experiment",
"config": {...}}` (or `playground experiment --config configs/experiments/lora-rank.yaml`).
The record is rewritten after each variant, so polling this route follows it live.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from services.jobs import workspace
from services.llm import openai_error
from training.posttrain import experiment

router = APIRouter()


@router.get("/experiments")
async def list_experiments(request: Request) -> list[dict]:
    return await asyncio.to_thread(experiment.list_experiments, workspace(request))


@router.get("/experiments/{experiment_id}")
async def get_experiment(experiment_id: str, request: Request):
    record = await asyncio.to_thread(experiment.read_record, workspace(request), experiment_id)
    if record is None:
        return openai_error(404, f"experiment_id: no experiment {experiment_id!r} (GET /api/experiments lists "
                                 "them)", "experiment_id", code="not_found")
    return record | {"table": experiment.table(record)}
