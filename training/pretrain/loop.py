"""The training loop's pure parts: learning-rate schedule, optimizer, one step, evaluation.

Nothing here knows about Ray. The recipe (`training/pretrain/pretrain.py`) and the benchmark's
plain loop call exactly these functions, so what the tests pin here is what runs on
the cluster.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterable

import torch
from torch import nn

from training.config import TrainConfig

# ----------------------------------------------------------------- learning rate


def get_lr(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to `lr`, then decay to `min_lr` at `max_steps`.

    Warmup matters because Adam's second-moment estimates are noisy for the first
    few hundred steps; a full-size step on top of them can knock the model into a
    bad region it never leaves. The decay then lets the weights settle into the
    minimum instead of bouncing around it.
    """
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    if cfg.schedule == "constant":
        return cfg.lr
    span = max(1, cfg.max_steps - cfg.warmup_steps)
    progress = min(1.0, (step - cfg.warmup_steps) / span)
    if cfg.schedule == "cosine":
        coeff = 0.5 * (1.0 + math.cos(math.pi * progress))  # 1 -> 0 along half a cosine
    else:  # linear
        coeff = 1.0 - progress
    return cfg.min_lr + coeff * (cfg.lr - cfg.min_lr)


# ----------------------------------------------------------------- optimizer


def build_optimizer(model: nn.Module, cfg: TrainConfig, device_type: str = "cpu") -> torch.optim.AdamW:
    """AdamW with two parameter groups.

    Weight decay pulls weights towards zero. It makes sense for the big matrices
    (embeddings, projections) but not for biases and norm gains, whose job is to
    shift and scale: decaying those only fights the model. The rule used by GPT-2,
    nanoGPT and most LLM codebases: decay every tensor with 2 or more dimensions.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    # The fused kernel is one launch for all parameters on GPU; foreach batches on CPU.
    kwargs = {"fused": True} if device_type == "cuda" else {"foreach": True}
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), **kwargs)


# ----------------------------------------------------------------- precision


def resolve_precision(precision: str, device_type: str) -> str:
    """Turn 'auto' into the concrete choice for this device."""
    if precision != "auto":
        if precision == "fp16" and device_type != "cuda":
            raise ValueError("train.precision=fp16 needs a GPU; use bf16 or fp32 on CPU")
        return precision
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"


def autocast_factory(precision: str, device_type: str) -> Callable[[], contextlib.AbstractContextManager]:
    """A zero-argument factory of autocast contexts.

    Mixed precision keeps the master weights and the optimizer in fp32 but runs the
    matmuls in 16-bit, which is where the time goes. bf16 has fp32's exponent range,
    so it needs no loss scaling; fp16 does (see `make_scaler`).
    """
    if precision == "fp32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device_type, dtype=dtype)


def make_scaler(precision: str, device_type: str) -> torch.amp.GradScaler | None:
    """fp16 gradients underflow to zero; GradScaler multiplies the loss up before
    backward and divides the gradients back down before the optimizer step."""
    if precision == "fp16":
        return torch.amp.GradScaler(device_type)
    return None


# ----------------------------------------------------------------- one step


def train_step(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    micro_batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    lr: float,
    grad_clip: float,
    autocast=contextlib.nullcontext,
    scaler: torch.amp.GradScaler | None = None,
) -> dict[str, float]:
    """One optimizer step over `grad_accum` micro-batches.

    Gradient accumulation: the gradients of several small batches add up in `.grad`
    before one optimizer step, which is the same update as one big batch, in less
    memory. Each micro-batch loss is divided by their number so the sum is a mean.
    Under DDP the all-reduce is skipped (`no_sync`) for all but the last micro-batch:
    averaging across workers once per step is enough.

    Returns:
        {"loss": mean training loss over the micro-batches, "grad_norm": the global
        gradient norm before clipping}.
    """
    micro_batches = list(micro_batches)
    n = len(micro_batches)
    for group in optimizer.param_groups:
        group["lr"] = lr
    total = 0.0
    for i, (x, y) in enumerate(micro_batches):
        sync = i == n - 1 or not hasattr(model, "no_sync")
        with (contextlib.nullcontext() if sync else model.no_sync()):
            with autocast():
                _, loss = model(x, y)
            loss = loss / n
            (scaler.scale(loss) if scaler else loss).backward()
        total += loss.item()
    if scaler:
        scaler.unscale_(optimizer)  # clip the true gradients, not the scaled ones
    # clip_grad_norm_ with max_norm=inf measures without clipping.
    max_norm = grad_clip if grad_clip > 0 else float("inf")
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm).item()
    if scaler:
        scaler.step(optimizer)
        scaler.update()
    else:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return {"loss": total, "grad_norm": grad_norm}


@torch.no_grad()
def evaluate(model: nn.Module, batches, autocast=contextlib.nullcontext) -> dict[str, float]:
    """Mean loss over fixed validation batches, and its perplexity.

    Perplexity = exp(loss): the number of equally likely tokens the model is, on
    average, choosing between. A uniform guess over a 4096-token vocabulary scores
    4096; a model that has learned something scores far lower.
    """
    was_training = model.training
    model.eval()
    losses = []
    for x, y in batches:
        with autocast():
            _, loss = model(x, y)
        losses.append(loss.float().item())
    model.train(was_training)
    val_loss = sum(losses) / len(losses)
    return {"val_loss": val_loss, "perplexity": math.exp(min(val_loss, 50.0))}


@torch.no_grad()
def generate_samples(model, tokenizer, prompts: list[str], max_new_tokens: int, *, seed: int = 0,
                     temperature: float = 0.8, top_k: int | None = 50, device="cpu") -> list[dict]:
    """Continue each prompt with the model; returns [{"prompt", "text"}]."""
    was_training = model.training
    model.eval()
    gen = torch.Generator(device=device).manual_seed(seed)
    out = []
    for prompt in prompts:
        # Keep the prompt's tail so prompt + continuation fit the context window.
        keep = max(1, model.config.block_size - max_new_tokens)
        ids = (tokenizer.encode(prompt) or [tokenizer.eos_token_id])[-keep:]
        idx = torch.tensor([ids], dtype=torch.long, device=device)
        seq = model.generate(idx, max_new_tokens, temperature=temperature, top_k=top_k,
                             eos_token_id=tokenizer.eos_token_id, generator=gen)
        text = tokenizer.decode(seq[0, len(ids):].tolist(), skip_special_tokens=True)
        out.append({"prompt": prompt, "text": text})
    model.train(was_training)
    return out
