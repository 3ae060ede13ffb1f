"""The SFT run config: one typed schema here, YAML files in `configs/sft/` as data.

Same layering as pretraining (training/config.py): code defaults <- the YAML file <-
dotted `key=value` overrides; unknown keys and wrong types are errors naming the key.

    playground sft --config configs/sft/demo.yaml method=full train.lr=1e-4
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from training.config import TrackingConfig, _Strict

METHODS = ("full", "lora", "qlora")


class BaseModelConfig(_Strict):
    """The model to fine-tune and its tokenizer."""

    model: str = Field(
        ..., description="a workspace model id (a `playground export` or an earlier SFT run), a local Hugging Face "
                         "folder, or a Hub name when online (e.g. HuggingFaceTB/SmolLM2-135M)")
    tokenizer: str | None = Field(None, description="tokenizer folder or Hub name; default: the model's own")


class SnapshotDataConfig(_Strict):
    """What every post-training data config shares: sources read through a versioned snapshot, the
    sizes of the generated splits, the seed, the share of a file's rows put in val, a system message."""

    sources: list[str]
    n_train: int = Field(3000, gt=0, description="generated training examples (the generated source)")
    n_val: int = Field(200, gt=0, description="generated validation examples")
    n_test: int = Field(200, gt=0, description="generated examples in each held-out split")
    seed: int = 0
    val_fraction: float = Field(0.05, gt=0.0, lt=0.5, description="share of a user file's rows put in val")
    system: str | None = Field(None, description="a system message put before every example")

    @field_validator("sources")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("needs at least one source")
        return v


class SFTDataConfig(SnapshotDataConfig):
    """Instruction data: made by the project, local files, or a Hugging Face dataset; always read
    through a versioned snapshot in workspace/datasets (training/posttrain/sft_data.py)."""

    sources: list[str] = Field(
        default_factory=lambda: ["instructions"],
        description="'instructions' (made offline from the starter world, with held-out splits), local .jsonl "
                    "files in the Alpaca, messages or ShareGPT shape, 'hf:NAME[:CONFIG][@SPLIT]' (e.g. "
                    "hf:tatsu-lab/alpaca), or 'snapshot:ID'")
    replay: float = Field(
        0.0, ge=0.0, le=4.0,
        description="replay: pieces of the base model's own pretraining text mixed into the training rows, as "
                    "a share of them (0.25: one piece per four instructions); 0 = off. Needs a base pretrained "
                    "here (its lineage names the corpus snapshot)")
    replay_tokens: int = Field(32, ge=8, le=1024, description="tokens in each replayed piece (all of them train)")
    shape: Literal["messages", "alpaca"] = Field(
        "messages", description="messages: chat rows, loss on the assistant turns only; alpaca: prompt/completion "
                                "rows, loss on the completion only. Both go through the chat template")


class LoraConfig(_Strict):
    """LoRA: train two small matrices B·A (rank r) beside each targeted weight, which stays frozen."""

    r: int = Field(16, gt=0, description="rank of the update B·A")
    alpha: int = Field(32, gt=0, description="the update is scaled by alpha / r")
    dropout: float = Field(0.05, ge=0.0, lt=1.0)
    target_modules: list[str] | Literal["all-linear"] = Field(
        "all-linear", description="module names to adapt (e.g. [c_attn, c_proj] for GPT-2, [q_proj, v_proj] for "
                                  "Llama), or all-linear: every linear layer but the output head")
    use_dora: bool = Field(False, description="DoRA: also learn each weight column's magnitude")
    trainable_tokens: list[str] = Field(
        default_factory=list,
        description="tokens whose embedding rows train beside the adapters (peft's trainable_token_indices), e.g. "
                    "['<|im_start|>', '<|im_end|>']: tokens the base never saw in pretraining, like our own models' "
                    "chat tokens, which LoRA would otherwise leave as initialised. With tied input and output "
                    "embeddings (GPT-2 layout) their output rows train too")


class SFTTrainConfig(_Strict):
    """The loop (TRL's SFTTrainer, i.e. a transformers Trainer)."""

    max_steps: int = Field(300, gt=0)
    batch_size: int = Field(16, gt=0, description="sequences per micro-batch per worker")
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(2e-4, gt=0)
    schedule: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_steps: int = Field(10, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    neftune_noise_alpha: float | None = Field(
        None, gt=0, description="NEFTune (Jain et al. 2023): uniform noise of size alpha/sqrt(tokens x width) "
                                "added to the input embeddings while training, never at inference; 5 is the "
                                "paper's usual value. Off by default")
    max_length: int | None = Field(
        None, gt=0, description="tokens per example; longer ones are left out (and counted) rather than cut "
                                "mid-answer. Default: the model's context length, at most 1024")
    grad_checkpointing: bool = False
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="auto: bf16 where it is fast (a GPU that has it, a CPU with AVX512-BF16 or AMX), "
                       "else fp32")
    seed: int = 1337
    log_interval: int = Field(10, gt=0)
    eval_interval: int = Field(50, gt=0, description="steps between evaluations (val loss + held-out answers)")
    checkpoint_interval: int = Field(100, gt=0)
    keep_checkpoints: int = Field(2, gt=0)
    eval_prompts: int = Field(4, ge=0, description="held-out questions answered at every evaluation")
    eval_examples: int = Field(100, ge=0, description="held-out examples scored at the end (exact match)")


class SFTScaleConfig(_Strict):
    """How Ray Train runs it: N workers, each a full copy of the model (DDP), each its share of the data."""

    num_workers: int = Field(1, gt=0)
    threads_per_worker: int = Field(2, gt=0, description="torch intra-op threads (and Ray CPUs) per worker")
    use_gpu: bool = False
    max_failures: int = Field(0, ge=0, description="times Ray Train restarts the workers after one dies")


class SFTConfig(_Strict):
    """One supervised fine-tuning run."""

    run_name: str | None = Field(None, description="run id; default 'sft-<config name>-<timestamp>'")
    base: BaseModelConfig
    method: Literal["full", "lora", "qlora"] = Field(
        "lora", description="full: every weight trains; lora: low-rank adapters on a frozen base; qlora: the same "
                            "on a base loaded in 4-bit NF4 (bitsandbytes)")
    data: SFTDataConfig = Field(default_factory=SFTDataConfig)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    train: SFTTrainConfig = Field(default_factory=SFTTrainConfig)
    scale: SFTScaleConfig = Field(default_factory=SFTScaleConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="sft"))

    @model_validator(mode="after")
    def _fp16_needs_gpu(self) -> SFTConfig:
        if self.train.precision == "fp16" and not self.scale.use_gpu:
            raise ValueError("train.precision=fp16 needs scale.use_gpu=true; on CPU use fp32, bf16 or auto")
        return self
