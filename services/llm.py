"""The OpenAI-compatible LLM application: vLLM engines hosted by `ray.serve.llm`.

`build_openai_app` gives one `LLMServer` deployment per model and an `OpenAiIngress`
in front (`/v1/models`, `/v1/chat/completions`, `/v1/completions`, ...). We keep Ray's
ingress and add three things in front of it, on the same FastAPI app:

- an optional bearer key (`Authorization: Bearer ...`);
- request checks that Ray's ingress gets wrong or leaves to a 500: a body that is not
  JSON, an unknown model, empty messages, a message role OpenAI does not know;
- every error in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`,
  naming the offending field in `param`.

The playground API (services/api.py) gets the same `harden`, with `redact` set: its
errors come from messages written for the CLI, and must not tell an HTTP client where
the server keeps its files.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.schemas import LLMAppArgs

CHECKED_PATHS = ("/v1/chat/completions", "/v1/completions")
# The roles OpenAI's chat API accepts ("function" is its legacy form of "tool"). vLLM would
# render any other role into the prompt and answer 200, so a typo goes unnoticed.
ROLES = ("system", "developer", "user", "assistant", "tool", "function")


def upstream_message(response) -> str:
    """The message of an OpenAI-style error body from an endpoint we called (an httpx response), else
    the start of its text: what a caller passes on when a served model refused a request."""
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:300]


def openai_error(status: int, message: str, param: str | None = None, type_: str | None = None,
                 code: int | str | None = None) -> JSONResponse:
    """An error response in the shape OpenAI clients (and our UI) parse. `code` is the
    HTTP status, as vLLM gives it, unless OpenAI has a name for the case."""
    type_ = type_ or ("invalid_request_error" if status < 500 else "internal_error")
    return JSONResponse(status_code=status, content={"error": {
        "message": message, "type": type_, "param": param, "code": status if code is None else code}})


def check_request(path: str, raw: bytes, model_ids: set[str]) -> JSONResponse | None:
    """Reject what the engine would choke on, before it reaches it. None means fine."""
    try:
        body = json.loads(raw or b"null")
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        return openai_error(400, f"request body is not valid JSON: {e}", "body")
    if not isinstance(body, dict):
        return openai_error(400, "request body must be a JSON object", "body")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        return openai_error(400, "'model' is required", "model")
    if model not in model_ids:
        served = ", ".join(sorted(model_ids)) or "none; deploy one with POST /api/deployments"
        return openai_error(404, f"model '{model}' is not served (served: {served})", "model", code="model_not_found")
    if path.endswith("/chat/completions"):
        messages = body.get("messages")
        if not isinstance(messages, list) or not messages:
            return openai_error(400, "'messages' must be a non-empty list", "messages")
        return check_messages(messages)
    return None


def check_messages(messages: list) -> JSONResponse | None:
    """Each message is an object with a role OpenAI knows; the error names `messages[i].role`.

    The code is OpenAI's for this case, `invalid_value`, as is the message's wording."""
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            return openai_error(400, f"messages[{i}] must be an object with 'role' and 'content'", f"messages[{i}]")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            supported = ", ".join(f"'{r}'" for r in ROLES)
            return openai_error(400, f"Invalid value for messages[{i}].role: {role!r}. Supported values are: "
                                     f"{supported}.", f"messages[{i}].role", code="invalid_value")
    return None


# Fields an engine error may be about, in the order we look for them in its message.
_FIELDS = ("temperature", "top_p", "top_k", "max_tokens", "max_completion_tokens", "presence_penalty",
           "frequency_penalty", "repetition_penalty", "stop", "seed", "logprobs", "top_logprobs", "n",
           "messages", "prompt", "model")


def normalize_error(path: str, status: int, raw: bytes, redact: Callable[[str], str] | None = None) -> JSONResponse:
    """Rewrite an engine/ingress error as a clean OpenAI error that names the field.

    vLLM's checks are right but its errors arrive wrapped ("Message: ... (Request ID: ...),
    Internal exception: ...") and often with param=None, e.g. for a prompt longer than
    the context. We keep the status and the first sentence, and name the field. A prompt
    longer than the context gets OpenAI's code for it, `context_length_exceeded`, which
    clients (our Chat page among them) check to shorten the conversation. `redact`, when
    given, rewrites the message last (the playground API hides its workspace path with it).
    """
    try:
        body = json.loads(raw)
    except ValueError:
        body = {}
    err = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
    message = str(err.get("message") or (body.get("detail") if isinstance(body, dict) else "") or raw[:300])
    message = re.sub(r"^Message:\s*", "", message).split(" (Request ID:")[0].strip()
    param = err.get("param") if isinstance(err.get("param"), str) else None
    named = re.search(r"parameter=(\w+)", message)
    code = None
    if "context length" in message or (named and named.group(1) == "input_text"):
        # The prompt is too long: name the request field that holds it, not vLLM's internal one.
        param = "messages" if path.endswith("/chat/completions") else "prompt"
        code = "context_length_exceeded" if status == 400 else None
    elif param is None:
        param = named.group(1) if named else next((f for f in _FIELDS if re.search(rf"\b{f}\b", message)), None)
    if redact is not None:
        message = redact(message)
    return openai_error(status, message, param, err.get("type") if status >= 500 else None, code)


class Guard:
    """ASGI middleware: the key check, the request checks, and OpenAI-shaped errors.

    Plain ASGI rather than `@app.middleware("http")`: Starlette's `BaseHTTPMiddleware`
    pipes every streamed chunk through an extra task and queue, which costs time per
    token. Here a 200 stream goes straight through; only error responses (4xx/5xx
    JSON) are held back and rewritten by `normalize_error`, with `redact` applied to
    their message: every error of every route passes here.
    """

    def __init__(self, app, model_ids: set[str], api_key: str | None, redact: Callable[[str], str] | None = None):
        self.app, self.model_ids, self.redact = app, model_ids, redact
        self.auth = f"Bearer {api_key}".encode() if api_key else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope["path"]
        if self.auth and dict(scope["headers"]).get(b"authorization") != self.auth:
            return await openai_error(401, "missing or wrong API key (Authorization: Bearer ...)", "authorization",
                                      code="invalid_api_key")(scope, receive, send)
        if scope["method"] == "POST" and path in CHECKED_PATHS:
            body, more = b"", True
            while more:
                message = await receive()
                body += message.get("body", b"")
                more = message.get("more_body", False)
            problem = check_request(path, body, self.model_ids)
            if problem is not None:
                return await problem(scope, receive, send)
            receive = _replay(body, receive)

        held: dict = {}

        async def send_or_rewrite(message):
            if message["type"] == "http.response.start" and message["status"] >= 400 and \
                    dict(message.get("headers", [])).get(b"content-type", b"").startswith(b"application/json"):
                held.update(start=message, body=b"")
                return
            if held and message["type"] == "http.response.body":
                held["body"] += message.get("body", b"")
                if not message.get("more_body"):
                    await normalize_error(path, held["start"]["status"], held["body"],
                                          self.redact)(scope, receive, send)
                return
            await send(message)

        await self.app(scope, receive, send_or_rewrite)


def _replay(body: bytes, receive):
    """A `receive` that hands the app the body we already read, then the real channel."""
    pending = [{"type": "http.request", "body": body, "more_body": False}]

    async def replayed():
        return pending.pop() if pending else await receive()

    return replayed


def harden(app: FastAPI, model_ids: set[str], api_key: str | None,
           redact: Callable[[str], str] | None = None) -> FastAPI:
    """Add `Guard` and OpenAI-shaped validation errors to a FastAPI app.

    Args:
        app: the FastAPI app (vLLM's, Ray's ingress, or the playground API).
        model_ids: the models served; a request for another is a 404 `model_not_found`.
        api_key: the bearer key every request must carry; None: no key.
        redact: rewrites every error message (e.g. `Workspace.redact_root`); None: as is.
    """
    app.add_middleware(Guard, model_ids=model_ids, api_key=api_key, redact=redact)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError):
        err = (exc.errors() or [{}])[0]
        loc = [str(p) for p in err.get("loc", ())]
        if loc and loc[0] in ("body", "query", "path", "header"):  # where it was is not the field's name
            loc = loc[1:]
        param = ".".join(loc) or "body"
        return openai_error(400, f"{param}: {err.get('msg', 'invalid value')}", param)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException):
        return openai_error(exc.status_code, str(exc.detail))

    return app


def resolve_model_source(model: str, workspace_models: Path) -> str:
    """A workspace model id, a local Hugging Face folder, or (online) a Hub name."""
    if (workspace_models / model / "config.json").is_file():
        return str(workspace_models / model)
    if Path(model).expanduser().is_dir():
        return str(Path(model).expanduser().resolve())
    return model


def exported_context_length(model: str, workspace_models: Path) -> int | None:
    """The context length of a model exported to the workspace (its config.json), else None.

    vLLM works it out by itself. Saying it up front puts it on Ray's multi-model
    `/v1/models` cards, which read it from the engine arguments; the Chat page bounds max
    tokens with it. Only for our own exports: a Hub model may scale its positions
    (`rope_scaling`), which vLLM takes into account and this would not.
    """
    config = workspace_models / model / "config.json"
    if not config.is_file():
        return None
    c = json.loads(config.read_text())
    return c.get("max_position_embeddings") or c.get("n_positions")


def served_dtype(model: str, workspace_models: Path, default: str) -> str:
    """The engine dtype for `model`: the Serve config's, unless the model is a quantized variant whose
    kernels want another (vLLM's CPU 4-bit kernel runs in bfloat16; training/registry/quantize.py
    records it in the variant's playground.json as quantization.serve_dtype)."""
    info = workspace_models / model / "playground.json"
    try:
        quant = json.loads(info.read_text()).get("quantization") or {} if info.is_file() else {}
    except (OSError, ValueError):
        quant = {}
    return quant.get("serve_dtype") or default


def llm_configs(args: LLMAppArgs, workspace_models: Path) -> list:
    """One `ray.serve.llm.LLMConfig` per model, from the `engine` block of the Serve config."""
    from ray.serve.llm import LLMConfig

    e = args.engine

    def engine_kwargs(model: str) -> dict:
        kwargs = {"dtype": served_dtype(model, workspace_models, e.dtype), "enforce_eager": e.enforce_eager,
                  "gpu_memory_utilization": e.gpu_memory_utilization}
        if max_model_len := e.max_model_len or exported_context_length(model, workspace_models):
            kwargs["max_model_len"] = max_model_len
        return kwargs

    return [
        LLMConfig(
            model_loading_config={"model_id": Path(m).name if Path(m).is_dir() else m,
                                  "model_source": resolve_model_source(m, workspace_models)},
            engine_kwargs=engine_kwargs(m),
            # A placement group without GPUs selects vLLM's CPU path; with a GPU, ask for one.
            placement_group_config={"bundles": [{"CPU": e.replica_cpus}]},
            deployment_config={"autoscaling_config": {"min_replicas": 1, "max_replicas": 1}},
            runtime_env={"env_vars": {"VLLM_CPU_KVCACHE_SPACE": str(int(e.kv_cache_gib))}},
            experimental_configs={"stream_batching_interval_ms": e.stream_batching_ms},
        )
        for m in args.models
    ]


def build_llm_app(args: LLMAppArgs, workspace_models: Path):
    """The OpenAI-compatible application for `args.models`.

    - No model: `no_models_app`.
    - One model (the usual case): the vLLM server is itself the ingress ("direct
      streaming"): HTTP goes to the replica that holds the engine and is answered by
      vLLM's own OpenAI routes, with `harden` in front. No second deployment, no
      Ray hop per streamed token.
    - Several models: `ray.serve.llm.build_openai_app`'s layout, an `OpenAiIngress`
      routing by `model` to one vLLM deployment per model, with `harden` on its app.
    """
    api_key = args.api_key or os.environ.get("PLAYGROUND_API_KEY") or None
    if not args.models:
        return no_models_app(api_key)
    configs = llm_configs(args, workspace_models)
    if len(configs) == 1:
        return direct_llm_app(configs[0], api_key)
    return routed_llm_app(configs, api_key)


def direct_llm_app(config, api_key: str | None):
    """One model, served by its own replica: Ray's "direct streaming" layout.

    Ray Serve LLM builds this with RAY_SERVE_LLM_ENABLE_DIRECT_STREAMING=1; we build the
    same deployment without its experimental round-robin request router (a single
    replica needs none, and HAProxy mode, see `services/serve_env.py`, refuses it).
    """
    from ray import serve
    from ray.serve.llm import build_llm_deployment

    return build_llm_deployment(config, deployment_cls=serve.ingress()(_hardened_server_cls()),
                                bind_kwargs={"api_key": api_key})


def _hardened_server_cls():
    """`LLMServer` whose ASGI app (vLLM's own OpenAI routes) gets `harden` in front."""
    from ray.serve.llm.deployment import LLMServer

    class PlaygroundLLMServer(LLMServer):
        async def __init__(self, llm_config, *, api_key: str | None = None, **kwargs):
            self._api_key = api_key
            await super().__init__(llm_config, **kwargs)

        async def __serve_build_asgi_app__(self):
            app = await super().__serve_build_asgi_app__()
            app.middleware_stack = None  # vLLM built it eagerly; Starlette rebuilds it with ours
            return harden(app, {self._llm_config.model_id}, self._api_key)

    return PlaygroundLLMServer


def routed_llm_app(configs: list, api_key: str | None):
    """Several models behind one ingress.

    This is `ray.serve.llm.build_openai_app` (Ray 2.60) with one change: the ingress is
    built on our FastAPI app (Ray's own middleware plus `harden`) instead of a fresh one.
    The deployments, the ingress class and its options are Ray's.
    """
    from ray import serve
    from ray.llm._internal.serve.core.configs.openai_api_models import to_model_metadata
    from ray.llm._internal.serve.core.ingress.ingress import init as init_openai_fastapi
    from ray.serve.llm import build_llm_deployment
    from ray.serve.llm.ingress import OpenAiIngress, make_fastapi_ingress

    model_ids = {c.model_id for c in configs}
    ingress_cls = make_fastapi_ingress(OpenAiIngress, app=harden(init_openai_fastapi(), model_ids, api_key))
    return serve.deployment(ingress_cls, **OpenAiIngress.get_deployment_options(configs)).bind(
        llm_deployments={c.model_id: build_llm_deployment(c) for c in configs},
        model_cards={c.model_id: to_model_metadata(c.model_id, c) for c in configs},
        lora_paths={},
    )


def no_models_app(api_key: str | None):
    """Stands in for the LLM app while no model is deployed: /v1/models is empty and
    generation answers 404 saying how to deploy a model."""
    from ray import serve

    app = harden(FastAPI(), set(), api_key)

    @app.get("/v1/models")
    async def models():
        return {"object": "list", "data": []}

    @serve.deployment(name="NoModels", ray_actor_options={"num_cpus": 0})
    @serve.ingress(app)
    class NoModels:
        pass

    return NoModels.bind()
