"""Pure helpers for the pages (no network, no Streamlit): the sampling-parameter table,
turning widget values into request fields, conversation export, config diffs, and the
figures of training runs as people read them.

Kept apart from the pages so they can be unit-tested without running an app.
"""

from __future__ import annotations

import functools
import itertools
import json
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Param:
    """One sampling parameter as the Chat page shows it (a slider unless `kind` says otherwise)."""

    name: str
    label: str
    default: Any
    min: float | None = None
    max: float | None = None
    step: float | None = None
    kind: str = "float"  # "float" | "int" (sliders), "seed" (optional int), "stop" (optional strings)
    help: str = ""


SAMPLING: tuple[Param, ...] = (
    Param("temperature", "Temperature", 0.7, 0.0, 2.0, 0.05,
          help="Divides the logits before softmax. 0 = always the most likely token (greedy); "
               "higher = flatter distribution, more surprising text."),
    Param("top_p", "Top-p (nucleus)", 1.0, 0.0, 1.0, 0.01,
          help="Sample only from the smallest set of tokens whose probabilities add up to p. 1 = off."),
    Param("top_k", "Top-k", 0, 0, 100, 1, kind="int",
          help="Sample only from the k most likely tokens. 0 = off (sent to vLLM as -1)."),
    Param("max_tokens", "Max new tokens", 128, 1, 1024, 1, kind="int",
          help="Stop after this many generated tokens (the model's context length also limits it)."),
    Param("presence_penalty", "Presence penalty", 0.0, -2.0, 2.0, 0.1,
          help="Subtracted once from the logit of every token already in the text: pushes toward new topics."),
    Param("frequency_penalty", "Frequency penalty", 0.0, -2.0, 2.0, 0.1,
          help="Subtracted per occurrence of a token so far: discourages repeating the same words."),
    Param("repetition_penalty", "Repetition penalty", 1.0, 1.0, 2.0, 0.05,
          help="Divides the logits of tokens already seen (prompt included). 1 = off; ~1.1-1.3 curbs loops."),
    Param("seed", "Seed", None, kind="seed",
          help="Fix the random sampling for reproducible answers. Empty = a fresh draw each time."),
    Param("stop", "Stop sequences", "", kind="stop",
          help="Comma-separated strings that end the answer when generated, e.g. `\\n\\n, User:`."),
)


def request_params(values: dict[str, Any]) -> dict[str, Any]:
    """Widget values -> request fields: off-switches translated, empty optionals left out."""
    out: dict[str, Any] = {}
    for p in SAMPLING:
        v = values.get(p.name, p.default)
        if p.kind == "seed":
            if v is not None and v != "":
                out["seed"] = int(v)
        elif p.kind == "stop":
            # `\n` typed in a text box arrives as backslash + n; stops on newlines are common.
            stops = [s.replace("\\n", "\n") for s in str(v or "").split(",") if s.strip()]
            if stops:
                out["stop"] = stops
        elif p.name == "top_k":
            # vLLM's "off" for top_k is -1; sending it explicitly overrides any default the
            # model's generation_config.json might carry.
            out["top_k"] = int(v) if v and int(v) > 0 else -1
        else:
            out[p.name] = int(v) if p.kind == "int" else float(v)
    return out


def without_oldest_exchange(messages: list[dict]) -> list[dict] | None:
    """`messages` less the oldest user message and the replies after it, the system prompt
    kept; None when only the newest user message is left.

    Each chat turn resends the whole conversation, and a model trained here has a context of
    64 to 1,024 tokens: its first answer alone may fill it. Leaving out the oldest exchanges
    until the request fits is the sliding window chat front ends use.
    """
    head = messages[:1] if messages and messages[0]["role"] == "system" else []
    turns = messages[len(head):]
    users = [i for i, m in enumerate(turns) if m["role"] == "user"]
    return head + turns[users[1]:] if len(users) > 1 else None


def conversation_to_json(messages: list[dict], meta: dict) -> str:
    """The conversation plus its settings (model, system prompt, sampling) as pretty JSON."""
    return json.dumps({"meta": meta, "messages": messages}, indent=2, ensure_ascii=False, default=str)


def conversation_to_markdown(messages: list[dict], meta: dict) -> str:
    """The conversation as a readable Markdown document, settings first."""
    lines = ["# Chat transcript", ""]
    for key, value in meta.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        lines.append(f"- **{key}**: {value}")
    for m in messages:
        lines += ["", f"## {m['role'].capitalize()}", "", m["content"]]
    return "\n".join(lines) + "\n"


class _Missing:
    """Marks a key one config has and the other lacks (distinct from an explicit null)."""

    def __repr__(self) -> str:
        return "(not set)"

    __str__ = __repr__


MISSING = _Missing()


def flatten(config: dict, prefix: str = "") -> dict[str, Any]:
    """Nested dict -> {"model.n_layer": 4, ...}. Lists stay whole: they are values, not sections."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, dotted + "."))
        else:
            flat[dotted] = value
    return flat


def config_diff(a: dict, b: dict) -> list[tuple[str, Any, Any]]:
    """The dotted keys whose values differ between two nested configs, sorted, as
    (key, a_value, b_value); a key only one side has shows `MISSING` on the other."""
    fa, fb = flatten(a), flatten(b)
    rows = []
    for key in sorted(fa.keys() | fb.keys()):
        va, vb = fa.get(key, MISSING), fb.get(key, MISSING)
        if va is MISSING or vb is MISSING or va != vb:
            rows.append((key, va, vb))
    return rows


def show_value(value: Any) -> str:
    """One cell of a table: strings as-is, everything else as JSON (so columns stay one type)."""
    if isinstance(value, str) or value is MISSING:
        return str(value)
    return json.dumps(value, default=str)


# ---- figures in tables -----------------------------------------------------------------

# How a figure reads, by the last part of its column name: "train.lr" is a learning rate,
# "best val_loss" and a sweep's "best_metric" are losses.
_COUNTS = ("step", "best_step", "trial", "trials", "tokens_seen", "memory_mb", "docs")
_LOSSES = ("loss", "val_loss", "train_loss", "eval_loss", "metric", "best_metric")
_RATES = ("lr", "learning_rate", "min_lr", "max_lr")
_SECONDS = ("time_s", "seconds", "elapsed_s", "duration_s", "step_time_s")


def figure(name: str, value: Any) -> str:
    """One figure of a run as people read it, chosen by its column `name`.

    >>> figure("tokens_per_s", 10709.1052), figure("val_loss", 3.214567), figure("train.lr", 0.0003)
    ('10,709', '3.2146', '3.00e-04')
    >>> figure("mfu", 0.1234), figure("seconds", 12.345), figure("perplexity", 24.5), figure("loss", None)
    ('12.3%', '12.3 s', '24.50', '')

    Throughput and counts are integers with thousands separators; losses have 4 decimals,
    perplexity 2, gradient norms 3; learning rates are scientific with 3 significant digits;
    MFU (a fraction of the device's peak FLOP/s) is a percent with one decimal; durations are
    seconds with one decimal. Other numbers get 4 significant digits; text stays as it is.
    """
    if value is None or isinstance(value, float) and math.isnan(value):
        return ""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    key = name.rsplit(".", 1)[-1].removeprefix("best ")
    if key.endswith("_per_s") or key in _COUNTS:
        return f"{value:,.0f}"
    if key in _LOSSES:
        return f"{value:.4f}"
    if key == "perplexity":
        return f"{value:.2f}"
    if key == "grad_norm":
        return f"{value:.3f}"
    if key in _RATES:
        return f"{value:.2e}"
    if key == "mfu":
        return f"{100 * value:.1f}%"
    if key in _SECONDS:
        return f"{value:.1f} s"
    return str(int(value)) if float(value).is_integer() else f"{value:.4g}"


def readable(df):
    """`df` (a pandas DataFrame) for `st.dataframe`, its numeric columns shown with `figure`.

    A pandas Styler: only what is shown is rounded; the cells keep their numbers, so the
    columns still sort as numbers, and the frame itself (what the charts draw) is unchanged.
    """
    import pandas as pd

    numeric = [c for c in df.columns
               if pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]
    return df.style.format({c: functools.partial(figure, str(c)) for c in numeric})


def mlflow_line(links: dict) -> str:
    """What the Home page says about MLflow, from GET /api/health's `links`: the store the runs
    log to, and where its UI is (markdown).

    The API always knows the store; the UI runs only once someone starts it, and
    `playground mlflow` serves it on 127.0.0.1:5000 (`--port` for another port).
    """
    from urllib.parse import urlsplit

    store, url = links.get("mlflow_store"), links.get("mlflow")
    if not store and not url:
        return "MLflow: not configured"
    line = f"MLflow: runs are logged to `{store}`" if store else "MLflow"
    if url:
        where = urlsplit(url)
        line += f" — open [{url}]({url})"
        if where.hostname in ("127.0.0.1", "localhost"):  # ours to start
            port = "" if where.port in (None, 5000) else f" --port {where.port}"
            line += f" (start it with `playground mlflow{port}`)"
    return line


def human_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


# Token colours: light, distinct backgrounds, readable under dark text.
TOKEN_COLOURS = ("#fde68a", "#bfdbfe", "#bbf7d0", "#fbcfe8", "#ddd6fe", "#fed7aa")


def visible(text: str) -> str:
    """A token's text with whitespace made visible: space as ·, newline as ↵, tab as →."""
    return text.replace(" ", "·").replace("\n", "↵").replace("\t", "→")


def token_html(tokens: list[dict]) -> str:
    """The text with each token on its own coloured background; hover shows id and bytes.

    `tokens` are the rows of the API's encode/compare answers ({"id", "text", "bytes"}).
    Everything from the text is HTML-escaped, so a token like "<script>" is shown, not run.
    """
    import html

    spans = []
    for i, t in enumerate(tokens):
        colour = TOKEN_COLOURS[i % len(TOKEN_COLOURS)]
        title = html.escape(f"id {t.get('id')} · bytes {t.get('bytes', '')}", quote=True)
        text = html.escape(visible(t.get("text") or ""))
        spans.append(f'<span class="tok" title="{title}" style="background:{colour};color:#111;'
                     f'border-radius:3px;padding:1px 2px;margin:0 1px;line-height:2">{text}</span>')
    return '<div class="tokens" style="font-family:monospace;white-space:pre-wrap;word-break:break-all">' \
        + "".join(spans) + "</div>"


# ---- data pipeline page ---------------------------------------------------------------


def short_number(x: float | None) -> str:
    """1234 -> "1.2k", 2000000 -> "2M", 10 -> "10": for axis labels."""
    if x is None:
        return "?"
    for limit, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= limit:
            return f"{x / limit:.3g}{suffix}"
    return f"{x:.3g}" if isinstance(x, float) and not float(x).is_integer() else str(int(x))


def bin_labels(edges: list[float]) -> list[str]:
    """Readable labels for histogram bins between consecutive (log-spaced) edges: "100–1k"."""
    return [f"{short_number(lo)}+" if hi is None else f"{short_number(lo)}–{short_number(hi)}"
            for lo, hi in itertools.pairwise(edges)]  # the last edge is None: no upper bound


def histogram_rows(hist: dict) -> list[dict]:
    """{"edges", "kept", "removed"} -> one row per bin and status, in bin order, for a bar chart."""
    labels = bin_labels(hist.get("edges") or [])
    return [{"bin": label, "order": i, "status": status, "documents": int(hist[status][i])}
            for status in ("kept", "removed") if hist.get(status)
            for i, label in enumerate(labels[:len(hist[status])])]


def top_reasons(reasons: dict[str, int] | None, k: int = 3) -> str:
    """The `k` most frequent removal reasons: "min_words 6, dup_lines 4 (+1 more)"."""
    ranked = sorted((reasons or {}).items(), key=lambda kv: (-kv[1], kv[0]))
    text = ", ".join(f"{r} {n:,}" for r, n in ranked[:k])
    return text + (f" (+{len(ranked) - k} more)" if len(ranked) > k else "")


def stage_rows(stages: list[dict]) -> list[dict]:
    """The removed-by-stage table: stage, in, out, removed, % removed, top reasons."""
    return [{"stage": s["stage"], "in": s["in"], "out": s["out"], "removed": s["removed"],
             "% removed": round(100 * s["removed"] / s["in"], 2) if s["in"] else 0.0,
             "top reasons": top_reasons(s.get("reasons"))} for s in stages]


def parse_sources(text: str) -> list[str]:
    """Pipeline sources from a text box: one per line; blank lines and `#` comments skipped."""
    return [ln.strip() for ln in text.splitlines() if ln.strip() and not ln.strip().startswith("#")]


def trial_rows(record: dict) -> tuple[list[dict], list[str]]:
    """A sweep's trials as table rows, and the searched parameter columns.

    Params are flattened (a grid over a whole `model` mapping becomes model.n_layer,
    model.n_embd...), so each searched setting is its own column, for the table and the plots.
    """
    rows, columns = [], []
    for t in sorted(record.get("trials", {}).values(), key=lambda t: t["trial"]):
        params = flatten(t.get("params") or {})
        for key in params:
            if key not in columns:
                columns.append(key)
        # a fine-tuning trial that finished has its held-out accuracy (exact match) per split
        accuracy = {f"accuracy {split}": acc for split, acc in ((t.get("results") or {}).get("sft") or {}).items()}
        rows.append({"trial": t["trial"], "status": t["status"], "step": t.get("step"),
                     f"best {record.get('metric', 'metric')}": t.get("best_metric"), **params, **accuracy,
                     "run": t.get("run_id"), "best": t["trial"] == record.get("best_trial")})
    return rows, columns


def parallel_rows(rows: list[dict], columns: list[str], metric_col: str) -> list[dict]:
    """Long-form rows for a parallel-coordinates chart: one point per (trial, axis), each axis
    scaled to 0..1 (log scale for an axis spanning more than a factor of 20, like a learning rate),
    the raw value kept for the tooltip."""
    import math

    out = []
    for axis in [*columns, metric_col]:
        values = [r.get(axis) for r in rows]
        nums = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if not nums:
            continue
        lo, hi = min(nums), max(nums)
        log = lo > 0 and hi / lo > 20
        f = (lambda v: math.log(v)) if log else (lambda v: v)
        span = f(hi) - f(lo)
        for r, v in zip(rows, values):
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append({"trial": r["trial"], "axis": axis + (" (log)" if log else ""),
                            "scaled": (f(v) - f(lo)) / span if span else 0.5, "value": v,
                            "metric": r.get(metric_col)})
    return out


# ---- fine-tuning ---------------------------------------------------------------------

SFT_METHODS = {
    "full": "Full: every weight trains. The most capacity and the most memory (weights, gradients and Adam's "
            "two moments for all of them).",
    "lora": "LoRA: the base stays frozen; small rank-r matrices B·A beside each linear layer train, often "
            "under 1% of the parameters.",
    "qlora": "QLoRA: LoRA on a base loaded in 4 bits (NF4, bitsandbytes): the least memory; needs a device "
             "bitsandbytes supports.",
}
# What each held-out split tests (training/posttrain/instructions.py makes them).
SFT_SPLITS = {"heldout_template": "held-out phrasings", "heldout_entity": "held-out entities", "val": "validation"}


def sft_run_name(model: str, now) -> str:
    """A run id for fine-tuning `model` at `now` (a datetime): `sft-<model>-<YYYYmmdd-HHMMSS>`, with
    only the characters a run folder and a model id take (a Hub name's "/" becomes "-")."""
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.")[:60] or "model"
    return f"sft-{stem}-{now:%Y%m%d-%H%M%S}"


# The chat template's own tokens: our models never saw them in pretraining (lora.trainable_tokens).
CHAT_TOKENS = ["<|im_start|>", "<|im_end|>"]


def sft_config(*, model: str, method: str, run_name: str, sources: list[str], shape: str, n_train: int,
               max_steps: int, lr: float, batch_size: int, eval_interval: int, lora_r: int, lora_alpha: int,
               num_workers: int, chat_tokens: bool = False) -> dict:
    """The Fine-tune page's choices as an SFT config (training/posttrain/config.py): what the
    page leaves out keeps the schema's default. `lora` is sent only for LoRA and QLoRA, with the
    chat tokens' embedding rows trainable when `chat_tokens`."""
    lora = {"r": lora_r, "alpha": lora_alpha, **({"trainable_tokens": CHAT_TOKENS} if chat_tokens else {})}
    config = {
        "run_name": run_name, "base": {"model": model}, "method": method,
        "data": {"sources": sources, "shape": shape, **({"n_train": n_train} if "instructions" in sources else {})},
        **({"lora": lora} if method != "full" else {}),
        "train": {"max_steps": max_steps, "lr": lr, "batch_size": batch_size,
                  "eval_interval": min(eval_interval, max_steps)},
        "scale": {"num_workers": num_workers},
    }
    return config


def replies_by_question(samples: list[dict]) -> dict[str, list[dict]]:
    """samples.jsonl's rows (the same held-out questions answered at every evaluation) turned
    around: question -> [{"step", "reply"}], newest first, so one question's answers read
    down the table as they improved."""
    out: dict[str, list[dict]] = {}
    for group in sorted(samples, key=lambda g: g.get("step") or 0, reverse=True):
        for s in group.get("samples") or []:
            out.setdefault(s.get("prompt", ""), []).append({"step": group.get("step"), "reply": s.get("text", "")})
    return out


def _percent(x: float | None) -> str:
    return "" if x is None else f"{100 * x:.1f}%"


def accuracy_rows(results: dict) -> list[dict]:
    """Base vs tuned exact-match accuracy per held-out split, from results.json, as the page shows them."""
    base, tuned = results.get("base") or {}, results.get("sft") or {}
    rows = []
    for split in [*[s for s in SFT_SPLITS if s in tuned or s in base],
                  *sorted((set(tuned) | set(base)) - set(SFT_SPLITS))]:
        b, t = base.get(split), tuned.get(split)
        change = f"{100 * (t - b):+.1f} pts" if b is not None and t is not None else ""
        rows.append({"split": f"{split} ({SFT_SPLITS[split]})" if split in SFT_SPLITS else split,
                     "base model": _percent(b), "fine-tuned": _percent(t), "change": change})
    return rows


def reply_rows(results: dict, split: str) -> list[dict]:
    """One held-out split's questions with the base model's and the tuned model's replies side
    by side, each marked ✓ or ✗ (exact match after normalising, as scored)."""
    def question(r: dict) -> str:
        return r["instruction"] + (f"\n{r['input']}" if r.get("input") else "")

    replies = results.get("replies") or {}
    base = {question(r): r for r in (replies.get("base") or {}).get(split) or []}
    tuned = (replies.get("sft") or {}).get(split) or []
    mark = {True: "✓", False: "✗", None: ""}
    rows = []
    for r in tuned or list(base.values()):
        q, b = question(r), base.get(question(r)) or {}
        t = r if tuned else {}
        rows.append({"question": q, "expected": r.get("expected", b.get("expected", "")),
                     "base reply": b.get("reply", ""), "base": mark[b.get("correct")],
                     "tuned reply": t.get("reply", ""), "tuned": mark[t.get("correct")]})
    return rows


def lineage_rows(lineage: dict | None) -> list[dict]:
    """What a tuned model came from (run.json's or playground.json's `lineage`), as table rows."""
    names = {"base_model": "base model", "method": "method", "data_snapshot": "data snapshot",
             "replay_snapshot": "replayed pretraining data", "parent_run": "parent run", "run_id": "fine-tuning run"}
    return [{"of the tuned model": label, "value": show_value(lineage[k]) if not isinstance(lineage[k], str) else lineage[k]}
            for k, label in names.items() if lineage and lineage.get(k) is not None]
