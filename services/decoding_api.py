"""The decoding lab over HTTP: several strategies on one prompt, every step's distributions, the beam tree.

    POST /api/decoding   {"model", "prompt", "strategies": [{"name", "strategy": greedy|sample|beam, ...}],
                          "max_new_tokens", "top", "served"}
                         -> {"prompt_tokens", "strategies": [...], "ms", "served"?}

Sampling and greedy strategies return, per step, the next-token distribution (top `top`, with its
entropy) raw and after each processor in turn, and the chosen token; a beam search returns its
final beams and the whole tree, pruned branches included (training/decoding/report.py). The work
runs in the `Inspector` deployment, which keeps our PyTorch model loaded (services/inspector.py).

`served: true` adds the same prompt through the OpenAI-compatible endpoint (vLLM on Ray Serve):
greedy with its top logprobs (at most 20 per token), and, for each beam strategy, vLLM's own beam
search (`use_beam_search`, `n` = the width), so a learner can check that the served engine decodes
the way the lesson says. An endpoint that is not there, or a model it does not serve, is reported in
`served.error`; the lab's own columns are still returned.
"""

from __future__ import annotations

import os
import time
from typing import Literal

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.llm import upstream_message
from services.tokenizer_api import user_error
from training.errors import UserError

router = APIRouter()
SERVED_TIMEOUT_S = 20.0


class StrategyIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = Field(None, max_length=40, description="a label for the column (default: strategy-<n>)")
    strategy: Literal["greedy", "sample", "beam"] = "greedy"
    temperature: float = Field(1.0, ge=0, description="sample: > 1 flattens, < 1 sharpens; 0 is greedy")
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    min_p: float | None = Field(None, ge=0, le=1)
    repetition_penalty: float = Field(1.0, gt=0)
    presence_penalty: float = Field(0.0, ge=-2, le=2)
    frequency_penalty: float = Field(0.0, ge=-2, le=2)
    seed: int = 0
    num_beams: int = Field(4, ge=1, le=8, description="beam: the width")
    length_penalty: float = Field(1.0, description="beam: finished scores are sum of logprobs / length ** this")
    early_stopping: bool | Literal["never"] = False
    num_return_sequences: int = Field(1, ge=1, le=8)


class DecodingRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    model: str = Field(..., min_length=1, description="an exported model id (GET /api/models) or a run id")
    prompt: str = Field(..., min_length=1)
    strategies: list[StrategyIn] = Field(
        default_factory=lambda: [StrategyIn(strategy="greedy"), StrategyIn(strategy="beam")], min_length=1,
        max_length=6)
    max_new_tokens: int = Field(32, ge=1, le=256)
    top: int = Field(20, ge=1, le=20, description="tokens shown per distribution")
    ignore_eos: bool = Field(False, description="keep going past the end-of-text token (as vLLM's ignore_eos)")
    served: bool = Field(False, description="also run the prompt through the served model (vLLM)")


def _llm(request: Request) -> tuple[str, dict]:
    url = getattr(request.app.state, "llm_url", None) or f"{request.url.scheme}://{request.url.netloc}/v1"
    key = os.environ.get("PLAYGROUND_API_KEY")
    return url.rstrip("/"), ({"Authorization": f"Bearer {key}"} if key else {})


async def served_column(url: str, headers: dict, req: DecodingRequest) -> dict:
    """Greedy with top logprobs, and vLLM's beam search for each beam strategy, from the endpoint."""
    out: dict = {"endpoint": url}
    # Each call gets SERVED_TIMEOUT_S: the page waits a minute in all, and the lab's own columns must
    # still arrive when the engine is slow (vLLM's beam search runs one engine call per step).
    async with httpx.AsyncClient(headers=headers, timeout=httpx.Timeout(SERVED_TIMEOUT_S, connect=5.0)) as client:
        try:
            r = await client.post(f"{url}/completions", json={
                "model": req.model, "prompt": req.prompt, "max_tokens": req.max_new_tokens, "temperature": 0.0,
                "logprobs": min(req.top, 20), "ignore_eos": req.ignore_eos})
        except httpx.HTTPError as e:
            return out | {"error": f"no answer from {url} ({type(e).__name__}): start it with `playground up`"}
        if r.status_code != 200:
            return out | {"error": upstream_message(r)}
        choice = r.json()["choices"][0]
        lp = choice.get("logprobs") or {}
        out["greedy"] = {"text": choice["text"], "steps": [
            {"text": tok, "logprob": chosen, "top": sorted(({"text": t, "logprob": v} for t, v in (top or {}).items()),
                                                           key=lambda x: -x["logprob"])}
            for tok, chosen, top in zip(lp.get("tokens") or [], lp.get("token_logprobs") or [],
                                        lp.get("top_logprobs") or [], strict=False)]}
        out["beams"] = {}
        for i, s in enumerate(req.strategies):
            if s.strategy != "beam":
                continue
            name = s.name or f"beam-{i + 1}"
            t0 = time.perf_counter()
            try:
                r = await client.post(f"{url}/completions", json={
                    "model": req.model, "prompt": req.prompt, "max_tokens": req.max_new_tokens, "temperature": 0.0,
                    "use_beam_search": True, "n": s.num_beams, "length_penalty": s.length_penalty,
                    "early_stopping": s.early_stopping, "ignore_eos": req.ignore_eos})
            except httpx.HTTPError as e:
                out["beams"][name] = {"error": f"no answer in {SERVED_TIMEOUT_S:.0f} s ({type(e).__name__})"}
                continue
            out["beams"][name] = ({"texts": [c["text"] for c in r.json()["choices"]]} if r.status_code == 200
                                  else {"error": upstream_message(r)}) | {"ms": round(1000 * (time.perf_counter() - t0))}
    return out


@router.post("/decoding")
async def decoding(req: DecodingRequest, request: Request):
    t0 = time.perf_counter()
    strategies = [s.model_dump() for s in req.strategies]
    result = await request.app.state.inspector.decode.remote(req.model, req.prompt, strategies, req.max_new_tokens,
                                                            req.top, req.ignore_eos)
    if "error" in result:
        return user_error(UserError(result["error"]))
    if req.served:
        url, headers = _llm(request)
        result["served"] = await served_column(url, headers, req)
    result["api_ms"] = round(1000 * (time.perf_counter() - t0), 2)
    # Plain JSON as it is: FastAPI's encoder walks every value of a tree this size (thousands of
    # dicts) and would take longer than the decoding itself.
    return JSONResponse(result)
