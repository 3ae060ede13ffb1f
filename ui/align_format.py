"""Pure helpers for alignment in the UI (no network, no Streamlit): the config the Align view
sends, the chart table of a run's metrics (the Runs page and the Align view draw the same),
the figures of results.json, and the SFT model's and the aligned model's replies side by side.

Kept apart from the pages (and from ui/format.py, which is full) so they can be unit-tested
without running an app.
"""

from __future__ import annotations

from typing import Any

from ui.format import figure, lineage_rows, show_value

ALIGN_KINDS = ("reward", "dpo", "grpo")
# What each method optimises: one line each, shown under the method's radio button.
ALIGN_METHODS = {
    "reward": "a scorer r(prompt, reply), trained so the chosen reply of every pair scores above the rejected one",
    "dpo": "the policy itself, straight from the pairs: chosen made likelier than rejected, relative to the SFT "
           "model (no reward model, no sampling)",
    "grpo": "the policy samples a group of replies per prompt, the reward model scores them, and replies above "
            "their group's mean are made likelier",
}
METHOD_NAMES = {"reward": "Reward model", "dpo": "DPO", "grpo": "GRPO"}
DPO_LOSSES = {"sigmoid": "the DPO paper's -log σ(β·margin)", "ipo": "IPO: the margin pulled to 1/(2β), never "
              "pushed to infinity", "hinge": "SLiC's max(0, 1 - β·margin)"}

# The configs/align/*.yaml defaults per method: max steps, learning rate, evaluate every.
TRAIN_DEFAULTS = {"reward": (100, 2e-4, 25), "dpo": (200, 1e-4, 50), "grpo": (40, 5e-5, 20)}

# ---- the config sent ------------------------------------------------------------------


def align_config(*, method: str, model: str, run_name: str, adapter: str = "full", reward_model: str | None = None,
                 beta: float | None = None, loss_type: str = "sigmoid", num_generations: int = 4, max_steps: int,
                 lr: float, batch_size: int, eval_interval: int) -> dict:
    """The Align view's choices as an alignment config (training/posttrain/align_config.py): what
    the view leaves out keeps the schema's default. A reward model always trains in full (its
    score head is new); `beta` is DPO's or GRPO's, by `method`; `reward_model` is GRPO's."""
    if method not in ALIGN_KINDS:
        raise ValueError(f"method: one of {', '.join(ALIGN_KINDS)}, not {method!r}")
    config: dict[str, Any] = {"run_name": run_name, "method": method, "base": {"model": model},
                              "adapter": "full" if method == "reward" else adapter}
    if method == "dpo":
        config["dpo"] = {"beta": 0.1 if beta is None else beta, "loss_type": loss_type}
    if method == "grpo":
        config["reward_model"] = reward_model
        config["grpo"] = {"num_generations": num_generations, **({"beta": beta} if beta is not None else {})}
    config["train"] = {"max_steps": max_steps, "lr": lr, "batch_size": batch_size,
                       "eval_interval": min(eval_interval, max_steps)}
    return config


def align_problem(config: dict) -> str | None:
    """What would stop the job that the schema does not check, as one line naming the key; None: nothing.

    GRPO samples `grpo.num_generations` replies per prompt inside each batch (TRL splits a batch into
    whole groups), and cannot start without a reward model."""
    if config.get("method") != "grpo":
        return None
    if not config.get("reward_model"):
        return "reward_model: GRPO needs a reward model to score its replies; train one first (Reward model)"
    groups = (config.get("grpo") or {}).get("num_generations", 4)
    batch = (config.get("train") or {}).get("batch_size", 16)
    if batch % groups:
        return (f"train.batch_size: {batch} replies per step do not split into groups of grpo.num_generations="
                f"{groups}; use a multiple of {groups}")
    return None


def align_run_name(method: str, model: str, now) -> str:
    """A run id for aligning `model` with `method` at `now` (a datetime): `<method>-<model>-<YYYYmmdd-HHMMSS>`."""
    import re

    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", model).strip("-.")[:60] or "model"
    return f"{method}-{stem}-{now:%Y%m%d-%H%M%S}"


def kind_of(model: dict) -> str | None:
    """What a row of GET /api/models is: its lineage's kind (sft, reward, dpo, grpo), None for an export."""
    return (model.get("lineage") or {}).get("kind")


def policy_models(models: list[dict]) -> list[str]:
    """The models an alignment run can start from: SFT models first, then the others, never a reward
    model (a scorer, not a policy)."""
    ranked = sorted((m for m in models if kind_of(m) != "reward"), key=lambda m: kind_of(m) != "sft")
    return [m["id"] for m in ranked]


def reward_models(models: list[dict], policy: str | None = None) -> list[str]:
    """The reward models of the workspace, those trained from `policy` first (a reward model must read
    the policy's tokens, and one trained from the same SFT model does)."""
    found = [m for m in models if kind_of(m) == "reward"]
    found.sort(key=lambda m: (m.get("lineage") or {}).get("base_model") != policy)
    return [m["id"] for m in found]


# ---- charts ---------------------------------------------------------------------------

# (title, columns, caption): the caption a str, or by run kind ("" for any other kind). A chart
# is drawn when any of its columns has a value, with the columns that do.
_PAIR_ACCURACY = {"": "share of pairs where the chosen reply scores higher; 0.5 is a coin toss",
                  "dpo": "share of pairs where the chosen reply's implicit reward is the higher one; 0.5 is a "
                         "coin toss"}
_MARGIN = {"": "r(chosen) - r(rejected), averaged over the pairs: how far apart the reward model puts them",
           "dpo": "implicit reward of the chosen reply minus the rejected one's: what the DPO loss pushes up"}
_REWARD = ("the reward model's mean score of the sampled replies; the spread within a group is what GRPO learns "
           "from: no spread, no signal")
_IMPLICIT = ("β·log(π/π_ref) of each reply; both may fall: what matters is the margin between them, not their "
             "absolute values")
_LENGTH = "mean length of the sampled replies: a policy that games the reward model often makes them longer or shorter"
_KL = ("KL(policy || SFT reference) per token, measured over the full vocabulary on fixed held-out prompts: how far "
       "the policy has moved")
CHARTS: tuple[tuple[str, tuple[str, ...], str | dict | None], ...] = (
    ("Loss", ("loss", "val_loss"), None),
    ("Pair accuracy", ("pair_accuracy", "val_pair_accuracy"), _PAIR_ACCURACY),
    ("Margin", ("margin", "val_margin"), _MARGIN),
    ("Implicit rewards", ("rewards_chosen", "rewards_rejected"), _IMPLICIT),
    ("Reward and its spread", ("reward", "val_reward", "reward_std"), _REWARD),
    ("KL to the SFT model (nats per token)", ("kl", "grpo_kl"), _KL),
    ("Reply length (tokens)", ("reply_length",), _LENGTH),
    ("Perplexity (validation)", ("perplexity",), None),
    ("Learning rate", ("lr",), None),
    ("Gradient norm", ("grad_norm",), None),
    ("Tokens / s", ("tokens_per_s",), None),
    ("MFU (share of the device's peak FLOP/s)", ("mfu",), None),
    ("Peak memory (MB)", ("memory_mb",), None),
)


def _at_evals(column: str) -> bool:
    """Logged only at evaluations: joined between them so the chart draws a line, not dots."""
    return column.startswith("val_") or column == "kl"


def metric_frame(metrics: list[dict]):
    """metrics.jsonl's rows as one row per step (a pandas DataFrame indexed by step); the columns logged
    only at evaluations (val_*, kl) interpolated between them, never past the first or last."""
    import pandas as pd

    df = pd.DataFrame(metrics)
    if df.empty or "step" not in df:
        return pd.DataFrame()
    df = df.groupby("step").last().sort_index()  # eval rows may repeat a step: keep one per step
    for column in [c for c in df.columns if _at_evals(c) and pd.api.types.is_numeric_dtype(df[c])]:
        df[column] = df[column].interpolate(method="index", limit_area="inside")
    return df


def chart_table(df, kind: str | None = None) -> list[tuple[str, list[str], str | None]]:
    """The charts of a run's metric frame `df` (see `metric_frame`): (title, columns, caption) for every
    chart whose columns have values, in order; `kind` (the run's: pretrain, sft, reward, dpo, grpo)
    picks the caption where the same figure means another thing (a reward model's margin, DPO's)."""
    present = {c for c in df.columns if df[c].notna().any()}
    table = []
    for title, columns, caption in CHARTS:
        shown = [c for c in columns if c in present]
        if not shown:
            continue
        if isinstance(caption, dict):
            caption = caption.get(kind or "", caption[""])
        if shown == ["kl", "grpo_kl"]:
            caption = f"{caption}; grpo_kl: TRL's own estimate, on the sampled replies"
        elif shown == ["grpo_kl"]:  # before the first evaluation measures ours
            caption = "grpo_kl: TRL's estimate of KL(policy || reference) on the sampled replies"
        table.append((title, shown, caption))
    return table


# The figures above the charts, by run kind: (column, label); the loss for any kind.
HEADLINES = {"reward": (("val_pair_accuracy", "Validation pair accuracy"), ("val_margin", "Validation margin")),
             "dpo": (("val_pair_accuracy", "Validation pair accuracy"), ("val_margin", "Validation margin"),
                     ("kl", "KL to the SFT model")),
             "grpo": (("reward", "Reward"), ("reward_std", "Reward spread"), ("kl", "KL to the SFT model"))}


def headline(df, kind: str | None) -> list[tuple[str, str]]:
    """The latest value of the run's key figures (`HEADLINES`, then the loss) as (label, text); "–" where
    the run has not logged one yet."""
    out = []
    for column, label in (*HEADLINES.get(kind or "", ()), ("loss", "Loss")):
        values = df[column].dropna() if column in df else ()
        value = values.iloc[-1] if len(values) else None
        out.append((label, "–" if value is None else _pct(value) if column.endswith("pair_accuracy")
                    else figure(column, float(value))))
    return out


# ---- results --------------------------------------------------------------------------


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.1f}%"


def _num(x: float | None, fmt: str = "+.3f") -> str:
    return "–" if x is None else format(x, fmt)


def result_figures(results: dict) -> list[dict]:
    """results.json's figures as the Align view shows them: one {label, value, delta, help} per
    st.metric (delta None: no change to show)."""
    reward = results.get("method") == "reward"
    figures = [
        {"label": "Held-out pair accuracy", "value": _pct(results.get("heldout_pair_accuracy")), "delta": None,
         "help": "share of held-out pairs where the chosen reply scores higher; 0.5 is a coin toss" if reward
         else "share of held-out pairs the policy prefers the chosen reply of more than the SFT model does"},
        {"label": "Held-out margin", "value": _num(results.get("heldout_margin")), "delta": None,
         "help": "mean r(chosen) - r(rejected)" if reward else
         "mean log(π/π_ref)(chosen) - log(π/π_ref)(rejected), in nats"},
    ]
    if reward:
        figures.append({"label": "Held-out pairs", "value": f"{results.get('heldout_pairs') or 0:,}", "delta": None,
                        "help": "pairs scored"})
        return figures
    before, after, tax = (results.get(k) for k in ("sft_accuracy_before", "sft_accuracy_after", "alignment_tax"))
    figures += [
        {"label": "KL to the SFT model", "value": _num(results.get("kl"), ".4f"), "delta": None,
         "help": "nats per token, over the full vocabulary, on fixed held-out prompts"},
        {"label": "SFT accuracy, before → after", "value": f"{_pct(before)} → {_pct(after)}",
         "delta": None if tax is None else f"{100 * tax:+.1f} pts",
         "help": "exact match on the held-out questions; the change is the alignment tax"},
    ]
    if results.get("method") == "grpo":
        gain = results.get("reward_gain")
        figures.append({"label": "Reward, before → after",
                        "value": f"{_num(results.get('mean_reward_before'))} → {_num(results.get('mean_reward_after'))}",
                        "delta": None if gain is None else f"{gain:+.3f}",
                        "help": "the reward model's mean score of the greedy replies to the held-out questions"})
    return figures


def side_by_side(results: dict) -> list[dict]:
    """The SFT model's and the aligned model's replies to the same held-out questions (results.json's
    `replies` before / after): question, expected, SFT reply, aligned reply, each marked ✓ or ✗."""
    def question(r: dict) -> str:
        return r["instruction"] + (f"\n{r['input']}" if r.get("input") else "")

    replies = results.get("replies") or {}
    before = {question(r): r for r in replies.get("before") or []}
    after = replies.get("after") or []
    mark = {True: "✓", False: "✗", None: ""}
    rows = []
    for r in after or list(before.values()):
        b, a = before.get(question(r)) or {}, r if after else {}
        rows.append({"question": question(r), "expected": r.get("expected", b.get("expected", "")),
                     "SFT reply": b.get("reply", ""), "SFT": mark[b.get("correct")],
                     "aligned reply": a.get("reply", ""), "aligned": mark[a.get("correct")]})
    return rows


_ALIGN_LINEAGE = {"adapter": "adapter", "preference_snapshot": "preference snapshot", "reward_model": "reward model",
                  "beta": "beta", "loss_type": "DPO loss", "num_generations": "replies per prompt"}


def align_lineage_rows(lineage: dict | None) -> list[dict]:
    """What an aligned model came from: the fine-tuning lineage rows (ui.format) and alignment's own."""
    rows = lineage_rows(lineage)
    return rows + [{"of the tuned model": label, "value": show_value(lineage[k]) if not isinstance(lineage[k], str)
                    else lineage[k]} for k, label in _ALIGN_LINEAGE.items() if lineage and lineage.get(k) is not None]
