"""Run configs: one typed schema in code, many YAML files in `configs/` as data.

Layering, lowest to highest priority:

1. the defaults written in the classes below;
2. the YAML file given with `--config`;
3. dotted `key=value` overrides on the command line (`train.lr=3e-4 model.n_layer=6`).

Unknown keys and wrong types are errors that name the key, so a typo never trains
silently with a default. The resolved config is written into every run directory
(`config.yaml`), and travels inside every checkpoint, so export, sampling and serving
need only a path.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from training.errors import UserError
from training.model.model_config import ModelConfig

if TYPE_CHECKING:
    from training.data.config import PipelineConfig


class _Strict(BaseModel):
    # extra="forbid": an unknown key is an error, not a silently ignored typo.
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class DataConfig(_Strict):
    """Where the text comes from and how it is split: a snapshot from `playground data run`, or
    `sources` that `playground data prepare` reads and splits into one (training/data/prepare.py)."""

    name: str | None = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
                             description="dataset id in the workspace; default derived from the sources")
    sources: list[str] = Field(
        default_factory=lambda: ["synthetic"],
        description="'synthetic', local .txt/.jsonl/.parquet/.csv files or folders, 'upload:ID', "
                    "'snapshot:ID' or 'hf:NAME[:CONFIG][@SPLIT]' (as for `playground data run`)",
    )
    synthetic_chars: int = Field(2_000_000, gt=0, description="size of the generated starter corpus")
    synthetic_seed: int = 0
    text_field: str = "text"
    val_fraction: float = Field(0.05, gt=0.0, lt=0.5, description="expected share of documents in val")
    split_seed: int = Field(1337, description="salts the hash of each document's text that picks its split")
    snapshot: str | None = Field(
        None, description="a snapshot id from `playground data run`: train on its splits as they are "
                          "(sources and the split settings above are then not used); the run records it")

    @field_validator("sources")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("at least one source is required")
        return v

    def dataset_id(self) -> str:
        """A stable, readable id: the snapshot, the explicit name, or a slug of the sources plus a short hash."""
        if self.snapshot:
            return self.snapshot
        if self.name:
            return self.name
        key = json.dumps(self.model_dump(exclude={"name"}), sort_keys=True)
        first = _slug(Path(self.sources[0].split("@")[0]).stem or "data")[:48].strip("._-") or "data"
        return f"{first}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"

    def pipeline_config(self) -> PipelineConfig:
        """The data pipeline's config for `data prepare`: these sources and split, every cleaning stage off.

        Returns:
            A `training.data.config.PipelineConfig` named after `dataset_id()`; val gets
            `val_fraction` of the documents, train the rest, test none.
        """
        from training.data.config import PipelineConfig, Stages

        return PipelineConfig.model_validate({
            "name": self.dataset_id(), "sources": self.sources, "text_field": self.text_field,
            "synthetic_chars": self.synthetic_chars, "synthetic_seed": self.synthetic_seed,
            "stages": {stage: {"enabled": False} for stage in Stages.model_fields},
            "split": {"train": 1.0 - self.val_fraction, "val": self.val_fraction, "test": 0.0,
                      "seed": self.split_seed},
        })


class TokenizerConfig(_Strict):
    """Train a tokenizer on the dataset (byte-level BPE by default), or use an existing one (`path`)."""

    path: str | None = Field(None, description="existing Hugging Face tokenizer: a local folder or a Hub name")
    trainer: Literal["hf", "scratch"] = Field(
        "hf", description="hf: Hugging Face tokenizers; scratch: our own RegexBPE (training/bpe), same result for bpe"
    )
    model: Literal["bpe", "wordpiece", "unigram"] = Field(
        "bpe", description="bpe: byte-level BPE; wordpiece and unigram: hf trainer only (training/tokenizers/hf_tokenizers.py)"
    )
    vocab_size: int = Field(4096, gt=0)
    min_frequency: int = Field(2, ge=1)

    @model_validator(mode="after")
    def _scratch_trains_bpe(self) -> TokenizerConfig:
        if self.trainer == "scratch" and self.model != "bpe":
            raise ValueError(f"trainer=scratch only trains model=bpe, got model={self.model}")
        return self

    def tokenizer_id(self, dataset_id: str) -> str:
        """The tokenizer's folder name in the workspace, e.g. "bpe4096-<dataset>" or "bpe4096s-<dataset>".

        The HF byte-level BPE keeps the plain id, so existing workspaces stay valid;
        our own trainer adds an "s" (scratch) and other models use their name.
        """
        if self.path:
            return _slug(Path(self.path).name or self.path)
        scratch = "s" if self.trainer == "scratch" else ""
        return f"{self.model}{self.vocab_size}{scratch}-{dataset_id}"


class TrainConfig(_Strict):
    """The optimisation loop (see `training/pretrain/loop.py`)."""

    max_steps: int = Field(1000, gt=0)
    stop_at: int | None = Field(
        None, gt=0, description="stop (with a checkpoint) after this step; the schedule still runs to max_steps"
    )
    batch_size: int | Literal["auto"] = Field(
        16, description="sequences per micro-batch per worker, or 'auto': measure the largest micro-batch "
                        "that fits in memory and accumulate up to train.global_batch (training/pretrain/memory.py)"
    )
    grad_accum: int = Field(1, gt=0, description="micro-batches per optimizer step (chosen by the finder "
                                                 "when batch_size is auto)")
    global_batch: int | None = Field(
        None, gt=0, description="sequences per optimizer step across all workers; required with batch_size=auto"
    )
    memory_budget_mb: int | None = Field(
        None, gt=0, description="per-worker memory the micro-batch finder may plan for (default: 90% of free "
                                "GPU memory, or half the available RAM shared by the node's workers)"
    )
    grad_checkpointing: bool = Field(
        False, description="recompute each block's activations in backward instead of storing them: "
                           "much less activation memory for ~30% more compute"
    )
    lr: float = Field(1e-3, gt=0)
    min_lr: float = Field(1e-4, ge=0)
    schedule: Literal["cosine", "linear", "constant"] = "cosine"
    warmup_steps: int = Field(100, ge=0)
    weight_decay: float = Field(0.1, ge=0)
    beta1: float = Field(0.9, ge=0, lt=1)
    beta2: float = Field(0.95, ge=0, lt=1)
    grad_clip: float = Field(1.0, ge=0, description="max global grad norm; 0 disables clipping")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 autocast where the device supports it, else fp32"
    )
    seed: int = 1337
    log_interval: int = Field(10, gt=0)
    eval_interval: int = Field(200, gt=0)
    eval_iters: int = Field(20, gt=0)
    checkpoint_interval: int = Field(500, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    sample_prompts: list[str] = Field(default_factory=lambda: ["Once upon a time", "Q: What is 3 plus 4?"])
    sample_tokens: int = Field(48, ge=0)

    @field_validator("batch_size", mode="before")
    @classmethod
    def _batch_size_or_auto(cls, v):
        # One clear message instead of pydantic's two (one per member of the union).
        if isinstance(v, str) and v.strip().isdigit():
            v = int(v)
        if v == "auto":
            return v
        if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
            raise ValueError(f"must be a positive integer or 'auto', got {v!r}")
        return v

    @model_validator(mode="after")
    def _auto_batch_needs_global_batch(self) -> TrainConfig:
        if self.batch_size == "auto":
            if self.global_batch is None:
                raise ValueError("train.batch_size=auto needs train.global_batch (sequences per optimizer "
                                 "step across all workers); the finder then picks micro-batch x grad_accum")
            if self.grad_accum != 1:
                raise ValueError("train.batch_size=auto chooses train.grad_accum itself; leave grad_accum out")
        elif self.global_batch is not None:
            raise ValueError("train.global_batch is only used with train.batch_size=auto (otherwise the "
                             "global batch is batch_size x grad_accum x scale.num_workers)")
        return self


class ScaleConfig(_Strict):
    """How Ray Train runs the loop."""

    num_workers: int = Field(1, gt=0)
    threads_per_worker: int = Field(2, gt=0, description="torch intra-op threads (and Ray CPUs) per worker")
    max_failures: int = Field(2, ge=0, description="times Ray Train restarts the workers from the latest "
                                                   "checkpoint after one dies (0: fail at once)")
    use_gpu: bool = False
    strategy: Literal["ddp", "fsdp", "deepspeed_zero2", "deepspeed_zero3"] = Field(
        "ddp", description="how workers share the model (training/pretrain/strategies.py). ddp: a full copy each, "
                           "gradients averaged; fsdp: parameters, gradients and optimizer state sharded "
                           "(FSDP2; CPU too); deepspeed_zero2: optimizer state and gradients sharded; "
                           "deepspeed_zero3: parameters too. The deepspeed ones need GPUs"
    )

    @model_validator(mode="after")
    def _strategy_fits_device(self) -> ScaleConfig:
        if self.strategy.startswith("deepspeed") and not self.use_gpu:
            raise ValueError(f"scale.strategy={self.strategy} needs GPUs (scale.use_gpu=true); "
                             f"on CPU use ddp or fsdp")
        return self


class TrackingConfig(_Strict):
    mlflow: bool = True
    tracking_uri: str | None = Field(None, description="default: a local store under the runs directory")
    experiment: str = "pretrain"
    log_model: bool = Field(True, description="log the final model to MLflow as a Hugging Face export")
    wandb_project: str | None = Field(
        None, description="also log params, metrics and samples to Weights & Biases under this project "
                          "(needs `wandb login` or WANDB_API_KEY; WANDB_MODE=offline keeps it local)")


class PretrainConfig(_Strict):
    """One complete pretraining run: data, tokenizer, model, loop, scale, tracking."""

    run_name: str | None = Field(None, description="run id; default '<config name>-<timestamp>'")
    data: DataConfig = Field(default_factory=DataConfig)
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    scale: ScaleConfig = Field(default_factory=ScaleConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)

    @model_validator(mode="after")
    def _global_batch_splits_over_workers(self) -> PretrainConfig:
        g, n = self.train.global_batch, self.scale.num_workers
        if self.train.batch_size == "auto" and g % n:
            raise ValueError(f"train.global_batch ({g}) must be divisible by scale.num_workers ({n}): "
                             f"every worker takes the same share")
        return self

    @model_validator(mode="after")
    def _fsdp_has_no_fp16(self) -> PretrainConfig:
        # fp16 needs loss scaling across shards, which this project does not wire up for FSDP.
        if self.scale.strategy == "fsdp" and self.train.precision == "fp16":
            raise ValueError("scale.strategy=fsdp runs in bf16 or fp32, not train.precision=fp16; "
                             "use bf16, or deepspeed_zero2/3 (their own loss scaling) on GPUs without bf16")
        return self


# --------------------------------------------------------------------------- loading


def parse_overrides(overrides: list[str]) -> dict:
    """Turn ['train.lr=3e-4', 'model.arch=llama'] into a nested dict.

    Values are parsed as YAML scalars, so numbers, booleans, null and [lists] work.
    """
    out: dict = {}
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key or not re.fullmatch(r"[A-Za-z_][\w]*(\.[A-Za-z_][\w]*)*", key):
            raise UserError(f"bad override {item!r}: expected dotted.key=value")
        try:
            value = yaml.safe_load(raw) if raw != "" else ""
        except yaml.YAMLError:
            value = raw
        node = out
        *parents, leaf = key.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise UserError(f"bad override {item!r}: {part} is not a section")
        node[leaf] = value
    return out


def deep_merge(base: dict, top: dict) -> dict:
    """Recursively merge `top` over `base` (neither is modified)."""
    out = dict(base)
    for k, v in top.items():
        out[k] = deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def read_yaml(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"config file not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark else ""
        raise UserError(f"config file {path} is not valid YAML{where}") from None
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping at the top level")
    return data


def validate(schema: type[BaseModel], data: dict, source: str = "config"):
    """Validate `data` against `schema`, turning pydantic's report into one line naming the key."""
    try:
        return schema.model_validate(data)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] in ("extra_forbidden", "unexpected_keyword_argument") \
            else err["msg"].removeprefix("Value error, ")  # our validators' messages, as they wrote them
        more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
        if not key:  # a check across keys: its message starts with the key it is about
            raise UserError(f"{source}: {msg}{more}") from None
        raise UserError(f"{source}: {key}: {msg}{more}") from None


def load_config(path: str | Path | None, overrides: list[str] = (), schema: type[BaseModel] = PretrainConfig):
    """Code defaults <- YAML file <- dotted overrides, validated against `schema`."""
    data = read_yaml(path) if path else {}
    data = deep_merge(data, parse_overrides(list(overrides)))
    return validate(schema, data, source=str(path) if path else "config")


def dump_config(cfg: BaseModel) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", s).strip("-").lower() or "x"
