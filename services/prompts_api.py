"""The prompt library over HTTP: curated templates, saved versions, few-shot prompts, A/B tests.

    GET  /api/prompts                     ?category=: every template's latest version (name, title, category,
                                          variables, when_it_helps, version, versions, curated)
    GET  /api/prompts/datasets            the workspace datasets with JSONL splits (for the few-shot builder)
    GET  /api/prompts/{name}              ?version=: one version (default the latest) and `history`, every version
    POST /api/prompts                     {"name", "template", "variables", "system"?, "title"?, "category"?,
                                          "when_it_helps"?, "example"?, "note"?} -> 201 the new version
    GET  /api/prompts/{name}/diff         ?a=&b=: a unified diff of two versions and the fields that changed
    POST /api/prompts/{name}/revert       {"version"} -> 201 a new version with that version's content
    POST /api/prompts/render              {"name", "version"?, "variables", "model"?} -> {"system", "text",
                                          "tokens", "tokenizer"}
    POST /api/prompts/fewshot             {"query", "examples" | "dataset"+"split", "input_field", "output_field",
                                          "k", "method": random|similar, "seed", "instruction", "model"?}
                                          -> {"prompt", "examples", "tokens", "tokenizer", ...}
    POST /api/prompts/ab-test             {"a": {"name", "version"?}, "b": {...}, "model", "endpoint"?,
                                          "items" | "text" (JSONL) | "dataset"+"split"+"limit", "metric"}
                                          -> accuracy of each with its 95% interval, the paired test, a verdict

Templates live in `workspace/prompts/` (services/prompts/store.py); the curated ones in configs/prompts/
are version 1 of their names. Errors name the field: an unfilled variable is a 400 naming
`variables.<name>` (`items[3].<name>` in an A/B set), an unknown template or version a 404 naming
`name` or `version` (`a.name`, `b.version` in an A/B test), a model that is not served a 409. The A/B
answers come from the OpenAI-compatible endpoint (`endpoint`, else `app.state.llm_url`, else `/v1` on
the host this request came in on), with `Authorization: Bearer $PLAYGROUND_API_KEY` when set.
"""

from __future__ import annotations

import asyncio
import json
import os

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from services.data_api import error_response
from services.jobs import workspace
from services.llm import openai_error
from services.prompts import abtest, fewshot, store
from services.prompts.templates import CATEGORIES, render_template
from training.errors import UserError

router = APIRouter()


class SaveRequest(BaseModel):
    """A template to save as a new version (the fields of configs/prompts/*.yaml) and a note."""

    model_config = ConfigDict(extra="allow")  # the rest is PromptTemplate's, checked against it
    note: str = Field("", description="what changed, shown in the version list")


class RevertRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int = Field(ge=1, description="the version whose content becomes the newest version")


class RenderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(description="the template")
    version: int | None = Field(None, ge=1, description="its version; null: the latest")
    variables: dict[str, str] = Field(default_factory=dict, description="a value for each variable")
    model: str | None = Field(None, description="a workspace model whose tokenizer counts the tokens; "
                                                "null: whitespace words")


class FewShotRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    query: str = Field(max_length=100_000, description="the input the model is to answer")
    examples: list[dict] | None = Field(None, max_length=20_000, description="inline example rows")
    dataset: str | None = Field(None, description="or: a workspace dataset to take examples from")
    split: str = Field("train", description="the dataset's split (a JSONL file of it)")
    input_field: str = Field("instruction", description="the row field(s) of an example's input; "
                                                        "'instruction,input' joins two")
    output_field: str = Field("output", description="the row field of an example's answer")
    k: int = Field(3, ge=1, le=64, description="how many examples")
    method: str = Field("random", description="random (seeded) or similar (TF-IDF cosine to the query)")
    seed: int = Field(0, description="the seed of the random pick")
    instruction: str = Field("", max_length=20_000, description="text before the examples")
    input_label: str = Field("Input", max_length=50)
    output_label: str = Field("Output", max_length=50)
    model: str | None = Field(None, description="a workspace model whose tokenizer counts the tokens")


class TemplateRef(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    version: int | None = Field(None, ge=1, description="null: the latest")


class ABTestRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    a: TemplateRef
    b: TemplateRef
    model: str = Field(min_length=1, description="the served model that answers both")
    endpoint: str | None = Field(None, description="its OpenAI-compatible base URL (…/v1); default: this server's")
    items: list[dict] | None = Field(None, description="labelled rows: variables and `answer`")
    text: str | None = Field(None, max_length=5_000_000, description="or: the rows as JSONL text")
    dataset: str | None = Field(None, description="or: a workspace dataset whose rows have `answer`")
    split: str = Field("val", description="the dataset's split")
    limit: int = Field(50, ge=1, le=abtest.MAX_ITEMS, description="rows taken from the dataset")
    metric: str = Field("exact_match", description="exact_match or contains")
    max_tokens: int = Field(64, ge=1, le=4096, description="the longest answer, in tokens")


async def _call(fn, *args, **kwargs):
    """Run a library call off the event loop, with a UserError as its 4xx (404 for `field: no ...`)."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except UserError as e:
        return error_response(e)


@router.get("/prompts")
async def list_prompts(request: Request, category: str | None = Query(None)):
    if category and category not in (*CATEGORIES, "other"):
        return openai_error(400, f"category: one of {', '.join(CATEGORIES)}, other; got {category!r}", "category")
    return await _call(store.list_templates, workspace(request), category or None)


@router.get("/prompts/datasets")
async def prompt_datasets(request: Request):
    return await _call(fewshot.list_datasets, workspace(request))


@router.get("/prompts/{name}")
async def get_prompt(name: str, request: Request, version: int | None = Query(None, ge=1)):
    ws = workspace(request)

    def go():
        return store.get(ws, name, version) | {"history": store.history(ws, name)}

    return await _call(go)


@router.post("/prompts", status_code=201)
async def save_prompt(req: SaveRequest, request: Request):
    data = req.model_dump(exclude={"note"})
    return await _call(store.save, workspace(request), data, note=req.note)


@router.get("/prompts/{name}/diff")
async def diff_prompt(name: str, request: Request, a: int = Query(..., ge=1), b: int = Query(..., ge=1)):
    return await _call(store.diff, workspace(request), name, a, b)


@router.post("/prompts/{name}/revert", status_code=201)
async def revert_prompt(name: str, req: RevertRequest, request: Request):
    return await _call(store.revert, workspace(request), name, req.version)


@router.post("/prompts/render")
async def render_prompt(req: RenderRequest, request: Request):
    ws = workspace(request)

    def go():
        rec = store.get(ws, req.name, req.version)
        out = render_template(store.template_of(rec), req.variables)
        whole = "\n\n".join(p for p in (out["system"], out["text"]) if p)
        return {"name": rec["name"], "version": rec["version"], **out,
                **fewshot.count_tokens(ws, whole, req.model)}

    return await _call(go)


@router.post("/prompts/fewshot")
async def build_fewshot(req: FewShotRequest, request: Request):
    return await _call(fewshot.build, workspace(request), **req.model_dump())


def _rows(ws, req: ABTestRequest) -> list[dict]:
    """The labelled rows from exactly one of `items`, `text` (JSONL) or `dataset`."""
    given = [f for f in ("items", "text", "dataset") if getattr(req, f) is not None]
    if len(given) != 1:
        raise UserError(f"items: give the labelled rows as one of items, text (JSONL) or dataset; got "
                        f"{', '.join(given) or 'none'}")
    if req.items is not None:
        return req.items
    if req.dataset is not None:
        return fewshot.read_split(ws, req.dataset, req.split, limit=req.limit)
    rows = []
    for i, line in enumerate(req.text.splitlines()):
        if line.strip():
            try:
                rows.append(json.loads(line))
            except ValueError as e:
                raise UserError(f"text: line {i + 1} is not JSON ({e.msg})") from None
    return rows


@router.post("/prompts/ab-test")
async def ab_test(req: ABTestRequest, request: Request):
    ws = workspace(request)
    endpoint = req.endpoint or getattr(request.app.state, "llm_url", None) or \
        f"{request.url.scheme}://{request.url.netloc}/v1"

    def go():
        return abtest.ab_test(ws, req.a.model_dump(), req.b.model_dump(), _rows(ws, req), model=req.model,
                              endpoint=endpoint, metric=req.metric, max_tokens=req.max_tokens,
                              api_key=os.environ.get("PLAYGROUND_API_KEY") or None)

    try:
        return await _call(go)
    except abtest.EndpointError as e:
        return openai_error(e.status, str(e), e.param, code=e.code)
