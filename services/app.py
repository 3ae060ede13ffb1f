"""The one place where Serve applications are wired (import paths for configs/serve/*.yaml).

    serve run configs/serve/local.yaml        # or `serve deploy`, or `playground up`

- `services.app:build_llm_app`  -> the OpenAI-compatible vLLM application (route `/`)
- `services.app:build_api_app`  -> the playground API (route `/api`), with the `Inspector`
                                   deployment (our PyTorch model, for the architecture lab)

The numbers (CPUs per engine, context length, KV cache) live in the YAML's `args`.
"""

from __future__ import annotations

from services import llm
from services.schemas import APIAppArgs, LLMAppArgs
from training.workspace import Workspace


def build_llm_app(args: dict):
    """Args: the `args` block of the `llm` application (see `LLMAppArgs`)."""
    parsed = LLMAppArgs.model_validate(args)
    return llm.build_llm_app(parsed, Workspace.resolve(parsed.workspace).models)


def build_api_app(args: dict):
    """Args: the `args` block of the `playground` application (see `APIAppArgs`)."""
    from services.api import PlaygroundAPI
    from services.inspector import Inspector

    parsed = APIAppArgs.model_validate(args)
    return PlaygroundAPI.bind(parsed.model_dump(), Inspector.bind(parsed.workspace))
