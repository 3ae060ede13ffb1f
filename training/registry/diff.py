"""What changed between two models of the same shape: tensor by tensor, layer by layer.

Fine-tuning moves some weights more than others, and seeing where is a lesson in itself: full SFT
at a small learning rate barely moves most matrices (relative changes around 1e-3), a LoRA merge
changes only the projections it targeted, DPO with a small beta stays close to its SFT parent, and
a continued pretraining run moves everything. Two numbers per tensor say it:

    relative change   ||b - a|| / ||a||       (Frobenius norms: every entry, squared, summed)
                      0 = unchanged; 0.01 = moved by 1% of its size
    cosine            <a, b> / (||a|| ||b||)  1 = same direction (a rescaled tensor still has 1)

A layer's figure pools its tensors (sums of squares and dot products over all of them), so a big
matrix counts more than a small bias, exactly as if the layer were one long vector; the overall
figure pools every tensor the same way.

Both sides are read under Hugging Face tensor names: a Hugging Face folder straight from its
safetensors headers (`safe_open` reads one tensor at a time, no model is built), and one of our
pretraining checkpoints (`runs/<run>/checkpoint_000300/`) converted with `export.hf_state_dict`,
so a checkpoint and the model exported from it compare tensor for tensor. `score_diff` puts the
evaluation scores of the two models side by side, from the records the leaderboard reads.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable
from pathlib import Path

import torch

from training.errors import UserError
from training.workspace import Workspace

_LAYER = re.compile(r"(?:^|\.)(h|layers|blocks|layer)\.(\d+)\.")
_EMBEDDING = ("wte", "wpe", "embed_tokens", "tok_emb", "pos_emb", "embed_positions", "embeddings")
_FINAL_NORM = ("ln_f", "model.norm", "norm_f", "final_layernorm", "final_layer_norm")
_IGNORED = (".attn.bias", ".attn.masked_bias")  # old GPT-2 files' causal-mask buffers, not weights
_ORDER = {"embeddings": 0, "final_norm": 2, "lm_head": 3, "other": 4}


def layer_of(name: str) -> str:
    """The group a tensor belongs to: "embeddings", "h.0" / "layers.0" / "blocks.0", ...,
    "final_norm", "lm_head", or "other".

    >>> [layer_of(n) for n in ("transformer.wte.weight", "transformer.h.3.attn.c_attn.weight",
    ...                        "model.layers.0.mlp.up_proj.weight", "model.norm.weight", "lm_head.weight")]
    ['embeddings', 'h.3', 'layers.0', 'final_norm', 'lm_head']
    """
    m = _LAYER.search(name)
    if m:
        return f"{m.group(1)}.{m.group(2)}"
    parts = name.split(".")
    if "lm_head" in parts:
        return "lm_head"
    if any(p in _EMBEDDING for p in parts):
        return "embeddings"
    if any(n in name for n in _FINAL_NORM):
        return "final_norm"
    return "other"


def _layer_key(layer: str) -> tuple:
    m = re.fullmatch(r"\w+\.(\d+)", layer)
    return (1, int(m.group(1)), layer) if m else (_ORDER.get(layer, 4), 0, layer)


# --------------------------------------------------------------------------- reading both sides

Tensors = tuple[dict[str, tuple[int, ...]], Callable[[str], torch.Tensor]]


def _from_checkpoint(path: Path) -> Tensors:
    """One of our pretraining checkpoints, under Hugging Face names (our own names for an
    architecture-lab variant that has no Hugging Face class)."""
    from training.model.checkpoint import load_model
    from training.model.export import hf_state_dict

    model, *_ = load_model(path, path.parent)
    try:
        state = hf_state_dict(model)
        embedding = "transformer.wte.weight" if "transformer.wte.weight" in state else "model.embed_tokens.weight"
    except UserError:
        state, embedding = {k: v.detach() for k, v in model.state_dict().items()}, "tok_emb.weight"
    if model.config.tie_embeddings and embedding in state:  # saved Hugging Face folders leave the tied copy out
        state.pop("lm_head.weight", None)
    return {k: tuple(v.shape) for k, v in state.items()}, state.__getitem__


def _from_hf(path: Path) -> Tensors:
    """A Hugging Face folder: safetensors (one file or shards) read lazily, else pytorch_model*.bin."""
    from safetensors import safe_open

    config = json.loads((path / "config.json").read_text())
    files = sorted(path.glob("*.safetensors"))
    if files:
        where, shapes = {}, {}
        for file in files:
            with safe_open(str(file), framework="pt") as f:
                for name in f.keys():  # noqa: SIM118 - safe_open is not iterable
                    where[name], shapes[name] = file, tuple(f.get_slice(name).get_shape())

        def get(name: str) -> torch.Tensor:
            with safe_open(str(where[name]), framework="pt") as f:
                return f.get_tensor(name)
    else:
        state = {}
        for file in sorted(path.glob("pytorch_model*.bin")):
            state.update(torch.load(file, map_location="cpu", weights_only=True))
        shapes, get = {k: tuple(v.shape) for k, v in state.items()}, state.__getitem__
    shapes = {k: s for k, s in shapes.items() if not k.endswith(_IGNORED)}
    if config.get("tie_word_embeddings") and any(layer_of(k) == "embeddings" for k in shapes):
        shapes.pop("lm_head.weight", None)
    return shapes, get


def _open(path, side: str) -> Tensors:
    path = Path(path)
    if not path.is_dir():
        raise UserError(f"{side}: not a model: {path} is not a folder")
    if (path / "state.pt").exists() or (path / "checkpoint.json").exists():
        return _from_checkpoint(path)
    if not (path / "config.json").is_file():
        what = "a LoRA adapter (merge it first)" if (path / "adapter_config.json").is_file() else "no config.json"
        raise UserError(f"{side}: not a model: {path} has {what}")
    if not any(path.glob("*.safetensors")) and not any(path.glob("pytorch_model*.bin")):
        raise UserError(f"{side}: not a model: {path} has no weights (*.safetensors or pytorch_model.bin)")
    return _from_hf(path)


def _check_same_shape(sa: dict, sb: dict) -> None:
    only_a, only_b = sorted(set(sa) - set(sb)), sorted(set(sb) - set(sa))
    for missing, side, other in ((only_a, "a", "b"), (only_b, "b", "a")):
        if missing:
            more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
            raise UserError(f"cannot compare: tensor {missing[0]!r} is in {side} but not in {other}{more}; "
                            "the two models must have the same architecture")
    for name in sorted(sa):
        if sa[name] != sb[name]:
            raise UserError(f"cannot compare: tensor {name!r} is {list(sa[name])} in a but {list(sb[name])} in b")


# --------------------------------------------------------------------------- the figures


def _figures(sq_a: float, sq_b: float, sq_d: float, dot: float, params: int) -> dict:
    """Relative change and cosine from pooled sums; None where a norm is 0 and the figure undefined."""
    na, nb, nd = math.sqrt(sq_a), math.sqrt(sq_b), math.sqrt(sq_d)
    relative = nd / na if na > 0 else (0.0 if nd == 0 else None)
    if nd == 0:
        cosine = 1.0 if na > 0 else None  # identical: exactly 1, not 0.9999999 from rounding
    else:
        cosine = max(-1.0, min(1.0, dot / (na * nb))) if na > 0 and nb > 0 else None
    return {"params": params, "relative_change": relative, "cosine": cosine}


def weight_diff(a, b) -> dict:
    """Compare two models (or checkpoints) of the same architecture, tensor by tensor.

    `a` and `b` are paths: Hugging Face model folders, or our pretraining checkpoint folders.

    Returns `{"a": path, "b": path, "tensors": [{"name", "layer", "shape", "params", "relative_change",
    "cosine"}] (in file order), "layers": [{"layer", "tensors", "params", "relative_change", "cosine"}]
    (embeddings, blocks in order, final_norm, lm_head, other), "overall": {"params",
    "relative_change", "cosine"}}`. A figure is None where it is undefined (a tensor of zeros in a).

    Raises:
        UserError: a path is not a model, or the tensor names or shapes differ (naming the tensor).
    """
    (shapes_a, get_a), (shapes_b, get_b) = _open(a, "a"), _open(b, "b")
    _check_same_shape(shapes_a, shapes_b)
    tensors, pooled = [], {}
    for name, shape in shapes_a.items():
        ta, tb = get_a(name).to(torch.float64), get_b(name).to(torch.float64)
        sums = [float(ta.square().sum()), float(tb.square().sum()), float((tb - ta).square().sum()),
                float((ta * tb).sum()), ta.numel()]
        layer = layer_of(name)
        tensors.append({"name": name, "layer": layer, "shape": list(shape)} | _figures(*sums))
        group = pooled.setdefault(layer, [0.0, 0.0, 0.0, 0.0, 0, 0])
        for i, value in enumerate(sums):
            group[i] += value
        group[5] += 1
    layers = [{"layer": layer, "tensors": group[5]} | _figures(*group[:5])
              for layer, group in sorted(pooled.items(), key=lambda kv: _layer_key(kv[0]))]
    total = [sum(g[i] for g in pooled.values()) for i in range(5)]
    return {"a": str(a), "b": str(b), "tensors": tensors, "layers": layers, "overall": _figures(*total)}


def score_diff(ws: Workspace, model_a: str, model_b: str) -> list[dict]:
    """The change in evaluation scores from `model_a` to `model_b`, on every task both were scored on
    with the same metric (each model's latest score, as on the leaderboard).

    Returns `[{"task", "suite", "metric", "a", "b", "delta", "ci95_a", "ci95_b", "eval_a", "eval_b"}]`
    sorted by task; delta = b - a.
    """
    from evaluation import leaderboard, records

    cells = leaderboard.latest_rows(records.read_all(ws))
    out = []
    for (model, task), ra in cells.items():
        rb = cells.get((model_b, task))
        if model != model_a or rb is None or ra.get("metric") != rb.get("metric"):
            continue
        out.append({"task": task, "suite": ra.get("suite"), "metric": ra.get("metric"), "a": ra["score"],
                    "b": rb["score"], "delta": rb["score"] - ra["score"], "ci95_a": ra.get("ci95"),
                    "ci95_b": rb.get("ci95"), "eval_a": ra.get("eval_id"), "eval_b": rb.get("eval_id")})
    return sorted(out, key=lambda r: r["task"])
