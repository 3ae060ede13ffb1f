"""Everything an alignment worker does that is not Ray: the TRL trainer of each method, the rows
it trains on, and what it records while it trains.

    reward  TRL's RewardTrainer: a sequence classifier (the SFT model with a one-number head)
            learns r(prompt, reply) so that r(chosen) > r(rejected) (a Bradley-Terry loss).
    dpo     TRL's DPOTrainer: the policy learns from the pairs directly, against a frozen
            reference (the SFT model): no reward model, no sampling.
    grpo    TRL's GRPOTrainer: the policy samples a group of replies per prompt, the reward
            model scores them, and replies better than their group's mean are made likelier.

The recipe (training/posttrain/align.py) runs these inside Ray Train workers.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from training.errors import UserError
from training.posttrain import adapters, align_eval, answers, chat, kl, preferences, sft_setup
from training.posttrain.align_config import AlignConfig
from training.pretrain.loop import resolve_precision
from training.workspace import Workspace


def load_tokenizer(path: str, field: str = "base.tokenizer"):
    """A policy's (or reward model's) tokenizer with the chat template the pairs go through."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise UserError(f"{field}: cannot load {path!r}: {str(e).splitlines()[0]}") from e
    return chat.prepare_tokenizer(tok, need_markers=False, source=field)


def fit_pairs(rows: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """The rows whose prompt + longer reply fit `max_length` tokens, and how many did not (a cut
    reply would teach the model about a reply nobody wrote)."""
    def longest(row):
        return max(sft_setup.token_count(tokenizer, {"messages": row["prompt"] + row[k]}) for k in ("chosen", "rejected"))

    kept = [r for r in rows if longest(r) <= max_length]
    return kept, len(rows) - len(kept)


def heldout_pairs(splits: dict[str, list[dict]], n: int, tokenizer, max_length: int,
                  system: str | None = None) -> list[dict]:
    """Up to `n` held-out pairs that fit `max_length` tokens, half by template and half by entity
    (val when a file had no held-out splits)."""
    held = [splits.get("heldout_template", []), splits.get("heldout_entity", [])]
    if not any(held):
        held = [splits.get("val", [])]
    fit = [[p for p in part if fit_pairs(preferences.to_rows([p], system), tokenizer, max_length)[0]]
           for part in held]
    per = max(1, n // len(fit))
    return [p for part in fit for p in part[:per]][:n]


def grpo_prompts(pairs: list[dict], tokenizer, room: int, system: str | None = None) -> list[dict]:
    """GRPO's rows ({"prompt": messages}) whose prompt, through the chat template, leaves `room`
    tokens (max_length - max_completion_length) for the sampled reply and the template's closing
    tokens: the reward model reads the whole conversation, and must not run past the context."""
    def ids(messages, **kw):
        return tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True, **kw)["input_ids"]

    rows = preferences.prompts(pairs, system)
    if not rows:
        return []
    probe = rows[0]["prompt"]  # what the template adds around a reply, beyond the generation prompt
    closing = len(ids(probe + [{"role": "assistant", "content": ""}])) - len(ids(probe, add_generation_prompt=True))
    return [r for r in rows if len(ids(r["prompt"], add_generation_prompt=True)) + max(closing, 0) <= room]


# --------------------------------------------------------------------------- the trainers


def _common(cfg: AlignConfig, paths: dict, device_type: str, has_eval: bool) -> dict:
    """The transformers TrainingArguments every method shares."""
    tc = cfg.train
    prec = resolve_precision(tc.precision, device_type)
    return dict(
        output_dir=str(Path(paths["run_dir"]) / "checkpoints"),
        per_device_train_batch_size=tc.batch_size, per_device_eval_batch_size=tc.batch_size,
        gradient_accumulation_steps=tc.grad_accum, max_steps=tc.max_steps, learning_rate=tc.lr,
        lr_scheduler_type=tc.schedule, warmup_steps=tc.warmup_steps, weight_decay=tc.weight_decay,
        seed=tc.seed, data_seed=tc.seed, logging_steps=tc.log_interval,
        eval_strategy="steps" if has_eval else "no", eval_steps=tc.eval_interval,
        save_strategy="steps", save_steps=tc.checkpoint_interval, save_total_limit=tc.keep_checkpoints,
        bf16=prec == "bf16", use_cpu=device_type == "cpu",
        # Inside Ray Train the process group already exists (gloo on CPU, nccl on GPU).
        ddp_backend=("nccl" if device_type == "cuda" else "gloo") if torch.distributed.is_initialized() else None,
        ddp_find_unused_parameters=False, report_to="none", disable_tqdm=True, dataloader_num_workers=0,
    )


def reward_model(path: str, tokenizer, dtype=torch.float32):
    """A causal LM's folder loaded as a sequence classifier with one output (its score head new)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # "score.weight newly initialized": that is the point
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=dtype)
    finally:
        hf_logging.set_verbosity(verbosity)
    model.config.pad_token_id = tokenizer.pad_token_id  # the head reads the last token before padding
    return model


def build_trainer(cfg: AlignConfig, paths: dict, device, *, rank: int, tracker=None):
    """Model(s), tokenizer, rows and the method's TRL trainer: the same on every worker."""
    import datasets
    from datasets import Dataset
    from transformers import AutoModelForCausalLM

    datasets.disable_progress_bars()
    tokenizer = load_tokenizer(paths["tokenizer_path"])
    splits = preferences.load(Workspace(Path(paths["ws_root"])), paths["snapshot"])
    train, _ = fit_pairs(preferences.to_rows(splits["train"], cfg.data.system), tokenizer, paths["max_length"])
    val, _ = fit_pairs(preferences.to_rows(splits.get("val", [])[:200], cfg.data.system), tokenizer,
                       paths["max_length"])
    common = _common(cfg, paths, device.type, has_eval=bool(val))
    callback = AlignMetrics(tracker if rank == 0 else None, cfg, paths, tokenizer)
    if cfg.method == "reward":
        from trl import RewardConfig, RewardTrainer

        model = reward_model(paths["base_path"], tokenizer)
        args = RewardConfig(**common, max_length=paths["max_length"], pad_token=tokenizer.pad_token)
        trainer = RewardTrainer(model=model, args=args, train_dataset=Dataset.from_list(train),
                                eval_dataset=Dataset.from_list(val) if val else None, processing_class=tokenizer,
                                callbacks=[callback])
        return trainer, tokenizer

    policy = adapters.apply(AutoModelForCausalLM.from_pretrained(paths["base_path"]), cfg.adapter, cfg.lora,
                            adapters.token_ids(tokenizer, cfg.lora.trainable_tokens))
    if cfg.method == "dpo":
        from trl import DPOConfig, DPOTrainer

        d = cfg.dpo
        losses = {d.loss_type: 1.0, **({"sft": d.sft_weight} if d.sft_weight else {})}
        args = DPOConfig(**common, beta=d.beta, loss_type=list(losses), loss_weights=list(losses.values()),
                         max_length=paths["max_length"], pad_token=tokenizer.pad_token)
        # Full fine-tuning: TRL copies the starting model as the frozen reference. LoRA: the reference is
        # the same model with its adapters switched off (no second copy).
        trainer = DPOTrainer(model=policy, args=args, train_dataset=Dataset.from_list(train),
                             eval_dataset=Dataset.from_list(val) if val else None, processing_class=tokenizer,
                             callbacks=[callback])
        return trainer, tokenizer

    from trl import GRPOConfig, GRPOTrainer

    g = cfg.grpo
    rm_tokenizer = load_tokenizer(paths["reward_path"], "reward_model")
    scorer = reward_model(paths["reward_path"], rm_tokenizer)
    args = GRPOConfig(**common, num_generations=g.num_generations, max_completion_length=g.max_completion_length,
                      beta=g.beta, temperature=g.temperature, log_completions=False)
    room = paths["max_length"] - g.max_completion_length  # a prompt must leave room for the sampled reply
    prompts = lambda rows: Dataset.from_list(grpo_prompts(rows, tokenizer, room, cfg.data.system))  # noqa: E731
    trainer = GRPOTrainer(model=policy, reward_funcs=scorer, args=args, train_dataset=prompts(splits["train"]),
                          eval_dataset=prompts(splits.get("val", [])[:64]) if val else None,
                          processing_class=tokenizer, reward_processing_classes=rm_tokenizer, callbacks=[callback])
    return trainer, tokenizer


# --------------------------------------------------------------------------- what a learner watches

# TRL's log names -> the Runs page's. Evaluation logs come as eval_<name> and become val_<ours>.
METRIC_NAMES = {
    "loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "num_tokens": "tokens_seen",
    # reward model: share of pairs scored the right way round, and r(chosen) - r(rejected)
    "accuracy": "pair_accuracy", "margin": "margin", "mean_reward": "mean_reward",
    # DPO: beta * log(pi / ref) of each reply (the implicit rewards), their difference, its sign
    "rewards/chosen": "rewards_chosen", "rewards/rejected": "rewards_rejected", "rewards/margins": "margin",
    "rewards/accuracies": "pair_accuracy",
    # GRPO: the reward model's mean score of the sampled replies and its spread; TRL's own KL estimate
    "reward": "reward", "reward_std": "reward_std", "kl": "grpo_kl", "completions/mean_length": "reply_length",
}


def metric_row(logs: dict) -> dict:
    """A Trainer log under the Runs page's names (unknown keys dropped)."""
    row = {}
    for key, value in logs.items():
        prefix = "val_" if key.startswith("eval_") else ""
        name = METRIC_NAMES.get(key[5:] if prefix else key)
        if name is not None and isinstance(value, (int, float)):
            row["val_loss" if prefix and name == "loss" else prefix + name] = float(value)
    return row


class AlignMetrics(TrainerCallback):
    """Rank 0's record of every log (metrics.jsonl, MLflow), and at every evaluation, for a policy,
    the measured KL(policy || reference) per token on fixed held-out sequences and the same
    held-out questions answered again; for a reward model, its scores of a few held-out pairs."""

    def __init__(self, tracker, cfg: AlignConfig, paths: dict, tokenizer):
        self.tracker, self.cfg, self.paths, self.tokenizer = tracker, cfg, paths, tokenizer
        self.reference = None
        self.last = (time.perf_counter(), 0.0)

    def _reference(self):
        if self.reference is None:
            from transformers import AutoModelForCausalLM

            self.reference = AutoModelForCausalLM.from_pretrained(self.paths["base_path"]).eval()
        return self.reference

    def on_log(self, args, state, control, logs=None, model=None, **kw):
        if not state.is_world_process_zero or self.tracker is None or not logs or "train_runtime" in logs:
            return
        row = {"step": state.global_step, **metric_row(logs)}
        if "tokens_seen" in row and "loss" in row:
            now, seen = time.perf_counter(), row["tokens_seen"]
            row["tokens_per_s"] = (seen - self.last[1]) / max(now - self.last[0], 1e-9)
            self.last = (now, seen)
        if any(k.startswith("eval_") for k in logs) and model is not None:
            row.update(self.evaluate(sft_setup.unwrap(model)))
        row["memory_mb"] = sft_setup._memory_mb()
        self.tracker.log(row)
        print(sft_setup.progress(row, self.cfg.train.max_steps, PROGRESS_KEYS), flush=True)

    def evaluate(self, model) -> dict:
        """KL to the reference and replies (a policy), or scored pairs (a reward model)."""
        paths, out = self.paths, {}
        was_training = model.training
        if self.cfg.method == "reward":
            pairs = paths["eval_pairs"]
            if pairs:
                rows = preferences.to_rows(pairs, self.cfg.data.system)
                chosen, rejected, _ = align_eval._pairs(self.tokenizer, rows)
                rc = align_eval.rewards(model, self.tokenizer, chosen).tolist()
                rr = align_eval.rewards(model, self.tokenizer, rejected).tolist()
                out["samples"] = [{"prompt": _question(p), "text": f"r(chosen) {c:+.2f}  vs  r(rejected) {r:+.2f}"
                                   f"  ({'right' if c > r else 'wrong'} way round)\nchosen:   {p['chosen']}\n"
                                   f"rejected: {p['rejected']}"} for p, c, r in zip(pairs, rc, rr)]
        else:
            seqs = kl.sequences(self.tokenizer, preferences.to_rows(paths["kl_pairs"], self.cfg.data.system))
            if seqs:
                out["kl"] = kl.measure(model, self._reference(), seqs, pad_id=self.tokenizer.pad_token_id or 0)
            if paths["eval_pairs"]:
                questions = [p | {"output": p["chosen"]} for p in paths["eval_pairs"]]
                replies = answers.answer(model, self.tokenizer, questions, system=self.cfg.data.system,
                                         max_new_tokens=32)
                out["samples"] = [{"prompt": _question(p), "text": r} for p, r in zip(paths["eval_pairs"], replies)]
        model.train(was_training)
        return out


def _question(ex: dict) -> str:
    return ex["instruction"] + (f"\n\n{ex['input']}" if ex.get("input") else "")


PROGRESS_KEYS = tuple((key, ".4f") for key in ("loss", "pair_accuracy", "margin", "reward", "reward_std", "val_loss",
                                                "val_pair_accuracy", "val_margin", "val_reward", "kl"))


def lineage(cfg: AlignConfig, paths: dict) -> dict:
    """What an aligned model came from: its SFT parent, the preference snapshot, the method and beta."""
    out = {"kind": cfg.method, "method": cfg.method, "adapter": cfg.adapter, "base_model": cfg.base.model,
           "base_path": paths["base_path"], "parent_run": paths.get("parent_run"),
           "preference_snapshot": paths["snapshot"], "run_id": paths["run_id"]}
    if cfg.method == "dpo":
        out |= {"beta": cfg.dpo.beta, "loss_type": cfg.dpo.loss_type, "sft_weight": cfg.dpo.sft_weight}
    if cfg.method == "grpo":
        out |= {"beta": cfg.grpo.beta, "reward_model": cfg.reward_model, "num_generations": cfg.grpo.num_generations}
    return out
