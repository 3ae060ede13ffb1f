"""Arguments of the Serve applications (the `args:` blocks of configs/serve/*.yaml).

Pydantic with extra="forbid", like the training configs: a typo in a Serve config is
an error that names the key, not a silently ignored option.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

MLFLOW_UI = "http://127.0.0.1:5000"  # where `playground mlflow` (cluster/cli.py) serves the MLflow UI


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class EngineArgs(_Strict):
    """vLLM engine settings shared by every served model (numbers sized for a 2-core CPU box)."""

    dtype: str = "float32"
    max_model_len: int | None = Field(None, gt=0, description="default: the model's own context length")
    enforce_eager: bool = True
    gpu_memory_utilization: float = Field(0.3, gt=0, le=1, description="on CPU: the share of host memory")
    kv_cache_gib: float = Field(1.0, gt=0, description="VLLM_CPU_KVCACHE_SPACE on CPU")
    replica_cpus: float = Field(1.0, gt=0, description="Ray CPUs reserved for each engine replica")
    stream_batching_ms: float = Field(
        0.0, ge=0, description="Serve LLM groups streamed tokens for this long (Ray's default 50 ms costs TTFT)"
    )


class LLMAppArgs(_Strict):
    """The OpenAI-compatible application: one vLLM deployment per model."""

    models: list[str] = Field(
        default_factory=list,
        description="workspace model ids (workspace/models/<id>), local HF folders, or Hub names when online",
    )
    workspace: str | None = None
    api_key: str | None = Field(None, description="bearer key for /v1; env PLAYGROUND_API_KEY also sets it")
    engine: EngineArgs = Field(default_factory=EngineArgs)


class APIAppArgs(_Strict):
    """The playground API at /api."""

    workspace: str | None = None
    api_key: str | None = Field(None, description="bearer key for /api; env PLAYGROUND_API_KEY also sets it")
    llm_app: str = Field("llm", description="name of the LLM application that deploy/undeploy reconfigures")
    dashboard_url: str = "http://127.0.0.1:8265"
    mlflow_url: str | None = Field(
        MLFLOW_UI, description="the MLflow UI on the workspace's store (`playground mlflow` serves it there)")


class DeployRequest(_Strict):
    model: str = Field(..., min_length=1, description="a workspace model id from GET /api/models")
