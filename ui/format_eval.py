"""Tables and charts of the Evaluate page, from what /api/leaderboard and /api/evals return.

Pure functions of JSON (no Streamlit, no HTTP), so the unit tests check them directly.
"""

from __future__ import annotations

import pandas as pd


def board_frame(board: dict, *, normalized: bool = False) -> pd.DataFrame:
    """One row per model: the average normalised score, then each task's score (or its score
    normalised to chance, 0 = guessing, 1 = perfect). Numbers, so the table sorts by any column."""
    rows = []
    for m in board["models"]:
        row = {"model": m["model"], "average (vs chance)": m["average"], "tasks": m["n_tasks"]}
        for t in board["tasks"]:
            cell = m["cells"].get(t) or {}
            row[t] = cell.get("normalized" if normalized else "score")
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", "average (vs chance)", "tasks", *board["tasks"]])


def interval_frame(board: dict) -> pd.DataFrame:
    """Each score with its 95% interval and item count, as text: `0.750 [0.652, 0.848] n=100`."""
    rows = []
    for m in board["models"]:
        row = {"model": m["model"]}
        for t in board["tasks"]:
            c = m["cells"].get(t)
            if not c:
                row[t] = ""
                continue
            ci = f" [{c['ci95'][0]:.3f}, {c['ci95'][1]:.3f}]" if c.get("ci95") else ""
            row[t] = f"{c['score']:.3f}{ci} n={c.get('n') or '?'}"
        rows.append(row)
    return pd.DataFrame(rows, columns=["model", *board["tasks"]])


def radar_figure(board: dict, models: list[str]):
    """A radar chart of the chosen models' normalised scores, one spoke per task (plotly)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    tasks = board["tasks"]
    for m in board["models"]:
        if m["model"] not in models:
            continue
        values = [(m["cells"].get(t) or {}).get("normalized") for t in tasks]
        values = [v if v is not None else 0.0 for v in values]
        fig.add_trace(go.Scatterpolar(r=values + values[:1], theta=tasks + tasks[:1], fill="toself",
                                      name=m["model"]))
    fig.update_layout(polar={"radialaxis": {"range": [min(-0.1, _lowest(fig)), 1.0]}}, showlegend=True,
                      margin={"l": 40, "r": 40, "t": 30, "b": 30}, height=420)
    return fig


def history_figure(history: dict):
    """Each task's score against training step, with its 95% interval as error bars (plotly)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for task, points in history["series"].items():
        if not points:
            continue
        ci = [p.get("ci95") or [p["score"], p["score"]] for p in points]
        fig.add_trace(go.Scatter(
            x=[p["step"] for p in points], y=[p["score"] for p in points], mode="lines+markers", name=task,
            error_y={"type": "data", "symmetric": False, "array": [hi - p["score"] for p, (_, hi) in zip(points, ci)],
                     "arrayminus": [p["score"] - lo for p, (lo, _) in zip(points, ci)]},
            text=[p["model"] for p in points], hovertemplate="%{text}<br>step %{x}: %{y:.3f}<extra>" + task + "</extra>"))
    fig.update_layout(xaxis_title="training step", yaxis_title="score", height=380,
                      margin={"l": 40, "r": 20, "t": 30, "b": 40})
    return fig


def breakdown_frame(breakdown: dict) -> pd.DataFrame:
    """One row per task of the group (MMLU: subject, with its category), one column per model."""
    rows = []
    for member in breakdown["members"]:
        row = {"category": member["category"], "task": member["task"].removeprefix("mmlu_offline_")}
        for m in breakdown["models"]:
            row[m["model"]] = (m["cells"].get(member["task"]) or {}).get("score")
        rows.append(row)
    return pd.DataFrame(rows, columns=["category", "task", *(m["model"] for m in breakdown["models"])])


def breakdown_figure(breakdown: dict):
    """Per-task scores of each model as grouped bars, tasks ordered by category (plotly)."""
    import plotly.graph_objects as go

    frame = breakdown_frame(breakdown)
    fig = go.Figure()
    labels = [f"{c} / {t}" if c else t for c, t in zip(frame["category"], frame["task"])]
    for m in breakdown["models"]:
        fig.add_trace(go.Bar(y=labels, x=frame[m["model"]], name=m["model"], orientation="h"))
    fig.update_layout(barmode="group", height=max(300, 18 * len(labels) * max(1, len(breakdown["models"])) // 2),
                      xaxis={"title": "accuracy", "range": [0, 1]}, yaxis={"autorange": "reversed"},
                      margin={"l": 40, "r": 20, "t": 30, "b": 40})
    return fig


def _lowest(fig) -> float:
    values = [v for trace in fig.data for v in trace.r]
    return min(values) if values else 0.0


def evals_frame(evals: list[dict]) -> pd.DataFrame:
    rows = [{"evaluation": e["eval_id"], "status": e["status"],
             "progress": f"{e['progress']['done']}/{e['progress']['total']}" if e.get("progress") else "",
             "models": ", ".join(e["models"]), "tasks": ", ".join(e["tasks"]), "backend": e["backend"],
             "started": e.get("created_at")} for e in evals]
    return pd.DataFrame(rows, columns=["evaluation", "status", "progress", "models", "tasks", "backend", "started"])


def record_frame(record: dict, *, groups: bool) -> pd.DataFrame:
    """An evaluation's rows: per (model, task) the metric, score, interval and vs-chance score."""
    rows = [{"model": r["model"], "task": r["task"], "metric": r["metric"], "score": r["score"],
             "95% CI": f"{r['ci95'][0]:.3f}-{r['ci95'][1]:.3f}" if r.get("ci95") else "",
             "vs chance": r["normalized"], "items": r["n"]}
            for r in record["groups" if groups else "rows"]]
    return pd.DataFrame(rows, columns=["model", "task", "metric", "score", "95% CI", "vs chance", "items"])


def compare_text(result: dict) -> str:
    """What a paired test found, in one paragraph a learner can act on."""
    boot = result["bootstrap"]
    if not boot["n"]:
        return "The two models share no items on this task."
    lo, hi = boot["ci95"]
    verdict = ("a real difference at the 5% level" if boot["p_value"] < 0.05
               else "no difference the test can tell from chance")
    text = (f"On {boot['n']} shared items, {result['a']} scores {result['mean_a']:.3f} and {result['b']} "
            f"{result['mean_b']:.3f}: a difference of {boot['diff']:+.3f} (95% interval {lo:+.3f} to {hi:+.3f}, "
            f"paired bootstrap p = {boot['p_value']:.3g}): {verdict}.")
    if "mcnemar" in result:
        mc = result["mcnemar"]
        text += (f" McNemar: {mc['only_a']} items only {result['a']} got right, {mc['only_b']} only "
                 f"{result['b']} (p = {mc['p_value']:.3g}).")
    return text
