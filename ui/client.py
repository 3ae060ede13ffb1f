"""The UI's only door to the cluster: a small HTTP client for the playground's Serve endpoints.

Everything the Streamlit pages show comes through here, so the UI runs anywhere that can
reach the Serve HTTP port (a laptop, a notebook, another pod) without Ray or torch. Every
failure, from a 4xx JSON body to a refused connection, becomes one `ApiError` whose text
is fit to show a learner as-is.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
from typing_extensions import Self  # typing.Self from Python 3.11

from ui.client_chat import ChatClientMixin
from ui.client_models import ModelsClientMixin
from ui.client_prompts import PromptsClientMixin

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """A failed call, as the server explained it (status 0: the server was never reached)."""

    def __init__(self, status: int, message: str, param: str | None = None, code: int | str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code

    @property
    def context_overflow(self) -> bool:
        """The prompt is longer than the model's context: a 400 with OpenAI's code
        `context_length_exceeded`, which our server sets. A bare vLLM server sends no such
        code, only its words ("This model's maximum context length is 64 tokens. ...", or
        "Input length (300) exceeds model's maximum context length (128)."), so those count too."""
        return self.status == 400 and (self.code == "context_length_exceeded" or "context length" in self.message)

    def __str__(self) -> str:
        where = f" (parameter `{self.param}`)" if self.param else ""
        prefix = f"HTTP {self.status}: " if self.status else ""
        return f"{prefix}{self.message}{where}"


def _error_from_body(status: int, body: Any, fallback: str) -> ApiError:
    # Two body shapes reach us: OpenAI-style {"error": {...}} from vLLM and our handlers,
    # and FastAPI's {"detail": str | [validation errors]} from anything that bypasses them.
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        err = body["error"]
        return ApiError(status, str(err.get("message") or fallback), err.get("param"), err.get("code"))
    if isinstance(body, dict) and isinstance(body.get("error"), str):
        return ApiError(status, body["error"], body.get("param"))
    if isinstance(body, dict) and "detail" in body:
        detail = body["detail"]
        if isinstance(detail, list):  # pydantic validation errors: name the first bad field
            msgs = [str(d.get("msg", d)) if isinstance(d, dict) else str(d) for d in detail]
            first = detail[0] if detail and isinstance(detail[0], dict) else {}
            loc = [str(p) for p in first.get("loc", []) if p not in ("body", "query", "path")]
            return ApiError(status, "; ".join(msgs) or fallback, loc[-1] if loc else None)
        return ApiError(status, str(detail))
    if isinstance(body, dict) and "message" in body:  # older vLLM: {"object": "error", "message": ...}
        return ApiError(status, str(body["message"]), body.get("param"))
    return ApiError(status, fallback)


def _raise_for_status(response: httpx.Response) -> None:
    if response.status_code < 400:
        return
    text = response.text
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    # A proxy or Serve itself may answer in plain text ("Internal Server Error"): show it, short.
    fallback = text.strip()[:300] or response.reason_phrase or "request failed"
    raise _error_from_body(response.status_code, body, fallback)


class PlaygroundClient(ChatClientMixin, PromptsClientMixin, ModelsClientMixin):
    """HTTP client for the playground: OpenAI-compatible `/v1` plus the `/api` management routes."""

    def __init__(self, base_url: str | None = None, api_key: str | None = None, timeout: float = 60.0):
        self.base_url = (base_url or os.environ.get("PLAYGROUND_URL") or DEFAULT_URL).rstrip("/")
        api_key = api_key if api_key is not None else os.environ.get("PLAYGROUND_API_KEY")
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # A short connect timeout makes "cluster is down" quick to report; the long read
        # timeout leaves room for CPU-only vLLM generating a long, non-streamed answer.
        self._http = httpx.Client(base_url=self.base_url, headers=headers,
                                  timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)))

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _unreachable(self, exc: httpx.HTTPError) -> ApiError:
        reason = str(exc) or type(exc).__name__
        if isinstance(exc, httpx.TimeoutException):
            return ApiError(0, f"the playground at {self.base_url} did not answer in time ({reason})")
        return ApiError(0, f"cannot reach the playground at {self.base_url}: {reason}. "
                           "Is the Serve cluster running, and is PLAYGROUND_URL right?")

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        _raise_for_status(response)
        try:
            return response.json()
        except ValueError:
            raise ApiError(response.status_code, f"{method} {path} did not return JSON") from None

    # ---- playground API -------------------------------------------------------------

    def health(self) -> dict:
        """Cluster health: `status`, each Serve deployment's state, the deployed models and links."""
        return self._request("GET", "/api/health")

    def models(self) -> list[dict]:
        """Every exported model in the registry, deployed or not, with its run, step and config."""
        return self._request("GET", "/api/models")

    def runs(self) -> list[dict]:
        """One summary row per training run (kind, last step, loss, val_loss, perplexity, tokens/s)."""
        return self._request("GET", "/api/runs")

    def run(self, run_id: str) -> dict:
        """One run in full: resolved `config`, per-step `metrics` and generated `samples`; a
        fine-tuning run adds its `lineage` and, once it has ended, its `results`."""
        return self._request("GET", f"/api/runs/{quote(run_id, safe='')}")

    # ---- fine-tuning (SFT) -----------------------------------------------------------

    def sft_runs(self) -> list[dict]:
        """The fine-tuning runs (kind `sft`) of GET /api/runs, newest first."""
        return [r for r in self.runs() if r.get("kind") == "sft"]

    def align_runs(self) -> list[dict]:
        """The alignment runs (kind `reward`, `dpo` or `grpo`) of GET /api/runs, newest first."""
        return [r for r in self.runs() if r.get("kind") in ("reward", "dpo", "grpo")]

    def submit_sft(self, config: dict) -> dict:
        """Start `playground sft` on an SFT config (base.model, method, data, lora, train, scale)
        as a Ray job; returns its `job_id` and `name`."""
        return self.submit_job("sft", config)

    def deploy(self, model: str) -> dict:
        """Ask Serve to start serving `model`; returns at once (`status: deploying`)."""
        return self._request("POST", "/api/deployments", json={"model": model})

    def undeploy(self, model: str) -> dict:
        """Stop serving `model` (its export stays in the registry)."""
        return self._request("DELETE", f"/api/deployments/{quote(model, safe='')}")

    # ---- tokenizer lab ---------------------------------------------------------------

    def tokenizers(self) -> list[dict]:
        """Every tokenizer of the workspace: name, trainer (hf/scratch), model, vocab size."""
        return self._request("GET", "/api/tokenizers")

    def datasets(self) -> list[dict]:
        """Registered datasets (id, sources, per-split counts), to train a tokenizer on."""
        return self._request("GET", "/api/datasets")

    def tokenizer_presets(self) -> dict:
        """The example price table, its note, and the server's limits."""
        return self._request("GET", "/api/tokenizers/presets")

    def encode(self, tokenizer: str, text: str) -> dict:
        """Tokens of `text` with id, piece, bytes, offsets and (BPE) the merge that made each."""
        return self._request("POST", "/api/tokenizers/encode", json={"tokenizer": tokenizer, "text": text})

    def replay(self, tokenizer: str, word: str) -> dict:
        """The BPE merges applied to one word, step by step."""
        return self._request("POST", "/api/tokenizers/replay", json={"tokenizer": tokenizer, "word": word})

    def compare(self, tokenizers: list[str], text: str) -> dict:
        """2-4 tokenizers on the same text."""
        return self._request("POST", "/api/tokenizers/compare", json={"tokenizers": tokenizers, "text": text})

    def token_stats(self, tokenizer: str, *, text: str | None = None, upload: str | None = None,
                    dataset: str | None = None, top_k: int = 20) -> dict:
        """Fertility, chars per token, vocabulary coverage, byte fallback, most frequent tokens."""
        source = {k: v for k, v in (("text", text), ("upload", upload), ("dataset", dataset)) if v is not None}
        return self._request("POST", "/api/tokenizers/stats", json={"tokenizer": tokenizer, "top_k": top_k, **source})

    def cost(self, tokenizer: str, *, text: str | None = None, upload: str | None = None,
             presets: list[dict] | None = None) -> dict:
        """Tokens x price per 1k tokens for each preset row."""
        body = {"tokenizer": tokenizer, "presets": presets,
                **{k: v for k, v in (("text", text), ("upload", upload)) if v is not None}}
        return self._request("POST", "/api/tokenizers/cost", json=body)

    def upload(self, name: str, data: bytes) -> dict:
        """Store a UTF-8 text file on the server; returns its `upload` id."""
        return self._request("POST", "/api/uploads", params={"name": name}, content=data,
                             headers={"Content-Type": "application/octet-stream"})

    def train_tokenizer(self, source: dict, **options) -> dict:
        """Start training (a Ray job); `source` is {"upload": id} or {"dataset": id}."""
        return self._request("POST", "/api/tokenizers/train", json={"source": source, **options})

    def tokenizer_job(self, job_id: str) -> dict:
        """A training job's status and progress (merges done / total)."""
        return self._request("GET", f"/api/tokenizers/jobs/{quote(job_id, safe='')}")

    # ---- jobs (training, tokenizer, data) ------------------------------------------

    def jobs(self) -> list[dict]:
        """The playground's Ray jobs, newest first: id, kind, name, status, times."""
        return self._request("GET", "/api/jobs")

    def job(self, job_id: str) -> dict:
        return self._request("GET", f"/api/jobs/{quote(job_id, safe='')}")

    def job_logs(self, job_id: str, tail: int = 200) -> dict:
        """The last `tail` lines of a job's output (`lines`), and its status."""
        return self._request("GET", f"/api/jobs/{quote(job_id, safe='')}/logs", params={"tail": tail})

    def submit_job(self, kind: str, config: dict) -> dict:
        """Start `playground pretrain|sft|reward|dpo|grpo|tokenizer train|data run|tune` with `config`
        as a Ray job (the kind of an alignment job is its method)."""
        return self._request("POST", "/api/jobs", json={"kind": kind, "config": config})

    def stop_job(self, job_id: str) -> dict:
        return self._request("POST", f"/api/jobs/{quote(job_id, safe='')}/stop")

    # ---- sweeps (Ray Tune) -----------------------------------------------------------

    def sweeps(self) -> list[dict]:
        """Every sweep, newest first: id, status, number of trials, best trial and metric."""
        return self._request("GET", "/api/sweeps")

    def sweep(self, sweep_id: str) -> dict:
        """One sweep in full: config, search keys, each trial (params, status, curve), best, registered model."""
        return self._request("GET", f"/api/sweeps/{quote(sweep_id, safe='')}")

    # ---- fine-tuning experiments -----------------------------------------------------

    def experiments(self) -> list[dict]:
        """Every fine-tuning experiment, newest first: id, status, variants."""
        return self._request("GET", "/api/experiments")

    def experiment(self, experiment_id: str) -> dict:
        """One experiment: config, the base model's scores before, each variant's results, and `table`."""
        return self._request("GET", f"/api/experiments/{quote(experiment_id, safe='')}")

    # ---- evaluation --------------------------------------------------------------------

    def eval_tasks(self) -> list[dict]:
        """The suites an evaluation can ask for: name, title, kind, chance level."""
        return self._request("GET", "/api/eval-tasks")

    def evals(self) -> list[dict]:
        """Every evaluation, newest first: id, status, progress, models, tasks."""
        return self._request("GET", "/api/evals")

    def eval(self, eval_id: str) -> dict:
        """One evaluation's record: config, progress, lineage, a row per (model, task)."""
        return self._request("GET", f"/api/evals/{quote(eval_id, safe='')}")

    def eval_samples(self, eval_id: str, model: str, task: str) -> dict:
        return self._request("GET", f"/api/evals/{quote(eval_id, safe='')}/samples",
                             params={"model": model, "task": task})

    def submit_eval(self, request: dict) -> dict:
        """Start an evaluation ({models, tasks, limit, num_fewshot, backend}): {eval_id, job_id}."""
        return self._request("POST", "/api/evals", json=request)

    def leaderboard(self, tasks: list[str] | None = None) -> dict:
        params = {"tasks": ",".join(tasks)} if tasks else None
        return self._request("GET", "/api/leaderboard", params=params)

    def leaderboard_csv(self, tasks: list[str] | None = None) -> str:
        """The same table as CSV (the server writes it: one row per model)."""
        params = {"format": "csv"} | ({"tasks": ",".join(tasks)} if tasks else {})
        try:
            response = self._http.get("/api/leaderboard", params=params)
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        _raise_for_status(response)
        return response.text

    def compare_models(self, task: str, a: str, b: str) -> dict:
        """A paired test of models a and b on one task (bootstrap; McNemar for right/wrong)."""
        return self._request("GET", "/api/leaderboard/compare", params={"task": task, "a": a, "b": b})

    def leaderboard_history(self, run: str | None = None) -> dict:
        """Without `run`: the runs with checkpoint scores; with it, each task's score against step."""
        return self._request("GET", "/api/leaderboard/history", params={"run": run} if run else None)

    def leaderboard_breakdown(self, group: str = "mmlu", models: list[str] | None = None) -> dict:
        """The tasks inside a group per model (MMLU's subjects with their category)."""
        params = {"group": group} | ({"models": ",".join(models)} if models else {})
        return self._request("GET", "/api/leaderboard/breakdown", params=params)

    def reports(self) -> list[dict]:
        """Every report card of a pipeline run, newest first."""
        return self._request("GET", "/api/reports")

    def report(self, name: str) -> dict:
        """One report card: `report` (its figures) and `markdown`."""
        return self._request("GET", f"/api/reports/{quote(name, safe='')}")

    def compare_reports(self, a: str, b: str) -> dict:
        return self._request("GET", "/api/reports/compare", params={"a": a, "b": b})

    # ---- human evaluation ----------------------------------------------------------------

    def human_compare(self, prompt: str, models: list[str], set_name: str = "default", **params: Any) -> dict:
        """Both models answer `prompt`: the blind view {comparison_id, left, right} (no names)."""
        return self._request("POST", "/api/human/comparisons",
                             json={"prompt": prompt, "models": models, "set": set_name, **params})

    def human_vote(self, comparison_id: str | int, rater: str, choice: str) -> dict:
        """choice: left, right, tie or both_bad; the answer reveals which model was which."""
        return self._request("POST", f"/api/human/comparisons/{quote(str(comparison_id), safe='')}/vote",
                             json={"rater": rater, "choice": choice})

    def human_answer(self, prompt: str, model: str, set_name: str = "default", **params: Any) -> dict:
        return self._request("POST", "/api/human/answers",
                             json={"prompt": prompt, "model": model, "set": set_name, **params})

    def human_rate(self, item_id: str | int, rater: str, score: int) -> dict:
        return self._request("POST", f"/api/human/answers/{quote(str(item_id), safe='')}/rating",
                             json={"rater": rater, "score": score})

    def human_leaderboard(self, set_name: str | None = None) -> dict:
        return self._request("GET", "/api/human/leaderboard", params={"set": set_name} if set_name else None)

    def human_export(self) -> dict:
        return self._request("GET", "/api/human/export")

    # ---- data pipeline ---------------------------------------------------------------

    def snapshots(self) -> list[dict]:
        """Every dataset snapshot, newest first: id, name, parent, sources, documents per split."""
        return self._request("GET", "/api/data/snapshots")

    def snapshot(self, snapshot_id: str) -> dict:
        """One snapshot: its `manifest` (inputs, config, counts, outputs) and `stats` (removed by stage ...)."""
        return self._request("GET", f"/api/data/snapshots/{quote(snapshot_id, safe='')}")

    def snapshot_samples(self, snapshot_id: str, **filters: Any) -> dict:
        """Sample documents (`total`, `items`), filtered by status, stage, reason; limit and offset page."""
        params = {k: v for k, v in filters.items() if v is not None}
        return self._request("GET", f"/api/data/snapshots/{quote(snapshot_id, safe='')}/samples", params=params)

    def snapshot_diff(self, a: str, b: str) -> dict:
        """What changed from snapshot `a` to `b`: config keys, inputs, counts per stage, outputs."""
        return self._request("GET", "/api/data/diff", params={"a": a, "b": b})

    def run_data_pipeline(self, config: dict) -> dict:
        """Start the data pipeline (a Ray job) on a pipeline config; returns its `job_id`."""
        return self._request("POST", "/api/data/jobs", json={"config": config})

    def data_job(self, job_id: str) -> dict:
        """A pipeline job's status, progress (stages done / total), new `snapshot` id and error."""
        return self._request("GET", f"/api/data/jobs/{quote(job_id, safe='')}")

    # ---- architecture lab ------------------------------------------------------------

    def architecture_presets(self) -> dict:
        """Preset model shapes, the GPU peak table, precisions and optimizers."""
        return self._request("GET", "/api/architecture/presets")

    def architecture(self, model: str | dict, **options: Any) -> dict:
        """Parameters by component, memory, FLOPs per token, training time and the block diagram."""
        return self._request("POST", "/api/architecture", json={"model": model, **options})

    def inspect(self, model: str, prompt: str, top_k: int = 5, layer: int | None = None,
                head: int | None = None) -> dict:
        """Attention maps, activation flow, logit lens and next-token probabilities of a prompt."""
        body = {"model": model, "prompt": prompt, "top_k": top_k, "layer": layer, "head": head}
        return self._request("POST", "/api/inspect", json={k: v for k, v in body.items() if v is not None})

    def decoding(self, request: dict) -> dict:
        """The decoding lab ({model, prompt, strategies, max_new_tokens, served}): each strategy's steps
        with their distributions stage by stage, each beam search's tree; `served` from vLLM."""
        return self._request("POST", "/api/decoding", json=request)

    # ---- OpenAI-compatible API ------------------------------------------------------

    def served_models(self) -> dict[str, int | None]:
        """The models vLLM is serving now (`GET /v1/models`): what chat can talk to, each id
        with its context length in tokens, or None where the server does not say.

        vLLM's own model card carries `max_model_len`; Ray's multi-model ingress carries
        `metadata.max_request_context_length` instead.
        """
        cards = self._request("GET", "/v1/models").get("data", [])
        return {m["id"]: m.get("max_model_len") or (m.get("metadata") or {}).get("max_request_context_length")
                for m in cards}

    def chat(self, model: str, messages: list[dict], **params: Any) -> str:
        """One chat completion, returned whole. `params` are OpenAI/vLLM sampling fields."""
        body = {"model": model, "messages": messages, **params, "stream": False}
        data = self._request("POST", "/v1/chat/completions", json=body)
        try:
            return data["choices"][0]["message"]["content"] or ""
        except (KeyError, IndexError, TypeError):
            raise ApiError(200, "the server's answer had no choices[0].message.content") from None

    def chat_stream(self, model: str, messages: list[dict], **params: Any) -> Iterator[str]:
        """Stream a chat completion, yielding text pieces as the server sends them (SSE).

        Raises ApiError on an error status, an error event inside the stream, or a dropped
        connection. Nothing is sent until the iterator is first advanced.
        """
        body = {"model": model, "messages": messages, **params, "stream": True}
        try:
            with self._http.stream("POST", "/v1/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    _raise_for_status(response)
                yield from _sse_text(response.iter_lines())
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None


def _sse_text(lines: Iterator[str]) -> Iterator[str]:
    """Text pieces from OpenAI-style Server-Sent Events lines, up to `data: [DONE]`."""
    for line in lines:
        # Blank lines separate events; ":" lines are keep-alive comments; "event:"/"id:" unused.
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError:
            raise ApiError(200, f"unreadable stream event: {data[:200]}") from None
        # vLLM reports failures after the 200 header as an event, since the status is already sent.
        if "error" in chunk or chunk.get("object") == "error":
            err = chunk.get("error") if isinstance(chunk.get("error"), dict) else chunk
            status = err.get("code") if isinstance(err.get("code"), int) else 500
            raise _error_from_body(status, chunk, "the model failed while generating")
        for choice in chunk.get("choices") or []:
            piece = (choice.get("delta") or {}).get("content")
            if piece:
                yield piece
