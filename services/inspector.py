"""The architecture lab over HTTP: the configurator and the `Inspector` deployment.

    GET  /api/architecture/presets   preset model shapes, GPUs, precisions
    POST /api/architecture           {"model": preset name | fields, batch_size, seq_len, precision, ...}
                                     -> parameters by component, memory, FLOPs per token, training time, diagram
    POST /api/inspect                {"model": exported model or run id, "prompt", "top_k", "layer"?, "head"?}
                                     -> attention maps, activation flow, logit lens, next-token
                                        probabilities, head pattern labels (training/model/inspection.py)

`Inspector` is its own Serve deployment: it holds our PyTorch model (not vLLM's) for the
exported checkpoints it was asked about, so the API replica stays light and the model
stays loaded between requests. The API calls it through a deployment handle.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import OrderedDict
from typing import Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field
from ray import serve

from services.tokenizer_api import user_error
from training.errors import UserError
from training.workspace import Workspace

router = APIRouter()


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArchitectureRequest(_Strict):
    model: str | dict[str, Any] = Field("micro", description="a preset name or ModelConfig fields")
    batch_size: int = Field(8, gt=0)
    seq_len: int | None = Field(None, gt=0, description="default: the model's block_size")
    precision: str = "bf16"
    optimizer: str = "adamw"
    tokens: float | None = Field(None, gt=0, description="training budget; default 20 tokens per parameter")
    gpu: str = "h100-sxm"
    mfu: float = Field(0.4, gt=0, le=1)
    n_gpus: int = Field(1, gt=0)


class InspectRequest(_Strict):
    model: str = Field(..., min_length=1, description="an exported model id (GET /api/models) or a run id")
    prompt: str
    top_k: int = Field(5, ge=1, le=50)
    layer: int | None = Field(None, description="with head: return only this head's attention map")
    head: int | None = None


@serve.deployment(name="Inspector", ray_actor_options={"num_cpus": 0}, max_ongoing_requests=4)
class Inspector:
    """Runs `training.model.inspection.inspect_prompt` on exported checkpoints, keeping the two
    most recently used models loaded (reloaded when the export changes on disk)."""

    CACHE = 2

    def __init__(self, workspace: str | None = None):
        self.ws = Workspace.resolve(workspace)
        self._models: OrderedDict = OrderedDict()
        # Inspection hooks live on the model object during a call: one call at a time.
        self._lock = threading.Lock()

    def _load(self, model_id: str):
        """An exported model (workspace/models/<id>), else a run's latest checkpoint
        (workspace/runs/<id>): runs whose variant has no Hugging Face export can be inspected too."""
        from training.model import checkpoint
        from training.model.export import load_export
        from training.tokenizers.tokenizer import load_tokenizer

        if "/" in model_id or ".." in model_id:
            raise UserError(f"model: no exported model or run {model_id!r} (see GET /api/models)")
        export = self.ws.model(model_id)
        if (export / "config.json").is_file():
            key = (model_id, (export / "config.json").stat().st_mtime_ns)
            loader = lambda: (load_export(export), load_tokenizer(export))  # noqa: E731
        else:
            run_dir = self.ws.run(model_id)
            ckpt = checkpoint.latest(run_dir) if run_dir.is_dir() else None
            if ckpt is None:
                raise UserError(f"model: no exported model or run {model_id!r} (see GET /api/models)")
            key = (model_id, str(ckpt))

            def loader():
                model, _, meta, _, _ = checkpoint.load_model(ckpt, self.ws.runs)
                return model, load_tokenizer(meta["tokenizer_dir"])
        if key not in self._models:
            self._models[key] = loader()
            while len(self._models) > self.CACHE:
                self._models.popitem(last=False)
        self._models.move_to_end(key)
        return self._models[key]

    def inspect(self, model_id: str, prompt: str, top_k: int = 5, layer: int | None = None,
                head: int | None = None) -> dict:
        """The report, or {"error": one line} for a user mistake (a handle call returns it as is)."""
        from training.model.inspection import attention_for, inspect_prompt

        t0 = time.perf_counter()
        try:
            with self._lock:
                model, tokenizer = self._load(model_id)
                result = inspect_prompt(model, tokenizer, prompt, top_k=top_k)
            if layer is not None or head is not None:
                if layer is None or head is None:
                    raise UserError(f"{'head' if layer is not None else 'layer'}: give both layer and head")
                result["attention"] = {"layer": layer, "head": head, "weights": attention_for(result, layer, head)}
        except UserError as e:
            return {"error": str(e)}
        result["model"] = model_id
        result["timings_ms"]["inspector"] = round(1000 * (time.perf_counter() - t0), 3)
        return result

    def decode(self, model_id: str, prompt: str, strategies: list[dict], max_new_tokens: int = 32,
               top: int = 20, ignore_eos: bool = False) -> dict:
        """The decoding lab (training/decoding/report.py `lab`) on one model, or {"error": one line}."""
        import torch

        from training.decoding.report import lab
        from training.model.inspection import decode_each

        try:
            with self._lock:
                model, tokenizer = self._load(model_id)
                eos = None if ignore_eos else getattr(tokenizer, "eos_token_id", None)
                # One intra-op thread: a step feeds at most a few rows, too little work to share, and a
                # request thread (as Serve runs this) with two OpenMP threads took twice as long: 440 ms
                # against 200 ms for the beam-4 tree of the demo model on 2 cores.
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
                try:
                    out = lab(model, tokenizer.encode, lambda ids: decode_each(tokenizer, ids), tokenizer.decode,
                              prompt, strategies, max_new_tokens=max_new_tokens, top=top,
                              eos_token_id=eos if eos is not None and eos < model.config.vocab_size else None)
                finally:
                    torch.set_num_threads(threads)
        except UserError as e:
            return {"error": str(e)}
        return out | {"model": model_id, "context": model.config.block_size}


@router.get("/architecture/presets")
async def presets() -> dict:
    from training.model import configurator

    return {"presets": configurator.PRESETS, "gpus": configurator.GPUS, "precisions": list(configurator.PRECISIONS),
            "optimizers": list(configurator.OPTIMIZERS)}


@router.post("/architecture")
async def architecture(req: ArchitectureRequest):
    from training.model import configurator

    try:
        return await asyncio.to_thread(
            configurator.summary, req.model, batch_size=req.batch_size, seq_len=req.seq_len,
            precision=req.precision, optimizer=req.optimizer, tokens=req.tokens, gpu=req.gpu, mfu=req.mfu,
            n_gpus=req.n_gpus)
    except UserError as e:
        return user_error(e)


@router.post("/inspect")
async def inspect(req: InspectRequest, request: Request):
    t0 = time.perf_counter()
    result = await request.app.state.inspector.inspect.remote(req.model, req.prompt, req.top_k, req.layer, req.head)
    if "error" in result:
        return user_error(UserError(result["error"]))
    result["timings_ms"]["api"] = round(1000 * (time.perf_counter() - t0), 3)
    return result
