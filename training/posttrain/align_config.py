"""The alignment run config (reward model, DPO, GRPO): one schema, YAML files in `configs/align/`.

Same layering as SFT (training/posttrain/config.py): code defaults <- the YAML file <- dotted
`key=value` overrides; unknown keys and wrong types are errors naming the key.

    playground reward --config configs/align/reward.yaml
    playground dpo    --config configs/align/dpo.yaml dpo.beta=0.05 dpo.loss_type=ipo
    playground grpo   --config configs/align/grpo.yaml reward_model=<reward run id>
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from training.config import TrackingConfig, _Strict
from training.posttrain.config import BaseModelConfig, LoraConfig, SFTScaleConfig, SnapshotDataConfig

ALIGN_METHODS = ("reward", "dpo", "grpo")


class PreferenceDataConfig(SnapshotDataConfig):
    """Preference pairs (prompt, chosen, rejected): made by the project, local files, or a Hugging
    Face dataset; always read through a versioned snapshot (training/posttrain/preferences.py)."""

    sources: list[str] = Field(
        default_factory=lambda: ["preferences"],
        description="'preferences' (made offline from the starter world, with held-out splits), local .jsonl "
                    "files of prompt/chosen/rejected rows, 'hf:NAME[:CONFIG][@SPLIT]' (e.g. "
                    "hf:HuggingFaceH4/ultrafeedback_binarized@train_prefs), or 'snapshot:ID'")
    n_train: int = Field(2000, gt=0, description="generated training pairs (the 'preferences' source)")
    n_val: int = Field(100, gt=0, description="generated validation pairs")
    n_test: int = Field(100, gt=0, description="generated pairs in each held-out split")


class DPOOptions(_Strict):
    """Direct preference optimisation: raise the policy's log-likelihood ratio (against the frozen
    reference) of the chosen reply over the rejected one, with no reward model and no sampling."""

    beta: float = Field(0.1, gt=0.0, description="how far the policy may move from the reference: the smaller, "
                                                 "the further (the KL penalty's inverse temperature)")
    loss_type: Literal["sigmoid", "ipo", "hinge"] = Field(
        "sigmoid", description="sigmoid: the DPO paper's -log sigmoid(beta * margin); ipo: squared distance of the "
                               "margin to 1/(2 beta), which does not push margins to infinity; hinge: "
                               "max(0, 1 - beta * margin), as in SLiC")
    sft_weight: float = Field(
        0.0, ge=0.0, description="weight of an SFT loss (the chosen reply's negative log-likelihood) added to the "
                                 "preference loss, as in RPO: DPO alone may lower the chosen reply's likelihood too, "
                                 "as long as the rejected one falls faster; this holds it up (0: plain DPO)")


class GRPOOptions(_Strict):
    """Group relative policy optimisation: sample a group of replies per prompt, score each with the
    reward model, and push up the replies that beat their group's mean (no value network)."""

    num_generations: int = Field(4, ge=2, description="replies sampled per prompt: the group")
    max_completion_length: int = Field(24, gt=0, description="tokens per sampled reply")
    beta: float = Field(0.04, ge=0.0, description="weight of the KL penalty to the reference (0: no reference)")
    temperature: float = Field(1.0, gt=0.0, description="sampling temperature of the replies")


class AlignTrainConfig(_Strict):
    """The loop (a TRL trainer, i.e. a transformers Trainer)."""

    max_steps: int = Field(60, gt=0)
    batch_size: int = Field(16, gt=0, description="pairs (reward, dpo) or prompts x num_generations (grpo) per "
                                                  "micro-batch per worker")
    grad_accum: int = Field(1, gt=0)
    lr: float = Field(5e-5, gt=0)
    schedule: Literal["cosine", "linear", "constant", "constant_with_warmup"] = "cosine"
    warmup_steps: int = Field(5, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    max_length: int | None = Field(
        None, gt=0, description="tokens of prompt + reply; longer pairs are left out (and counted). Default: the "
                                "model's context length, at most 1024")
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    seed: int = 1337
    log_interval: int = Field(5, gt=0)
    eval_interval: int = Field(20, gt=0, description="steps between evaluations (held-out pairs, KL, answers)")
    checkpoint_interval: int = Field(100, gt=0)
    keep_checkpoints: int = Field(1, gt=0)
    eval_prompts: int = Field(3, ge=0, description="held-out questions answered at every evaluation")
    kl_prompts: int = Field(16, ge=0, description="held-out prompt + chosen sequences on which KL(policy || "
                                                 "reference) is measured at every evaluation")
    eval_pairs: int = Field(100, ge=0, description="held-out pairs scored at the end")
    eval_examples: int = Field(100, ge=0, description="SFT held-out questions scored before and after (the "
                                                     "alignment tax)")


class AlignConfig(_Strict):
    """One alignment run: a reward model, a DPO policy or a GRPO policy, from an SFT model."""

    run_name: str | None = Field(None, description="run id; default '<method>-<config name>-<timestamp>'")
    method: Literal["reward", "dpo", "grpo"] = Field(
        ..., description="reward: a sequence classifier that scores replies (TRL RewardTrainer); dpo: the policy "
                         "learns from pairs directly (DPOTrainer); grpo: the policy samples, the reward model "
                         "scores, the policy follows the reward (GRPOTrainer)")
    base: BaseModelConfig
    reward_model: str | None = Field(
        None, description="grpo: the reward model (a workspace model id from `playground reward`, or a folder); "
                          "it must share the policy's tokenizer")
    adapter: Literal["full", "lora"] = Field("full", description="full: every weight trains; lora: adapters on a "
                                                                "frozen base (the reference is the base itself)")
    data: PreferenceDataConfig = Field(default_factory=PreferenceDataConfig)
    dpo: DPOOptions = Field(default_factory=DPOOptions)
    grpo: GRPOOptions = Field(default_factory=GRPOOptions)
    lora: LoraConfig = Field(default_factory=LoraConfig)
    train: AlignTrainConfig = Field(default_factory=AlignTrainConfig)
    scale: SFTScaleConfig = Field(default_factory=SFTScaleConfig)
    tracking: TrackingConfig = Field(default_factory=lambda: TrackingConfig(experiment="align"))

    @model_validator(mode="after")
    def _grpo_needs_reward_model(self) -> AlignConfig:
        if self.method == "grpo" and not self.reward_model:
            raise ValueError("reward_model: grpo needs a reward model to score its replies (train one with "
                             "`playground reward`, then pass reward_model=<its model id>)")
        return self
