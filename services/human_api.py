"""Human evaluation over HTTP: blind pairwise votes, 1-5 ratings, the leaderboard they make.

    POST /api/human/comparisons              {"prompt", "models": [a, b], "set", "max_tokens", "temperature"}
                                             -> both served models answer; the blind view {"comparison_id",
                                             "set", "prompt", "left", "right"}: answers in random order, no names
    POST /api/human/comparisons/{id}/vote    {"rater", "choice": "left"|"right"|"tie"|"both_bad"} -> the vote
                                             (as stored: a, b, tie, both_bad) and the model names, revealed
    POST /api/human/answers                  {"prompt", "model", "set", "max_tokens", "temperature"} -> one
                                             served model answers: {"item_id", "set", "prompt", "answer"}
    POST /api/human/answers/{id}/rating      {"rater", "score": 1..5} -> the rating and the model's name
    GET  /api/human/leaderboard              ?set=: Bradley-Terry ratings with bootstrap 95% intervals and
                                             Arena ranks, wins/losses/ties, mean 1-5 score; per item set
                                             the raters' agreement (Fleiss' kappa)
    GET  /api/human/export                   ?format=json|csv: every table (json), or the votes (csv)

The answers come from the served OpenAI-compatible endpoint (vLLM on Ray Serve: `app.state.llm_url`
when set, else `/v1` on the host and port this request came in on, where Serve's proxy routes the LLM
application beside this one), asked with one user message. A model that is not served is a
409 naming `models` (`model` for a single answer); no endpoint, a 503. Votes and ratings go to
`workspace/evals/human.db` (evaluation/human.py); one per rater per item, a second replaces the first.
"""

from __future__ import annotations

import asyncio
import csv
import io
import os

import httpx
from fastapi import APIRouter, Query, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from evaluation import human
from services.data_api import error_response
from services.jobs import workspace
from services.llm import openai_error, upstream_message
from training.errors import UserError

router = APIRouter()


class _Generation(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    prompt: str = Field(description="sent to the model(s) as one user message")
    set_name: str = Field("default", alias="set", min_length=1, max_length=200,
                          description="the item set it belongs to (agreement is measured per set)")
    max_tokens: int = Field(256, ge=1, le=8192, description="the longest answer, in tokens")
    temperature: float = Field(0.7, ge=0.0, le=2.0, description="sampling temperature")


class HumanComparisonRequest(_Generation):
    models: list[str] = Field(description="the two served models to compare")


class HumanAnswerRequest(_Generation):
    model: str = Field(min_length=1, description="the served model whose answer is to be rated")


class HumanVoteRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rater: str = Field(description="who votes: one vote per rater per comparison, a second replaces it")
    choice: str = Field(description='"left", "right", "tie" or "both_bad", about the sides shown')


class HumanRatingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rater: str = Field(description="who rates: one rating per rater per answer, a second replaces it")
    score: int = Field(description="1 (bad) to 5 (excellent)")


class Upstream(Exception):
    """The LLM endpoint said no (or nothing): becomes an OpenAI-shaped error as it is."""

    def __init__(self, status: int, message: str, param: str | None, code: str):
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


def _llm(request: Request) -> tuple[str, dict]:
    url = getattr(request.app.state, "llm_url", None) or f"{request.url.scheme}://{request.url.netloc}/v1"
    key = os.environ.get("PLAYGROUND_API_KEY")
    return url.rstrip("/"), ({"Authorization": f"Bearer {key}"} if key else {})


async def generate(request: Request, models: list[str], field: str, prompt: str, max_tokens: int,
                   temperature: float) -> list[str]:
    """Each of `models`' answer to `prompt`, asked at once; Upstream if one is not served or fails."""
    url, headers = _llm(request)
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(300.0, connect=5.0)) as client:
        try:
            r = await client.get(f"{url}/models")
            r.raise_for_status()
        except httpx.HTTPError as e:
            raise Upstream(503, f"no OpenAI-compatible server answers at {url} ({type(e).__name__}); start one "
                                "with `playground up --model ID`", None, "llm_unavailable") from None
        served = [m["id"] for m in r.json().get("data", [])]
        for m in models:
            if m not in served:
                raise Upstream(409, f"{field}: {m!r} is not served (served: {', '.join(served) or 'none'}); "
                                    "deploy it with POST /api/deployments", field, "model_not_served")

        async def one(model: str) -> str:
            body = {"model": model, "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": max_tokens, "temperature": temperature}
            try:
                resp = await client.post(f"{url}/chat/completions", json=body)
            except httpx.HTTPError as e:
                raise Upstream(503, f"{field}: {model!r} did not answer ({type(e).__name__})", field,
                               "llm_unavailable") from None
            if resp.status_code >= 400:  # e.g. a prompt longer than the model's context: the user's to fix
                msg = upstream_message(resp)
                status, param = (400, "prompt") if resp.status_code < 500 else (502, field)
                raise Upstream(status, f"{param}: {model!r} refused it: {msg}", param, "llm_error")
            return resp.json()["choices"][0]["message"]["content"] or ""

        return list(await asyncio.gather(*(one(m) for m in models)))


def _bad_prompt(prompt: str):
    """Checked before asking any model (the store checks it again): a 400 naming `prompt`, else None."""
    if not prompt.strip():
        return openai_error(400, "prompt: a non-empty prompt is needed", "prompt")
    return None


async def _call(fn, *args, **kwargs):
    """Run a store call off the event loop, with a UserError as its 4xx (404 for `field: no ...`)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except UserError as e:
        return error_response(e)


@router.post("/human/comparisons")
async def new_comparison(req: HumanComparisonRequest, request: Request):
    if (bad := _bad_prompt(req.prompt)) is not None:
        return bad
    if len(req.models) != 2:
        return openai_error(400, f"models: two model ids are needed, got {len(req.models)}", "models")
    a, b = (m.strip() for m in req.models)
    if not a or not b or a == b:
        return openai_error(400, f"models: two different, non-empty model ids are needed, got {req.models!r}",
                            "models")
    try:
        answer_a, answer_b = await generate(request, [a, b], "models", req.prompt, req.max_tokens, req.temperature)
    except Upstream as e:
        return openai_error(e.status, str(e), e.param, code=e.code)
    return await _call(human.new_comparison, workspace(request), prompt=req.prompt, model_a=a, model_b=b,
                       answer_a=answer_a, answer_b=answer_b, set_name=req.set_name)


@router.post("/human/comparisons/{comparison_id}/vote")
async def vote(comparison_id: str, req: HumanVoteRequest, request: Request):
    return await _call(human.vote, workspace(request), comparison_id, req.rater, req.choice)


@router.post("/human/answers")
async def new_answer(req: HumanAnswerRequest, request: Request):
    if (bad := _bad_prompt(req.prompt)) is not None:
        return bad
    try:
        (answer,) = await generate(request, [req.model], "model", req.prompt, req.max_tokens, req.temperature)
    except Upstream as e:
        return openai_error(e.status, str(e), e.param, code=e.code)
    return await _call(human.add_answer, workspace(request), prompt=req.prompt, model=req.model, answer=answer,
                       set_name=req.set_name)


@router.post("/human/answers/{item_id}/rating")
async def rating(item_id: str, req: HumanRatingRequest, request: Request):
    return await _call(human.rate, workspace(request), item_id, req.rater, req.score)


@router.get("/human/leaderboard")
async def leaderboard(request: Request, set_name: str | None = Query(None, alias="set")):
    return await _call(human.leaderboard, workspace(request), set_name or None)


def votes_csv(rows: list[dict]) -> str:
    """The votes as CSV, one row per (comparison, rater), with the comparison's set, prompt and models."""
    cols = ["comparison_id", "set", "prompt", "model_a", "model_b", "shown_left", "rater", "choice", "winner",
            "created_at"]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    w.writeheader()
    w.writerows({k: ("" if v is None else v) for k, v in r.items()} for r in rows)
    return buf.getvalue()


@router.get("/human/export")
async def export(request: Request, format: str = Query("json")):
    if format not in ("json", "csv"):
        return openai_error(400, f"format: 'json' or 'csv', got {format!r}", "format")
    if format == "json":
        return await _call(human.export, workspace(request))
    rows = await _call(human.vote_rows, workspace(request))
    return PlainTextResponse(votes_csv(rows), media_type="text/csv",
                             headers={"Content-Disposition": 'attachment; filename="human-votes.csv"'})
