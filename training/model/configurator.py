"""The model configurator: size up a transformer on paper before building it.

Pure functions from a model config to plain, JSON-able numbers and dicts, for the lab
page and the API (nothing here allocates a model):

* `PRESETS` / `preset(name)`: named shapes from nano (1M) to Llama-2-7B;
* `count_params`: exact parameter counts per component, derived by hand (the tests
  check them against `sum(p.numel() for p in Transformer(cfg).parameters())`);
* `memory_estimate`: training memory (weights, gradients, optimizer, activations);
* `flops_per_token` and `training_time`: compute budget and wall-clock on a GPU;
* `block_diagram`: the layer stack as data and as text;
* `summary`: all of the above at once.

Every function accepts a `ModelConfig`, a dict of its fields (as the UI sends it) or a
preset name. Mistakes raise `training.errors.UserError` naming the field.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from training.errors import UserError
from training.model.flops import GPUS, matmul_peak
from training.model.model_config import ModelConfig

ConfigLike = ModelConfig | dict | str

# --------------------------------------------------------------------------- presets

PRESETS: dict[str, dict[str, Any]] = {
    "nano": {
        "description": "configs/pretrain/nano.yaml: about 1M parameters, trains in a minute on a laptop",
        "model": {"arch": "gpt2", "vocab_size": 2048, "block_size": 128,
                  "n_layer": 4, "n_head": 4, "n_embd": 128},
    },
    "micro": {
        "description": "configs/pretrain/micro.yaml: about 10M parameters, the benchmark model",
        "model": {"arch": "gpt2", "vocab_size": 8192, "block_size": 256,
                  "n_layer": 6, "n_head": 5, "n_embd": 320},
    },
    "gpt2-small": {
        "description": "GPT-2 small (OpenAI 2019): 124,439,808 parameters",
        "model": {"arch": "gpt2", "vocab_size": 50257, "block_size": 1024,
                  "n_layer": 12, "n_head": 12, "n_embd": 768},
    },
    "gpt2-medium": {
        "description": "GPT-2 medium: 354,823,168 parameters",
        "model": {"arch": "gpt2", "vocab_size": 50257, "block_size": 1024,
                  "n_layer": 24, "n_head": 16, "n_embd": 1024},
    },
    "gpt2-large": {
        "description": "GPT-2 large: 774,030,080 parameters",
        "model": {"arch": "gpt2", "vocab_size": 50257, "block_size": 1024,
                  "n_layer": 36, "n_head": 20, "n_embd": 1280},
    },
    "llama-1b": {
        "description": "the shape of Llama-3.2-1B (1,235,814,400 parameters): GQA with 8 key/value "
                       "heads, tied embeddings, 128K vocabulary; context 8192 here (the real model "
                       "stretches RoPE to 128K, which we do not implement)",
        "model": {"arch": "llama", "vocab_size": 128256, "block_size": 8192, "n_layer": 16,
                  "n_head": 32, "n_kv_head": 8, "n_embd": 2048, "intermediate_size": 8192,
                  "rope_theta": 500000.0, "tie_embeddings": True},
    },
    "llama2-7b": {
        "description": "the shape of Llama-2-7B (6,738,415,616 parameters)",
        "model": {"arch": "llama", "vocab_size": 32000, "block_size": 4096, "n_layer": 32,
                  "n_head": 32, "n_embd": 4096, "intermediate_size": 11008, "tie_embeddings": False},
    },
}


def preset(name: str) -> ModelConfig:
    """The ModelConfig of a preset (see `PRESETS`)."""
    if name not in PRESETS:
        raise UserError(f"preset must be one of {', '.join(PRESETS)}, got {name!r}")
    return ModelConfig(**PRESETS[name]["model"])


def model_config(spec: ConfigLike) -> ModelConfig:
    """A validated ModelConfig from a ModelConfig, a dict of fields or a preset name.

    Raises:
        UserError: "model.<field>: <problem>" for an unknown key, a wrong type or a
            broken invariant (e.g. n_embd not divisible by n_head).
    """
    if isinstance(spec, ModelConfig):
        return spec
    if isinstance(spec, str):
        return preset(spec)
    if not isinstance(spec, dict):
        raise UserError(f"model must be a preset name or a mapping of fields, got {type(spec).__name__}")
    from pydantic import TypeAdapter, ValidationError

    try:
        # The same validation a run config's `model:` section gets: types, Literal
        # choices, unknown keys, then ModelConfig.__post_init__'s invariants.
        return TypeAdapter(ModelConfig).validate_python(spec)
    except ValidationError as e:
        err = e.errors()[0]
        key = ".".join(str(p) for p in err["loc"])
        msg = "unknown key" if err["type"] in ("extra_forbidden", "unexpected_keyword_argument") \
            else err["msg"].removeprefix("Value error, ")
        if not key:  # an invariant from __post_init__: its message starts with the field
            first = msg.split(" ", 1)[0]
            key = first if first in ModelConfig.__dataclass_fields__ else ""
        raise UserError(f"model.{key}: {msg}" if key else f"model: {msg}") from None


# --------------------------------------------------------------------------- parameters


def count_params(cfg: ConfigLike) -> dict[str, int]:
    """Exact parameter count by component, computed from the shapes alone.

    Returns:
        {"embeddings", "attention", "mlp", "norms", "head", "total", "per_layer"}:
        embeddings = token table (+ learned position table); attention, mlp and norms
        summed over all layers (norms include the final one); head = the lm_head, 0 when
        tied to the token embedding (one matrix, counted once); per_layer = one block.
    """
    cfg = model_config(cfg)
    layout = cfg.layout
    C, V, hd = cfg.n_embd, cfg.vocab_size, cfg.head_dim
    q_width, kv_width = cfg.n_head * hd, cfg.kv_heads * hd
    bias = 1 if layout.bias else 0

    # Attention: q, k, v, o projections (k and v are narrower under GQA / MQA).
    attention = C * q_width + 2 * C * kv_width + q_width * C
    attention += bias * (q_width + 2 * kv_width + C)
    # MLP: up + down (GELU/ReLU) or gate + up + down (SwiGLU), each C x hidden.
    F = cfg.mlp_hidden
    n_mats = 3 if layout.mlp == "swiglu" else 2
    mlp = n_mats * C * F + bias * ((n_mats - 1) * F + C)
    # A norm has a gain per channel; LayerNorm also a shift when biases are on.
    norm = C * (2 if layout.norm == "layernorm" and layout.bias else 1)
    n_norms = 2 * cfg.n_layer + (1 if layout.norm_position == "pre" else 0)  # + final (pre-norm only)

    embeddings = V * C + (cfg.block_size * C if layout.pos_embedding == "learned" else 0)
    head = 0 if cfg.tie_embeddings else V * C
    counts = {
        "embeddings": embeddings,
        "attention": cfg.n_layer * attention,
        "mlp": cfg.n_layer * mlp,
        "norms": n_norms * norm,
        "head": head,
    }
    counts["total"] = sum(counts.values())
    counts["per_layer"] = attention + mlp + 2 * norm
    return counts


# --------------------------------------------------------------------------- compute


def flops_per_token(cfg: ConfigLike, seq_len: int | None = None) -> float:
    """Training FLOPs per token: 6 * N + 12 * n_layer * n_embd * seq_len.

    The same convention as `training.model.transformer.flops_per_token` (PaLM appendix B), computed
    from `count_params` instead of a model: N is every parameter except the position
    table (a lookup multiplies nothing; a tied lm_head still does its matmul, so it
    counts once via the token embedding). 6 = 2 FLOPs per multiply-add x (1 forward +
    2 backward). The attention term (QK^T and attention x V, which have no weights)
    counts all seq_len keys for every query, ignoring that the causal mask could skip
    half of them. seq_len defaults to block_size.
    """
    cfg = model_config(cfg)
    seq_len = cfg.block_size if seq_len is None else _positive_int("seq_len", seq_len)
    counts = count_params(cfg)
    position = cfg.block_size * cfg.n_embd if cfg.layout.pos_embedding == "learned" else 0
    n = counts["total"] - position
    return float(6 * n + 12 * cfg.n_layer * cfg.n_embd * seq_len)


_cpu_peak_cache: dict[int, float] = {}


def gpu_peak_flops(gpu: str) -> float:
    """Peak FLOP/s of one device from `GPUS` ("this-cpu" is measured once and cached)."""
    if gpu not in GPUS:
        raise UserError(f"gpu must be one of {', '.join(GPUS)}, got {gpu!r}")
    if gpu != "this-cpu":
        return GPUS[gpu]["bf16_tflops"] * 1e12
    import torch

    threads = torch.get_num_threads()
    if threads not in _cpu_peak_cache:
        _cpu_peak_cache[threads] = matmul_peak(torch.float32, threads, n=1024, iters=5)
    return _cpu_peak_cache[threads]


def training_time(cfg: ConfigLike, tokens: float, gpu: str, mfu: float, n_gpus: int = 1) -> dict:
    """How long training on `tokens` tokens takes at a given model FLOPs utilisation.

        seconds = tokens * flops_per_token(cfg) / (n_gpus * peak * mfu)

    MFU (achieved / peak FLOP/s) is typically 0.3 - 0.5 for well-tuned LLM training on
    A100 / H100; a small model or a naive loop gets much less. Sequences are block_size
    long.

    Returns:
        {"seconds", "readable", "total_flops", "flops_per_token", "peak_flops_per_gpu",
         "achieved_flops", "gpu", "gpu_name", "mfu", "n_gpus", "tokens"}
    """
    cfg = model_config(cfg)
    if isinstance(tokens, bool) or not isinstance(tokens, (int, float)) or not tokens > 0:
        raise UserError(f"tokens must be a positive number, got {tokens!r}")
    if isinstance(mfu, bool) or not isinstance(mfu, (int, float)) or not 0 < mfu <= 1:
        raise UserError(f"mfu must be in (0, 1] (a fraction of the peak), got {mfu!r}")
    n_gpus = _positive_int("n_gpus", n_gpus)
    peak = gpu_peak_flops(gpu)
    fpt = flops_per_token(cfg)
    total = tokens * fpt
    achieved = n_gpus * peak * mfu
    seconds = total / achieved
    return {"seconds": seconds, "readable": readable_duration(seconds), "total_flops": total,
            "flops_per_token": fpt, "peak_flops_per_gpu": peak, "achieved_flops": achieved,
            "gpu": gpu, "gpu_name": GPUS[gpu]["name"], "mfu": mfu, "n_gpus": n_gpus,
            "tokens": tokens}


def readable_duration(seconds: float) -> str:
    """'42 s', '3.5 min', '7.2 h', '12.3 days', '2.1 years'."""
    for unit, size in (("years", 365.25 * 86400), ("days", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f} {unit}"
    return f"{seconds:.0f} s" if seconds >= 1 else f"{seconds * 1000:.0f} ms"


# --------------------------------------------------------------------------- memory

PRECISIONS = {"fp32": 4, "bf16": 2, "fp16": 2}  # bytes per weight / activation value
OPTIMIZERS = {"adamw": 2, "sgd": 0}  # fp32 states kept per parameter


def activation_bytes_per_layer(cfg: ConfigLike, batch_size: int, seq_len: int, precision: str,
                               flash_attention: bool = False) -> dict[str, int]:
    """Bytes one block keeps for the backward pass, without activation recomputation.

    Korthikanti et al. 2022 ("Reducing Activation Recomputation in Large Transformer
    Models", section 4.1) count, for a GPT block with 16-bit activations, s = seq_len,
    b = batch, h = n_embd, a = n_head:

        attention  11 sbh + 5 a s^2 b    (inputs of the q/k/v, scores and output matmuls,
                                          the softmax, dropout masks of 1 byte)
        MLP        19 sbh                (input, 4h pre- and post-GELU, dropout mask)
        norms       4 sbh                (the inputs of the two norms)
        total      34 sbh + 5 a s^2 b

    Written out per tensor so the lab's variants are counted honestly: k and v are
    narrower under GQA; SwiGLU keeps four hidden-width tensors (gate, up, silu(gate),
    product) instead of two; dropout masks (and attention's dropped copy) only exist when
    dropout > 0; fp32 doubles the 2-byte tensors; flash attention keeps no s x s matrix.
    With dropout > 0, GELU, MHA and 16-bit this is exactly 34 sbh + 5 a s^2 b.

    Returns:
        {"attention", "mlp", "norms", "total"} in bytes.
    """
    cfg = model_config(cfg)
    B = PRECISIONS[_precision(precision)]
    s, b, h = seq_len, batch_size, cfg.n_embd
    a, kv = cfg.n_head, cfg.kv_heads * cfg.head_dim
    mask = 1 if cfg.dropout > 0 else 0  # 1-byte dropout masks
    F = cfg.mlp_hidden
    sb = s * b
    # norm output (= q/k/v input) + q + k + v + attention output (o_proj input) + mask
    attention = sb * (h * B + h * B + 2 * kv * B + h * B + h * mask)
    if not flash_attention:
        # softmax probabilities, their dropout mask and the dropped copy that multiplies V
        attention += a * s * s * b * (B + mask * (1 + B))
    hidden_tensors = 4 if cfg.layout.mlp == "swiglu" else 2
    mlp = sb * (h * B + hidden_tensors * F * B + h * mask)
    norms = 2 * sb * h * B
    return {"attention": attention, "mlp": mlp, "norms": norms, "total": attention + mlp + norms}


def memory_estimate(cfg: ConfigLike, batch_size: int, seq_len: int, precision: str = "bf16",
                    optimizer: str = "adamw", *, flash_attention: bool = False) -> dict:
    """Training memory for one device, no sharding, no activation recomputation.

    Convention (the ZeRO paper's mixed-precision accounting, Rajbhandari et al. 2020):

    * fp32: weights 4 bytes/param, gradients 4, AdamW moments 2 x 4 = 8 -> 16 bytes/param;
    * bf16 / fp16 (mixed precision): weights 2, gradients 2, optimizer 12 (an fp32
      master copy of the weights, 4, plus the two fp32 moments, 8) -> 16 bytes/param.
      (PyTorch autocast, which our loop uses, keeps the fp32 weights and gradients
      instead of a separate master copy: also 16 bytes/param, split 4 + 4 + 8.)
    * sgd: no optimizer state (plus the fp32 master weights under mixed precision).

    Activations: `activation_bytes_per_layer` x n_layer, plus the logits (in the compute
    precision, plus the fp32 copy the cross-entropy reads). Framework overhead, the CUDA
    context and allocator fragmentation (often 1-2 GiB more) are not included.

    Returns:
        {"weights", "gradients", "optimizer", "activations", "total"} in bytes, plus
        "activations_per_layer", "logits", "bytes_per_param" and "readable" (GiB strings).
    """
    cfg = model_config(cfg)
    precision = _precision(precision)
    if optimizer not in OPTIMIZERS:
        raise UserError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
    batch_size = _positive_int("batch_size", batch_size)
    seq_len = _positive_int("seq_len", seq_len)
    if seq_len > cfg.block_size:
        raise UserError(f"seq_len {seq_len} exceeds the model's context (model.block_size "
                        f"{cfg.block_size})")
    n = count_params(cfg)["total"]
    B = PRECISIONS[precision]
    master = 4 if B != 4 else 0  # fp32 master weights under mixed precision
    weights, gradients = n * B, n * B
    optimizer_bytes = n * (4 * OPTIMIZERS[optimizer] + master)
    per_layer = activation_bytes_per_layer(cfg, batch_size, seq_len, precision, flash_attention)
    logits = seq_len * batch_size * cfg.vocab_size * (B + (4 if B != 4 else 0))
    activations = cfg.n_layer * per_layer["total"] + logits
    out = {"weights": weights, "gradients": gradients, "optimizer": optimizer_bytes,
           "activations": activations}
    out["total"] = sum(out.values())
    out["activations_per_layer"] = per_layer["total"]
    out["logits"] = logits
    out["bytes_per_param"] = (weights + gradients + optimizer_bytes) / n
    out["readable"] = {k: f"{out[k] / 2**30:.2f} GiB" for k in
                       ("weights", "gradients", "optimizer", "activations", "total")}
    return out


# --------------------------------------------------------------------------- diagram


def block_diagram(cfg: ConfigLike) -> dict:
    """The layer stack, as data for the UI to draw and as monospace text.

    Returns:
        {"stages": [...], "text": str}. Each stage is {"kind", "label", "params"} with
        kind in input / embedding / position / block / norm / head / output; the block
        stage has "repeat" (n_layer) and "children" (its sublayers, in order: norm,
        attention, add, norm, mlp, add for pre-norm; attention, add, norm, ... for post).
    """
    cfg = model_config(cfg)
    lay = cfg.layout
    counts = count_params(cfg)
    C, V = cfg.n_embd, cfg.vocab_size
    norm_name = "LayerNorm" if lay.norm == "layernorm" else "RMSNorm"
    norm_params = counts["norms"] // (2 * cfg.n_layer + (1 if lay.norm_position == "pre" else 0))
    if cfg.kv_heads == cfg.n_head:
        attn_kind = "multi-head attention"
    elif cfg.kv_heads == 1:
        attn_kind = "multi-query attention"
    else:
        attn_kind = "grouped-query attention"
    attn_label = (f"causal {attn_kind}: {cfg.n_head} heads x {cfg.head_dim}"
                  + (f", {cfg.kv_heads} key/value head{'s' if cfg.kv_heads > 1 else ''}"
                     if cfg.kv_heads != cfg.n_head else "")
                  + (", RoPE on q and k" if lay.pos_embedding == "rope" else "")
                  + (", ALiBi distance bias on the scores" if lay.pos_embedding == "alibi" else ""))
    mlp_label = {"gelu": "MLP: Linear {C}->{F}, GELU, Linear {F}->{C}",
                 "relu": "MLP: Linear {C}->{F}, ReLU, Linear {F}->{C}",
                 "swiglu": "SwiGLU MLP: silu(gate {C}->{F}) * up {C}->{F}, down {F}->{C}"}[lay.mlp]
    mlp_label = mlp_label.format(C=C, F=cfg.mlp_hidden)
    attention_params = counts["attention"] // cfg.n_layer
    mlp_params = counts["mlp"] // cfg.n_layer
    norm1 = {"kind": "norm", "label": norm_name, "params": norm_params}
    attn = {"kind": "attention", "label": attn_label, "params": attention_params}
    add = {"kind": "add", "label": "+ residual", "params": 0}
    norm2 = {"kind": "norm", "label": norm_name, "params": norm_params}
    mlp = {"kind": "mlp", "label": mlp_label, "params": mlp_params}
    if lay.norm_position == "pre":
        children = [norm1, attn, add, norm2, mlp, dict(add)]
    else:
        children = [attn, add, norm1, mlp, dict(add), norm2]

    positions = {
        "learned": (f"learned position embedding {cfg.block_size} x {C} (added)", cfg.block_size * C),
        "sinusoidal": (f"sinusoidal position encoding {C} wide (fixed, added)", 0),
        "rope": (f"rotary position embedding (inside attention, theta {cfg.rope_theta:g})", 0),
        "alibi": ("ALiBi: no position vectors; attention scores get -slope x distance, a slope per head", 0),
        "none": ("no position embedding (order only from the causal mask)", 0),
    }[lay.pos_embedding]
    stages = [
        {"kind": "input", "label": f"token ids (B, T), T <= {cfg.block_size}", "params": 0},
        {"kind": "embedding", "label": f"token embedding {V} x {C}", "params": V * C},
        {"kind": "position", "label": positions[0], "params": positions[1]},
        {"kind": "block", "label": f"{lay.norm_position}-norm transformer block",
         "params": counts["per_layer"], "repeat": cfg.n_layer, "children": children},
    ]
    if lay.norm_position == "pre":
        stages.append({"kind": "norm", "label": f"final {norm_name}", "params": norm_params})
    head = "lm_head (tied: reuses the token embedding)" if cfg.tie_embeddings else f"lm_head {C} x {V}"
    stages.append({"kind": "head", "label": head, "params": counts["head"]})
    stages.append({"kind": "output", "label": f"logits (B, T, {V})", "params": 0})

    lines = []
    for st in stages:
        params = f"{st['params']:>15,}" if st["params"] else " " * 15
        if st["kind"] == "block":
            lines.append(f"{params}  +-- {st['label']} x {st['repeat']} " + "-" * 8)
            for child in st["children"]:
                cp = f"{child['params']:>15,}" if child["params"] else " " * 15
                lines.append(f"{cp}  |   {child['label']}")
            lines.append(" " * 17 + "+" + "-" * 40)
        else:
            lines.append(f"{params}  {st['label']}")
    lines.append(f"{counts['total']:>15,}  total parameters")
    return {"stages": stages, "text": "\n".join(lines)}


# --------------------------------------------------------------------------- all at once


def summary(cfg: ConfigLike, *, batch_size: int = 8, seq_len: int | None = None,
            precision: str = "bf16", optimizer: str = "adamw", tokens: float | None = None,
            gpu: str = "h100-sxm", mfu: float = 0.4, n_gpus: int = 1) -> dict:
    """Everything the configurator page shows for one config, JSON-able.

    tokens defaults to 20 tokens per parameter (the Chinchilla-optimal budget,
    Hoffmann et al. 2022); seq_len to block_size.
    """
    cfg = model_config(cfg)
    seq_len = cfg.block_size if seq_len is None else seq_len
    params = count_params(cfg)
    tokens = 20 * params["total"] if tokens is None else tokens
    return {
        "config": asdict(cfg),
        "layout": asdict(cfg.layout),
        "params": params,
        "flops_per_token": flops_per_token(cfg, seq_len),
        "memory": memory_estimate(cfg, batch_size, seq_len, precision, optimizer),
        "training_time": training_time(cfg, tokens, gpu, mfu, n_gpus),
        "diagram": block_diagram(cfg),
    }


# --------------------------------------------------------------------------- helpers


def _positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise UserError(f"{name} must be a positive integer, got {value!r}")
    return value


def _precision(precision: str) -> str:
    if precision not in PRECISIONS:
        raise UserError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    return precision
