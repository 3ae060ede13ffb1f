"""The playground API at /api: what the UI needs besides the OpenAI endpoints.

    GET    /api/health               cluster, deployments, served models, links (Ray dashboard, MLflow)
    GET    /api/models?kind=         every model of the workspace (training/registry): its kind, parent,
                                     size, whether it is served, what it came from (`lineage`)
    /api/models/..., /api/runs/{run}/checkpoints/...
                                     one model's lineage, card, evaluations; diff, quantize, import,
                                     publish, delete; a run's checkpoints (services/models_api.py)
    GET    /api/runs                 runs with their kind (pretrain, sft) and last metrics
    GET    /api/runs/{run}           one run: resolved config, metrics history, samples; for a fine-tuning
                                     run its `lineage` and, once it ends, `results` (base vs tuned on held-out)
    POST   /api/deployments          {"model": id}: serve a model (reconfigures only the LLM app; 409 for a
                                     quantized variant this machine's vLLM cannot run)
    DELETE /api/deployments/{model}  stop serving it
    /api/tokenizers/...              the tokenizer lab (services/tokenizer_api.py)
    /api/data/...                    data pipeline snapshots, samples, diffs, pipeline jobs (services/data_api.py)
    /api/architecture, /api/inspect  the architecture lab (services/inspector.py)
    /api/decoding                    the decoding lab: strategies side by side, the beam tree (services/decoding_api.py)
    /api/jobs/...                    training, tokenizer and data jobs on Ray (services/jobs_api.py)
    /api/evals/..., /api/eval-tasks  evaluations with lm-eval, their records and items (services/evals_api.py)
    /api/leaderboard/...             every model's latest scores, and paired tests (services/evals_api.py)
    /api/reports/...                 report cards of pipeline runs (services/reports_api.py)
    /api/human/...                   blind pairwise votes and 1-5 ratings, their leaderboard (services/human_api.py)
    /api/conversations/...           saved chat conversations: message trees, branches, export
                                     (services/conversations_api.py)
    /api/prompts/...                 prompt templates, versions, few-shot, A/B tests (services/prompts_api.py)
    GET    /api/docs                 OpenAPI docs

Everything is read from the workspace, so runs submitted as Ray jobs, the CLI and the
UI all see the same state. Deploy/undeploy rewrites the LLM application's `models`
argument in the cluster's declarative Serve config and re-applies it: Serve restarts
only the application whose config changed.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import yaml
from fastapi import FastAPI
from ray import serve

from services.conversations_api import router as conversations_router
from services.data_api import router as data_router
from services.decoding_api import router as decoding_router
from services.evals_api import router as evals_router
from services.experiments_api import router as experiments_router
from services.human_api import router as human_router
from services.inspector import router as inspector_router
from services.jobs_api import router as jobs_router
from services.llm import harden, openai_error
from services.models_api import router as models_router
from services.prompts_api import router as prompts_router
from services.reports_api import router as reports_router
from services.schemas import APIAppArgs, DeployRequest
from services.sweeps_api import router as sweeps_router
from services.tokenizer_api import router as tokenizer_router
from training.errors import UserError
from training.registry import mlflow_sync, registry
from training.workspace import Workspace, read_jsonl, run_summary

SYNC_EVERY_S = 30  # GET /api/models brings MLflow's model registry in step at most this often

app = FastAPI(title="LLM Playground API", docs_url="/docs", openapi_url="/openapi.json")
app.include_router(tokenizer_router)
app.include_router(inspector_router)
app.include_router(decoding_router)
app.include_router(jobs_router)
app.include_router(data_router)
app.include_router(sweeps_router)
app.include_router(experiments_router)
app.include_router(evals_router)
app.include_router(reports_router)
app.include_router(human_router)
app.include_router(conversations_router)
app.include_router(prompts_router)
app.include_router(models_router)


def links(args: APIAppArgs, ws: Workspace) -> dict:
    """Where to look next (GET /api/health): the Ray dashboard, and MLflow: the store every run
    logs to unless its config names another (`tracking.tracking_uri`), and the URL of its UI.

    The store is always known; the UI runs only once someone starts it (`playground mlflow`
    serves it at `mlflow_url`'s default), so the Home page shows both and says how.
    """
    return {"ray_dashboard": args.dashboard_url, "mlflow": args.mlflow_url, "mlflow_store": ws.mlflow_uri()}


def _json(path: Path) -> dict | None:
    """A JSON file's content; None when it is not there (yet)."""
    return json.loads(path.read_text()) if path.is_file() else None


def run_kind(run_dir: Path, record: dict | None = None) -> str:
    """"sft" for a fine-tuning run (its run.json says so), else "pretrain"."""
    record = _json(run_dir / "run.json") if record is None else record
    return (record or {}).get("kind") or "pretrain"


def run_rows(ws: Workspace) -> list[dict]:
    """GET /api/runs: each run's kind and last metrics, newest first."""
    return [{**run_summary(r), "kind": run_kind(r)} for r in ws.list_runs()]


def run_detail(ws: Workspace, run: str):
    """GET /api/runs/{run}: the run in full, or a 404 naming `run`.

    A fine-tuning run adds `lineage` (base model, data snapshot, method, parent run; from its
    run.json) and `results` (results.json: base vs tuned accuracy on each held-out split and
    their replies; null until the run has ended)."""
    run_dir = ws.run(run)
    if not (run_dir / "config.yaml").is_file() or run_dir.parent != ws.runs:
        return openai_error(404, f"no run named '{run}'", "run", code="not_found")
    record = _json(run_dir / "run.json") or {}
    return {"run": run, "kind": run_kind(run_dir, record),
            "config": yaml.safe_load((run_dir / "config.yaml").read_text()),
            "metrics": read_jsonl(run_dir / "metrics.jsonl"), "samples": read_jsonl(run_dir / "samples.jsonl"),
            "lineage": record.get("lineage"), "results": _json(run_dir / "results.json"), **run_summary(run_dir)}


@serve.deployment(name="PlaygroundAPI", ray_actor_options={"num_cpus": 0})
@serve.ingress(app)
class PlaygroundAPI:
    def __init__(self, args: dict, inspector=None):
        self.args = APIAppArgs.model_validate(args)
        self.ws = Workspace.resolve(self.args.workspace)
        # What the routers (tokenizer lab, architecture lab, data) read from the app.
        app.state.workspace, app.state.dashboard_url, app.state.inspector = self.ws, self.args.dashboard_url, inspector
        app.state.deployed_models = lambda: self._deployed(self._serve_details())
        self._synced = -SYNC_EVERY_S
        # Errors name ids; the workspace's absolute path becomes `<workspace>` in any message.
        harden(app, set(), self.args.api_key or os.environ.get("PLAYGROUND_API_KEY") or None,
               redact=self.ws.redact_root)

    # ----------------------------------------------------------------- reads

    @app.get("/health")
    async def health(self) -> dict:
        details = await asyncio.to_thread(self._serve_details)
        deployments = {f"{name}/{dname}": d.get("status")
                       for name, a in details.get("applications", {}).items()
                       for dname, d in a.get("deployments", {}).items()}
        return {"status": "ok", "deployments": deployments, "models_deployed": self._deployed(details),
                "links": links(self.args, self.ws), "workspace": str(self.ws.root)}

    @app.get("/models")
    async def models(self, kind: str | None = None):
        deployed = set(self._deployed(await asyncio.to_thread(self._serve_details)))
        try:
            rows = await asyncio.to_thread(registry.list_models, self.ws, deployed, kind=kind)
        except UserError as e:
            return openai_error(400, str(e), "kind")
        if time.monotonic() - self._synced > SYNC_EVERY_S:  # models made by jobs reach MLflow's registry too
            self._sync_registry(deployed)
        return rows

    @app.get("/runs")
    async def runs(self) -> list[dict]:
        return await asyncio.to_thread(run_rows, self.ws)

    @app.get("/runs/{run}")
    async def run(self, run: str):
        return await asyncio.to_thread(run_detail, self.ws, run)

    # ----------------------------------------------------------------- deploy

    @app.post("/deployments", status_code=202)
    async def deploy(self, req: DeployRequest):
        if not (self.ws.model(req.model) / "config.json").is_file():
            return openai_error(404, f"no exported model '{req.model}' (see GET /api/models)", "model",
                                code="model_not_found")
        quant = (registry.read_info(self.ws.model(req.model)).get("quantization") or {})
        if quant.get("servable") is False:
            return openai_error(409, f"model '{req.model}' cannot be served by this machine's vLLM: "
                                f"{quant.get('servable_reason') or 'no kernel for its format'}", "model",
                                code="not_servable")
        await asyncio.to_thread(self._set_models, lambda models: sorted(set(models) | {req.model}))
        self._sync_registry(set(self._deployed(await asyncio.to_thread(self._serve_details))) | {req.model})
        return {"model": req.model, "status": "deploying"}

    @app.delete("/deployments/{model}")
    async def undeploy(self, model: str):
        details = await asyncio.to_thread(self._serve_details)
        if model not in self._deployed(details):
            return openai_error(404, f"model '{model}' is not deployed", "model", code="model_not_found")
        await asyncio.to_thread(self._set_models, lambda models: [m for m in models if m != model])
        self._sync_registry(set(self._deployed(details)) - {model})
        return {"model": model, "status": "removed"}

    def _sync_registry(self, deployed: set[str]) -> None:
        """MLflow's registry follows the workspace and the `deployed` alias the deployments, in the
        background (training/registry/mlflow_sync.py)."""
        self._synced = time.monotonic()
        asyncio.get_running_loop().run_in_executor(None, mlflow_sync.safe_sync, self.ws, deployed)

    # ----------------------------------------------------------------- Serve config

    def _client(self):
        from ray.dashboard.modules.serve.sdk import ServeSubmissionClient

        return ServeSubmissionClient(self.args.dashboard_url)

    def _serve_details(self) -> dict:
        return self._client().get_serve_details()

    def _llm_config(self, details: dict) -> dict | None:
        app_details = details.get("applications", {}).get(self.args.llm_app) or {}
        return app_details.get("deployed_app_config")

    def _deployed(self, details: dict) -> list[str]:
        cfg = self._llm_config(details) or {}
        return list((cfg.get("args") or {}).get("models", []))

    def _set_models(self, update) -> None:
        """Re-apply the declarative Serve config with the LLM app's model list changed."""
        details = self._serve_details()
        apps = [a["deployed_app_config"] for a in details["applications"].values() if a.get("deployed_app_config")]
        for cfg in apps:
            if cfg["name"] == self.args.llm_app:
                cfg.setdefault("args", {})["models"] = update(cfg["args"].get("models", []))
        self._client().deploy_applications({
            "proxy_location": details.get("proxy_location", "HeadOnly"),
            "http_options": {k: v for k, v in (details.get("http_options") or {}).items() if k in ("host", "port")},
            "applications": apps,
        })

