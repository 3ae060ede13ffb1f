"""The tokenizer lab over HTTP, mounted into the playground API (services/api.py) at /api.

    GET    /api/tokenizers                 every tokenizer of the workspace (trainer, model, vocab size)
    GET    /api/tokenizers/presets         the editable price table and the limits
    POST   /api/tokenizers/encode          {"tokenizer", "text"}: tokens, ids, bytes, offsets, merges
    POST   /api/tokenizers/replay          {"tokenizer", "word"}: the merges of a word, step by step
    POST   /api/tokenizers/compare         {"tokenizers": [2-4 names], "text"}
    POST   /api/tokenizers/stats           {"tokenizer", "text" | "upload" | "dataset"}: fertility, coverage ...
    POST   /api/tokenizers/cost            {"tokenizer", "text" | "upload", "presets"?}
    POST   /api/tokenizers/train           {"source": {"upload" | "dataset"}, "model", "trainer", "vocab_size", ...}
                                           -> 202 and a Ray job id
    GET    /api/tokenizers/jobs/{job_id}   the job's status and progress (merges done / total)
    POST   /api/uploads?name=FILE.txt      the raw file as the body: a UTF-8 text, kept in the workspace
    GET    /api/datasets                   registered datasets (workspace/datasets), to train on

The work itself is `training/tokenizers/tokenlab.py` (plain Python, tested on its own); this
module validates requests (pydantic, extra fields refused), turns each `UserError` into
a 4xx naming the field, and runs training as a Ray job so the API replica stays free.
"""

from __future__ import annotations

import asyncio
import re
from typing import Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.jobs import job_error, job_status, read_job, submit_cli_job
from services.jobs import workspace as _ws
from services.llm import openai_error
from training.data import uploads
from training.errors import UserError
from training.tokenizers import tokenlab
from training.workspace import Workspace

router = APIRouter()

_PROGRESS = re.compile(r"^progress (\d+)/(\d+)", re.MULTILINE)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Source(_Strict):
    """Where a corpus comes from: exactly one of inline text, an upload, or a registered dataset."""

    text: str | None = None
    upload: str | None = Field(None, description="an id returned by POST /api/uploads")
    dataset: str | None = Field(None, description="a workspace dataset id (workspace/datasets/<id>)")

    @model_validator(mode="after")
    def _one(self):
        if sum(v is not None for v in (self.text, self.upload, self.dataset)) != 1:
            raise ValueError("give exactly one of text, upload, dataset")
        return self


class EncodeRequest(_Strict):
    tokenizer: str
    text: str


class ReplayRequest(_Strict):
    tokenizer: str
    word: str


class CompareRequest(_Strict):
    tokenizers: list[str] = Field(..., min_length=tokenlab.MIN_COMPARE, max_length=tokenlab.MAX_COMPARE)
    text: str


class StatsRequest(Source):
    tokenizer: str
    top_k: int = Field(tokenlab.DEFAULT_TOP_K, ge=1, le=200)


class CostRequest(_Strict):
    tokenizer: str
    text: str | None = None
    upload: str | None = None
    presets: list[dict] | None = Field(None, description="rows of {name, input_per_1k, output_per_1k}")

    @model_validator(mode="after")
    def _one(self):
        if (self.text is None) == (self.upload is None):
            raise ValueError("give exactly one of text, upload")
        return self


class TrainRequest(_Strict):
    source: Source
    model: Literal["bpe", "wordpiece", "unigram"] = "bpe"
    trainer: Literal["hf", "scratch"] = "scratch"
    vocab_size: int = Field(1024, gt=0)
    min_frequency: int = Field(2, ge=1)
    name: str | None = None
    overwrite: bool = False


# ---------------------------------------------------------------------------- helpers


def user_error(e: UserError) -> JSONResponse:
    """A `UserError` as a 4xx: 404 for something that does not exist, else 400; the field
    is the message's leading `field:` (or `field must ...`)."""
    message = str(e)
    if message.startswith("unknown tokenizer"):
        return openai_error(404, message, "tokenizer", code="not_found")
    if message.startswith("model: no exported model"):  # (or run)
        return openai_error(404, message, "model", code="model_not_found")
    named = re.match(r"([A-Za-z_][\w.\[\]]*)(?:: | must )", message)
    return openai_error(400, message, named.group(1) if named else None)


def read_source(ws: Workspace, source: Source) -> list[str]:
    """The texts of a corpus source (UserError naming the field when it is not there)."""
    if source.text is not None:
        return [uploads.check_text(source.text, "text")]
    if source.upload is not None:
        return [uploads.read_upload(ws, source.upload)]
    return uploads.read_dataset(ws, source.dataset)


async def _run(fn, *args, **kwargs):
    """Run lab work off the event loop, with UserError turned into its 4xx."""
    try:
        return await asyncio.to_thread(fn, *args, **kwargs)
    except UserError as e:
        return user_error(e)


# ---------------------------------------------------------------------------- routes


@router.get("/tokenizers")
async def list_tokenizers(request: Request) -> list[dict]:
    return await asyncio.to_thread(tokenlab.list_tokenizers, _ws(request))


@router.get("/datasets")
async def datasets(request: Request) -> list[dict]:
    import json

    from training.data.snapshot import is_snapshot

    root = _ws(request).datasets
    out = []
    for d in sorted(root.iterdir()) if root.is_dir() else []:
        if is_snapshot(d):  # text snapshots only: instruction data (posttrain/sft_data.py) trains no tokenizer
            manifest = json.loads((d / "manifest.json").read_text())
            out.append({"id": d.name, "sources": manifest.get("sources"), "counts": manifest.get("counts")})
    return out


@router.get("/tokenizers/presets")
async def presets() -> dict:
    return {"presets": tokenlab.DEFAULT_PRICE_PRESETS, "note": tokenlab.PRICE_NOTE,
            "limits": {"text_bytes": uploads.MAX_TEXT_BYTES, "compare": [tokenlab.MIN_COMPARE, tokenlab.MAX_COMPARE],
                       "replay_chars": tokenlab.MAX_REPLAY_CHARS},
            "byte_fallback": tokenlab.BYTE_FALLBACK_DEFINITIONS}


@router.post("/tokenizers/encode")
async def encode(req: EncodeRequest, request: Request):
    ws = _ws(request)
    return await _run(lambda: tokenlab.inspect(tokenlab.open_tokenizer(ws, req.tokenizer),
                                               uploads.check_text(req.text, "text")))


@router.post("/tokenizers/replay")
async def replay(req: ReplayRequest, request: Request):
    ws = _ws(request)
    return await _run(lambda: tokenlab.replay(tokenlab.open_tokenizer(ws, req.tokenizer), req.word))


@router.post("/tokenizers/compare")
async def compare(req: CompareRequest, request: Request):
    ws = _ws(request)
    return await _run(lambda: tokenlab.compare([tokenlab.open_tokenizer(ws, t) for t in req.tokenizers],
                                               uploads.check_text(req.text, "text")))


@router.post("/tokenizers/stats")
async def stats(req: StatsRequest, request: Request):
    ws = _ws(request)
    return await _run(lambda: tokenlab.stats(tokenlab.open_tokenizer(ws, req.tokenizer),
                                             read_source(ws, req), top_k=req.top_k))


@router.post("/tokenizers/cost")
async def cost(req: CostRequest, request: Request):
    ws = _ws(request)

    def work():
        text = uploads.check_text(req.text) if req.text is not None else uploads.read_upload(ws, req.upload)
        return tokenlab.cost(tokenlab.open_tokenizer(ws, req.tokenizer), text, req.presets)

    return await _run(work)


@router.post("/uploads", status_code=201)
async def upload(request: Request, name: str = Query("upload.txt", max_length=200)):
    """Keep a UTF-8 text file (the raw request body) for stats, cost and training."""
    ws = _ws(request)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > uploads.MAX_TEXT_BYTES:
        return openai_error(413, f"file: {int(declared) / 1e6:.1f} MB, the limit is "
                                 f"{uploads.MAX_TEXT_BYTES / 1e6:.1f} MB", "file", "too_large")
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > uploads.MAX_TEXT_BYTES:
            return openai_error(413, f"file: over the limit of {uploads.MAX_TEXT_BYTES / 1e6:.1f} MB", "file",
                                "too_large")
    try:
        saved = await asyncio.to_thread(uploads.save_upload, ws, bytes(data), "file")
    except UserError as e:
        return user_error(e)
    return {**saved, "name": name}


@router.post("/tokenizers/train", status_code=202)
async def train(req: TrainRequest, request: Request):
    """Check everything here (a bad request is a 400 now, not a failed job later), then
    train in a Ray job: `playground tokenizer lab-train`, which prints its progress."""
    ws = _ws(request)
    try:
        name = await asyncio.to_thread(_check_train, ws, req)
    except UserError as e:
        return user_error(e)
    args = ["tokenizer", "lab-train", "--name", name, "--model", req.model, "--trainer", req.trainer,
            "--vocab-size", str(req.vocab_size), "--min-frequency", str(req.min_frequency)]
    args += ["--upload", req.source.upload] if req.source.upload else ["--dataset", req.source.dataset]
    if req.overwrite:
        args.append("--overwrite")
    job_id = await asyncio.to_thread(submit_cli_job, request, args, {"kind": "tokenizer", "tokenizer": name})
    return {"job_id": job_id, "tokenizer": name, "status": "PENDING"}


def _check_train(ws: Workspace, req: TrainRequest) -> str:
    from training.tokenizers.hf_tokenizers import check_vocab_size

    if req.source.text is not None:
        raise UserError("source.text: upload the corpus first (POST /api/uploads) or name a dataset")
    if req.trainer == "scratch" and req.model != "bpe":
        raise UserError(f"model: the scratch trainer trains bpe only, got {req.model!r}")
    try:
        check_vocab_size(req.vocab_size, req.model)
    except UserError as e:
        raise UserError(f"vocab_size: {e}") from None
    if req.source.upload is not None:
        uploads.read_upload(ws, req.source.upload, "source.upload")
        tag = req.source.upload[:8]
    else:
        tag = uploads.dataset_path(ws, req.source.dataset, "source.dataset").name
    name = req.name or f"lab-{req.model}{req.vocab_size}{'s' if req.trainer == 'scratch' else ''}-{tag}"
    return tokenlab.check_new_name(ws, name, req.overwrite)


@router.get("/tokenizers/jobs/{job_id}")
async def job(job_id: str, request: Request):
    found = await asyncio.to_thread(read_job, request, job_id, "tokenizer")
    if found is None:
        return openai_error(404, f"no tokenizer training job {job_id!r}", "job_id", code="not_found")
    info, logs = found
    steps = _PROGRESS.findall(logs)
    done, total = (int(steps[-1][0]), int(steps[-1][1])) if steps else (0, 0)
    status = job_status(info)
    return {"job_id": job_id, "tokenizer": (info.metadata or {}).get("tokenizer"), "status": status,
            "progress": {"done": done, "total": total}, "error": job_error(status, info, logs)}
