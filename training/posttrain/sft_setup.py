"""Everything an SFT worker does that is not Ray: the TRL arguments, the rows it trains on,
what it records while it trains, and the model it leaves behind.

The recipe (training/posttrain/sft.py) runs these inside Ray Train workers; a plain
single-process run (`playground bench sft`'s baseline) calls the same functions.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import torch
from transformers import TrainerCallback

from training.atomic import atomic_dir
from training.errors import UserError
from training.posttrain import adapters, answers, chat, sft_data
from training.posttrain.config import SFTConfig
from training.pretrain.loop import resolve_precision


def load_tokenizer(paths: dict, cfg: SFTConfig):
    """The run's tokenizer, with a chat template fit for its loss (chat.prepare_tokenizer)."""
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(paths["tokenizer_path"])
    except (OSError, ValueError) as e:
        raise UserError(f"base.tokenizer: cannot load {paths['tokenizer_path']!r}: {str(e).splitlines()[0]}") from e
    return chat.prepare_tokenizer(tok, need_markers=cfg.data.shape == "messages",
                                  source="base.tokenizer" if cfg.base.tokenizer else "base.model (its tokenizer)")


def token_count(tokenizer, row: dict) -> int:
    """Tokens of one training row through the chat template, as TRL will tokenize it."""
    messages = row["messages"] if "messages" in row else row["prompt"] + row["completion"]
    return len(tokenizer.apply_chat_template(messages, tokenize=True, return_dict=True)["input_ids"])


def fit_rows(rows: list[dict], tokenizer, max_length: int) -> tuple[list[dict], int]:
    """The rows that fit `max_length` tokens, and how many did not.

    TRL would cut a long row at max_length, which cuts the answer (or its end token) off:
    the model would learn replies that stop mid-sentence, or do not stop. Leaving the row
    out, and saying how many were, is the honest choice.
    """
    kept = [r for r in rows if token_count(tokenizer, r) <= max_length]
    return kept, len(rows) - len(kept)


def max_length(cfg: SFTConfig, model_config) -> int:
    ctx = getattr(model_config, "n_positions", None) or getattr(model_config, "max_position_embeddings", None)
    limit = min(ctx or 1024, 1024)
    if cfg.train.max_length and ctx and cfg.train.max_length > ctx:
        raise UserError(f"train.max_length={cfg.train.max_length} is longer than the model's context ({ctx})")
    return cfg.train.max_length or limit


def check_tokenizer(tokenizer, model_config, where: str = "base.tokenizer") -> None:
    """A tokenizer whose ids run past the model's embedding table would index out of range."""
    rows = getattr(model_config, "vocab_size", None)
    if rows is not None and len(tokenizer) > rows:
        raise UserError(f"{where}: the tokenizer has {len(tokenizer):,} tokens but the model's embedding has "
                        f"{rows:,} rows: it is not this model's tokenizer")


def precision(cfg: SFTConfig, device_type: str) -> str:
    return resolve_precision(cfg.train.precision, device_type)


def trl_args(cfg: SFTConfig, paths: dict, device_type: str, *, max_len: int, has_eval: bool = True):
    """TRL's SFTConfig for this run."""
    from trl import SFTConfig as TRLConfig

    tc = cfg.train
    prec = precision(cfg, device_type)
    return TRLConfig(
        output_dir=str(Path(paths["run_dir"]) / "checkpoints"),
        per_device_train_batch_size=tc.batch_size, per_device_eval_batch_size=tc.batch_size,
        gradient_accumulation_steps=tc.grad_accum, max_steps=tc.max_steps, learning_rate=tc.lr,
        lr_scheduler_type=tc.schedule, warmup_steps=tc.warmup_steps, weight_decay=tc.weight_decay,
        neftune_noise_alpha=tc.neftune_noise_alpha, seed=tc.seed, data_seed=tc.seed,
        logging_steps=tc.log_interval, eval_strategy="steps" if has_eval else "no", eval_steps=tc.eval_interval,
        save_strategy="steps", save_steps=tc.checkpoint_interval, save_total_limit=tc.keep_checkpoints,
        bf16=prec == "bf16", fp16=prec == "fp16", use_cpu=device_type == "cpu",
        # Inside Ray Train the process group already exists (gloo on CPU, nccl on GPU); a plain run has none.
        ddp_backend=("nccl" if device_type == "cuda" else "gloo") if torch.distributed.is_initialized() else None,
        ddp_find_unused_parameters=False,
        # DDP + gradient checkpointing + LoRA: the reentrant variant marks parameters ready twice (trl #4782).
        gradient_checkpointing=tc.grad_checkpointing, gradient_checkpointing_kwargs={"use_reentrant": False},
        # With replay the rows come tokenized, with their own loss masks (training/posttrain/replay.py).
        max_length=max_len, assistant_only_loss=cfg.data.shape == "messages" and not cfg.data.replay,
        completion_only_loss=True if cfg.data.shape == "alpaca" and not cfg.data.replay else None,
        eos_token=paths.get("stop_token"), report_to="none", disable_tqdm=True,
        # Random batches. Grouping rows by length ("group_by_length") runs 2x faster on this data (less
        # padding) but each batch is then one kind of task, and the demo model learned far less per step
        # (loss 2.3 against 0.9 after 60 steps): docs/concepts/finetuning.md.
        dataloader_num_workers=0, remove_unused_columns=True, dataset_num_proc=None,
    )


def unwrap(model):
    return model.module if hasattr(model, "module") else model


# The Trainer's log names -> the names the Runs page (and pretraining) use.
METRIC_NAMES = {"loss": "loss", "learning_rate": "lr", "grad_norm": "grad_norm", "eval_loss": "val_loss",
                "mean_token_accuracy": "token_accuracy", "eval_mean_token_accuracy": "val_token_accuracy",
                "num_tokens": "tokens_seen"}


class LiveMetrics(TrainerCallback):
    """Rank 0's record of every log: metrics.jsonl (the Runs page), MLflow, and at every
    evaluation the same held-out questions answered again, so the replies visibly improve.

    Ray's `RayTrainReportCallback` reports only when a checkpoint is saved; this one runs on
    every `on_log`, which the Trainer calls on every rank with the same (reduced) numbers.
    """

    def __init__(self, tracker, tokenizer, prompts: list[dict], *, system: str | None, max_steps: int):
        self.tracker, self.tokenizer, self.prompts, self.system = tracker, tokenizer, prompts, system
        self.max_steps = max_steps
        self.last = (time.perf_counter(), 0.0)

    def on_log(self, args, state, control, logs=None, model=None, **kw):
        if not state.is_world_process_zero or self.tracker is None or not logs:
            return
        row: dict = {"step": state.global_step}
        row.update({ours: float(logs[theirs]) for theirs, ours in METRIC_NAMES.items() if theirs in logs})
        if "tokens_seen" in row and "loss" in row:
            now, seen = time.perf_counter(), row["tokens_seen"]
            row["tokens_per_s"] = (seen - self.last[1]) / max(now - self.last[0], 1e-9)
            self.last = (now, seen)
        if "val_loss" in row:
            row["perplexity"] = math.exp(min(row["val_loss"], 50.0))
            if self.prompts and model is not None:
                m = unwrap(model)
                replies = answers.answer(m, self.tokenizer, self.prompts, system=self.system, max_new_tokens=32)
                m.train()
                row["samples"] = [{"prompt": _question(ex), "text": r} for ex, r in zip(self.prompts, replies)]
        if "train_runtime" in logs:
            return  # the Trainer's closing summary: nothing new per step
        row["memory_mb"] = _memory_mb()
        self.tracker.log(row)
        print(progress(row, self.max_steps), flush=True)


def _question(ex: dict) -> str:
    return ex["instruction"] + (f"\n\n{ex['input']}" if ex.get("input") else "")


def _memory_mb() -> float:
    if torch.cuda.is_available():
        return torch.cuda.max_memory_allocated() / 1e6
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3


PROGRESS_KEYS = (("loss", ".4f"), ("lr", ".2e"), ("tokens_per_s", ",.0f"), ("val_loss", ".4f"))


def progress(m: dict, last: int, keys=PROGRESS_KEYS) -> str:
    """One log as a line (`keys`: (name, format) of the figures shown), then each sample's prompt and text."""
    parts = [f"step {m['step']:>5}/{last}"]
    for key, fmt in keys:
        if key in m:
            parts.append(f"{key} {m[key]:{fmt}}")
    line = "  ".join(parts)
    for s in m.get("samples", []):
        line += f"\n    {s['prompt'][:60]!r} -> {(s['text'].splitlines() or [''])[0][:80]!r}"
    return line


# --------------------------------------------------------------------------- the model left behind


def lineage(cfg: SFTConfig, paths: dict) -> dict:
    """What a tuned model came from: written into its playground.json and the run's run.json.
    With data.replay, `replay_snapshot` names the pretraining corpus replayed beside the instructions."""
    replayed = {"replay_snapshot": paths["replay_snapshot"]} if paths.get("replay_snapshot") else {}
    return {"kind": "sft", "method": cfg.method, "base_model": cfg.base.model, "base_path": paths["base_path"],
            "data_snapshot": paths["snapshot"], **replayed, "parent_run": paths.get("parent_run"),
            "run_id": paths["run_id"]}


def save_model(trainer, method: str, paths: dict, tokenizer, ws, lineage: dict) -> Path:
    """Write the deployable model to workspace/models/<run_id>, atomically, with its `lineage`
    in playground.json (SFT here; alignment's DPO and GRPO policies too).

    full: the trained weights. lora/qlora: the adapter goes to the run folder (adapter/)
    and is merged into the base loaded in 16/32 bits, never into the 4-bit one (a 4-bit
    base rounds the merged weights again: peft #2321).
    """
    run_dir, out = Path(paths["run_dir"]), ws.model(paths["run_id"])
    info = {**paths.get("base_info", {}), "run_id": paths["run_id"], "step": trainer.state.global_step,
            "val_loss": _last_eval(trainer), "lineage": lineage}
    extra = {"playground.json": json.dumps(info, indent=2)}
    stop_id = tokenizer.convert_tokens_to_ids(paths["stop_token"]) if paths.get("stop_token") else None
    eos_ids = sorted({i for i in (stop_id, tokenizer.eos_token_id) if i is not None})
    model = unwrap(trainer.model)
    if method == "full":
        with atomic_dir(out) as tmp:
            model.generation_config.eos_token_id = eos_ids
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            for name, text in extra.items():
                (tmp / name).write_text(text)
    else:
        with atomic_dir(run_dir / "adapter") as tmp:
            model.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
        adapters.merge(paths["base_path"], run_dir / "adapter", out, tokenizer=tokenizer, extra_files=extra,
                       eos_token_ids=eos_ids)
    from training.registry.card import try_write_card

    try_write_card(ws, out)  # README.md: the model card
    return out


def _last_eval(trainer) -> float | None:
    losses = [h["eval_loss"] for h in trainer.state.log_history if "eval_loss" in h]
    return losses[-1] if losses else None


def heldout(ws, paths: dict, cfg: SFTConfig, model, tokenizer) -> dict:
    """Exact-match accuracy of `model` on the snapshot's held-out splits (and val)."""
    splits = sft_data.load(ws, paths["snapshot"])
    n = cfg.train.eval_examples
    out = {}
    for name in ("heldout_template", "heldout_entity", "val"):
        if splits.get(name) and n:
            out[name] = answers.accuracy(model, tokenizer, splits[name][:n], system=cfg.data.system)
    return out
