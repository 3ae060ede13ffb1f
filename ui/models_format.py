"""Tables for the Models page, from the JSON of /api/models/... (pure functions: tested without a browser)."""

from __future__ import annotations

import re

import pandas as pd

from ui.format import human_bytes

KIND_ICON = {"pretrained": "🧱", "sweep": "🎛️", "sft": "🎓", "reward": "⚖️", "dpo": "🎯", "grpo": "🎲",
             "quantized": "🗜️", "imported": "📥"}
_PROGRESS = re.compile(r"progress: (\d+)/(\d+)")


def filter_rows(rows: list[dict], kinds: list[str] | None = None, text: str = "", served_only: bool = False) -> list[dict]:
    """The registry rows of the chosen kinds whose id or parent contains `text` (served ones only if asked)."""
    text = text.strip().lower()
    return [r for r in rows
            if (not kinds or r["kind"] in kinds)
            and (not text or text in r["id"].lower() or text in (r.get("parent") or "").lower())
            and (not served_only or r.get("deployed"))]


def registry_table(rows: list[dict]) -> pd.DataFrame:
    """One line a model: what it is, what it came from, its size, whether it is served."""
    return pd.DataFrame([{"model": r["id"], "kind": f"{KIND_ICON.get(r['kind'], '')} {r['kind']}",
                          "parent": r.get("parent") or "", "architecture": r.get("architecture") or "",
                          "size": human_bytes(r.get("size_bytes")), "served": "🟢" if r.get("deployed") else "",
                          "created": (r.get("created_at") or "").replace("T", " ")[:16]} for r in rows],
                        columns=["model", "kind", "parent", "architecture", "size", "served", "created"])


def checkpoint_table(rows: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"checkpoint": c["name"], "step": c["step"], "kind": c["kind"],
                          "val loss": round(c["val_loss"], 4) if c.get("val_loss") is not None else None,
                          "size": human_bytes(c.get("size_bytes")),
                          "exported as": ", ".join(c.get("exported_as") or [])} for c in rows],
                        columns=["checkpoint", "step", "kind", "val loss", "size", "exported as"])


def eval_table(rows: list[dict]) -> pd.DataFrame:
    def ci(r):
        return f"[{r['ci95'][0]:.3f}, {r['ci95'][1]:.3f}]" if r.get("ci95") else ""

    return pd.DataFrame([{"task": r["task"], "metric": r.get("metric"), "score": r.get("score"), "95% CI": ci(r),
                          "n": r.get("n"), "evaluation": r.get("eval_id")} for r in rows],
                        columns=["task", "metric", "score", "95% CI", "n", "evaluation"])


def diff_table(diff: dict) -> pd.DataFrame:
    """Per layer: parameters, relative weight change ||b - a|| / ||a||, cosine similarity."""
    return pd.DataFrame([{"layer": r["layer"], "params": r["params"], "relative change": r["relative_change"],
                          "cosine": r["cosine"]} for r in diff.get("layers", [])],
                        columns=["layer", "params", "relative change", "cosine"])


def score_table(scores: list[dict]) -> pd.DataFrame:
    return pd.DataFrame([{"task": s["task"], "metric": s.get("metric"), "a": s["a"], "b": s["b"],
                          "change": s["delta"]} for s in scores], columns=["task", "metric", "a", "b", "change"])


def diff_options(rows: list[dict], checkpoints: list[dict]) -> list[str]:
    """What can be compared: every model, and the selected model's run checkpoints (`<run>@<step>`)."""
    return [r["id"] for r in rows] + [c["name"] for c in checkpoints]


def log_progress(lines: list[str]) -> tuple[int, int] | None:
    """(done, total) from the last `progress: done/total` line a job printed (a Hub download), else None."""
    for line in reversed(lines):
        if m := _PROGRESS.search(line):
            return int(m.group(1)), int(m.group(2))
    return None


def serving_note(detail: dict) -> str | None:
    """Why the Deploy button is off for this model on this machine, or None when it can be served."""
    serving = detail.get("serving") or {}
    return None if serving.get("servable", True) else f"Not servable on this machine: {serving.get('reason')}"
