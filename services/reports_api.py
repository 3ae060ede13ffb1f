"""Report cards over HTTP: what each pipeline run (`make demo`, a chain of stages) found, stage by stage.

    GET /api/reports                 every report card, newest first: name, ids, total seconds, stages
    GET /api/reports/compare         ?a=&b=: the key figures of two cards side by side, with the change
    GET /api/reports/{name}          one card: `report` (the figures, as report.json) and `markdown` (report.md)

Cards are written by evaluation/report.py into `workspace/reports/<name>/`; `latest` is the newest.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request

from evaluation import report
from services.jobs import workspace
from services.llm import openai_error
from training.errors import UserError

router = APIRouter()


def _read(ws, name: str, field: str):
    try:
        card = report.read_report(ws, name)
    except UserError:
        card = None
    if card is None:
        return None, openai_error(404, f"{field}: no report card {name!r} (GET /api/reports lists them)", field,
                                  code="not_found")
    return card, None


@router.get("/reports")
async def list_reports(request: Request) -> list[dict]:
    return await asyncio.to_thread(report.list_reports, workspace(request))


@router.get("/reports/compare")
async def compare(request: Request, a: str = Query(...), b: str = Query(...)):
    ws = workspace(request)

    def go():
        cards = {}
        for field, name in (("a", a), ("b", b)):
            cards[field], error = _read(ws, name, field)
            if error is not None:
                return error
        return {"a": a, "b": b, "rows": report.compare_reports(cards["a"], cards["b"])}

    return await asyncio.to_thread(go)


@router.get("/reports/{name}")
async def get_report(name: str, request: Request):
    def go():
        card, error = _read(workspace(request), name, "name")
        return error or {"name": name, "report": card, "markdown": report.render_markdown(card)}

    return await asyncio.to_thread(go)
