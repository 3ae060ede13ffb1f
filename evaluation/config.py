"""The evaluation config: which models, on which tasks, through which backend. YAML in `configs/eval/`.

Same layering as the training configs (training/config.py): code defaults <- the YAML file <- dotted
`key=value` overrides; an unknown key or a wrong type is an error naming the key.

    playground eval --config configs/eval/world.yaml models=[demo-20261203-101549] limit=50
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from training.config import _Strict

BACKENDS = ("served", "served-chat", "hf")


class EvalConfig(_Strict):
    """One evaluation: every model on every task, with lm-evaluation-harness."""

    name: str | None = Field(None, description="a name for the record (default: eval-<timestamp>)")
    models: list[str] = Field(
        ..., description="workspace model ids (workspace/models/<id>); with backend hf also local Hugging Face "
                         "folders, or Hub names when online")
    tasks: list[str] = Field(
        default_factory=lambda: ["world"],
        description="suites (world, world_facts, world_arithmetic, world_stories, world_instructions, mmlu, "
                    "mmlu_<category>, mmlu_<subject>, humaneval); lm-eval's own hellaswag, truthfulqa_mc1, "
                    "truthfulqa_mc2, truthfulqa_gen, arc_easy, arc_challenge, gsm8k, which read the Hugging Face "
                    "Hub (online only), each also as <name>_sample over a few local hand-written rows; and custom "
                    "benchmarks (`playground benchmark add`); GET /api/eval-tasks lists them")
    backend: Literal["served", "served-chat", "hf"] = Field(
        "served", description="served: lm-eval's local-completions against the model served on `endpoint` "
                              "(log-likelihoods from prompt logprobs, and generation); served-chat: lm-eval's "
                              "local-chat-completions against its /chat/completions (generation tasks only: the "
                              "server applies the chat template); hf: lm-eval's hf backend, in-process on the "
                              "model's folder")
    endpoint: str = Field("http://127.0.0.1:8000/v1", description="the OpenAI-compatible endpoint (served, "
                                                                   "served-chat); PLAYGROUND_API_KEY, when set, is "
                                                                   "sent as its bearer token")
    limit: int | None = Field(None, gt=0, description="at most this many items of each task (default: all)")
    num_fewshot: int | None = Field(None, ge=0, description="examples put before each question (default: the "
                                                            "task's own, 0 for ours)")
    apply_chat_template: bool | None = Field(
        None, description="render prompts with the model's chat template; default: only for chat tasks "
                          "(world_instructions), and only when the model has a template")
    num_concurrent: int = Field(4, gt=0, description="requests in flight at once (served)")
    batch_size: int = Field(16, gt=0, description="hf: sequences per forward pass; served: prompts per request "
                                                  "(one /v1/completions call scores a list of prompts)")
    checkpoints: Literal["all"] | None = Field(
        None, description="all: `models` are runs (or models exported from one), and every checkpoint each run "
                          "kept is evaluated in-process (backend hf, the default then), as <run>@<step>: a score against training "
                          "step (GET /api/leaderboard/history)")
    seed: int = 1234

    @model_validator(mode="after")
    def _checkpoints_in_process(self):
        if self.checkpoints and "backend" not in self.model_fields_set:
            self.backend = "hf"  # checkpoints run in-process unless told otherwise, which is refused below
        if self.checkpoints and self.backend != "hf":
            raise ValueError("checkpoints: checkpoints are not served; evaluate them with backend=hf")
        return self

    @field_validator("models", "tasks")
    @classmethod
    def _non_empty(cls, v: list[str]) -> list[str]:
        v = [s.strip() for s in v if s and s.strip()]
        if not v:
            raise ValueError("needs at least one entry")
        return v
