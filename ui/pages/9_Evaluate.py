"""Evaluate: a leaderboard of every model on every suite, evaluations started and followed, and items.

- Leaderboard: models x tasks, each model's latest score with its 95% interval, or normalised to
  chance (0 = guessing, 1 = perfect) so tasks with 2 and 4 choices average fairly; a radar chart of
  chosen models; CSV and JSON export; a paired test of two models on one task.
- Run: models and suites, backend (the served endpoint, or in-process), a limit per task, submitted
  as an `eval` job (POST /api/evals: `playground eval` on Ray).
- Evaluations: each evaluation's progress and rows (MMLU by category and subject), and its items:
  the prompt, the target and the model's answer, one by one.
- History: a run's scores against training step, from its evaluated checkpoints.
- Report cards: what each pipeline run (`make demo`) found, stage by stage, and two cards compared.

Like every page it only talks HTTP through `ui.client` (GET /api/leaderboard(/history, /breakdown),
/api/evals, /api/eval-tasks, /api/models, /api/reports, POST /api/evals). `?ev_view=Evaluations&ev_id=ID` opens an evaluation.
"""

import json

import streamlit as st

from ui.client import PlaygroundClient
from ui.format import readable
from ui.format_eval import (
    board_frame,
    breakdown_figure,
    breakdown_frame,
    compare_text,
    evals_frame,
    history_figure,
    interval_frame,
    radar_figure,
    record_frame,
)
from ui.widgets import call

st.set_page_config(page_title="Evaluate · LLM Playground", page_icon="📊", layout="wide")
client = PlaygroundClient()
st.title("📊 Evaluate")
st.caption("Every score here is lm-evaluation-harness's, on a finite set of questions: read it with its "
           "interval. Suites made from the starter world test what a small model can know; MMLU "
           "(14,042 questions) is the field's yardstick.")

VIEWS = {"Leaderboard": "models x tasks", "Run": "start an evaluation", "Evaluations": "progress and items",
         "History": "score against training step", "Report cards": "pipeline runs, stage by stage"}
view = st.radio("View", list(VIEWS), horizontal=True, key="ev_view", bind="query-params",
                captions=list(VIEWS.values()), label_visibility="collapsed")


def leaderboard_view() -> None:
    board = call(client.leaderboard)
    if board is None:
        return
    if not board["models"]:
        st.info("No scores yet: start an evaluation in the Run view, or `playground eval --model ID --tasks world`.")
        return
    tasks = st.multiselect("Tasks", board["tasks"], default=board["tasks"], key="ev_tasks")
    if not tasks:
        return
    if tasks != board["tasks"]:
        board = call(client.leaderboard, tasks)
        if board is None:
            return
    normalized = st.toggle("Normalise to chance (0 = guessing, 1 = perfect)", key="ev_norm")
    st.dataframe(readable(board_frame(board, normalized=normalized)), hide_index=True)
    with st.expander("Scores with their 95% intervals"):
        st.dataframe(interval_frame(board), hide_index=True)
    left, right = st.columns(2)
    csv = call(client.leaderboard_csv, tasks)
    if csv is not None:
        left.download_button("Download CSV", csv, "leaderboard.csv", "text/csv", key="ev_csv")
    right.download_button("Download JSON", json.dumps(board, indent=1), "leaderboard.json", "application/json",
                          key="ev_json")

    models = [m["model"] for m in board["models"]]
    chosen = st.multiselect("Radar chart of", models, default=models[:3], key="ev_radar")
    if chosen and len(tasks) >= 3:
        st.plotly_chart(radar_figure(board, chosen))
    elif chosen:
        st.caption("A radar chart needs three tasks or more.")

    if any(t.startswith("mmlu") for t in tasks):
        with st.expander("MMLU by subject"):
            mmlu_models = [m["model"] for m in board["models"]
                           if m["model"] in chosen and any(t.startswith("mmlu") for t in m["cells"])]
            parts = call(client.leaderboard_breakdown, "mmlu", mmlu_models or None)
            if parts is not None:
                st.plotly_chart(breakdown_figure(parts))
                st.dataframe(breakdown_frame(parts), hide_index=True)

    st.subheader("Is one model really better?")
    st.caption("A paired test on the items both models answered: the paired bootstrap of the difference, and "
               "McNemar's test for right/wrong scores. Overlapping intervals alone do not say.")
    c1, c2, c3 = st.columns(3)
    task = c1.selectbox("Task", tasks, key="ev_cmp_task")
    scored = [m["model"] for m in board["models"] if task in m["cells"]]
    a = c2.selectbox("Model A", scored, key="ev_cmp_a")
    b = c3.selectbox("Model B", [m for m in scored if m != a], key="ev_cmp_b")
    if a and b and st.button("Compare", key="ev_cmp_go"):
        result = call(client.compare_models, task, a, b)
        if result is not None:
            st.markdown(compare_text(result))


def run_view() -> None:
    models = call(client.models)
    catalog = call(client.eval_tasks)
    if models is None or catalog is None:
        return
    if not models:
        st.info("No models yet: `make demo` makes one.")
        return
    served = {m["id"] for m in models if m.get("deployed")}
    names = [m["id"] for m in models]
    with st.form("ev_form"):
        chosen = st.multiselect("Models", names, default=[n for n in names if n in served][:1] or names[:1],
                                key="ev_models")
        titles = {s["name"]: f"{s['name']}: {s['title']}" for s in catalog}
        tasks = st.multiselect("Suites", list(titles), default=[n for n in ("world_facts",) if n in titles],
                               format_func=titles.get, key="ev_suites")
        backend = st.radio("Backend", ["served", "served-chat", "hf"], horizontal=True, key="ev_backend",
                           captions=["the model as vLLM serves it (deploy it first)",
                                     "its chat endpoint: generation suites only",
                                     "in-process on its folder, with transformers"])
        limit = st.number_input("Items per task (0 = all)", min_value=0, value=50, step=10, key="ev_limit")
        every = st.checkbox("Every checkpoint of the run each model came from (in-process): a score against "
                            "training step, in the History view", key="ev_checkpoints")
        go = st.form_submit_button("Evaluate", type="primary")
    not_served = [m for m in chosen if m not in served]
    if backend != "hf" and not_served and not every:
        st.caption(f"Not served now: {', '.join(not_served)}. Deploy from the home page, or pick the hf backend.")
    if go:
        request = {"models": chosen, "tasks": tasks, "backend": "hf" if every else backend, "limit": int(limit) or None}
        out = call(client.submit_eval, request | ({"checkpoints": "all"} if every else {}))
        if out:
            st.success(f"Evaluation **{out['eval_id']}** started (job {out['job_id']}): follow it in the "
                       "Evaluations view.")


def evaluations_view() -> None:
    evals = call(client.evals)
    if evals is None:
        return
    if not evals:
        st.info("No evaluations yet: start one in the Run view.")
        return
    st.dataframe(evals_frame(evals), hide_index=True)
    ids = [e["eval_id"] for e in evals]
    if st.session_state.get("ev_id") not in ids:
        st.session_state["ev_id"] = ids[0]
    eval_id = st.selectbox("Evaluation", ids, key="ev_id", bind="query-params")
    record = call(client.eval, eval_id)
    if record is None:
        return
    p = record["progress"]
    st.progress(p["done"] / p["total"] if p["total"] else 0.0,
                text=f"{record['status']}: {p['done']} of {p['total']} (model, suite) pairs done"
                     + (f"; running {', '.join(p['running'])}" if p.get("running") else ""))
    for e in record.get("errors", []):
        st.error(f"{e['model']} on {e['suite']}: {e['error']}")
    if record["groups"]:
        st.subheader("Groups")
        st.dataframe(readable(record_frame(record, groups=True)), hide_index=True)
    st.subheader("Tasks")
    st.dataframe(readable(record_frame(record, groups=False)), hide_index=True)
    st.subheader("Items")
    rows = record["rows"]
    if not rows:
        return
    c1, c2 = st.columns(2)
    model = c1.selectbox("Model", sorted({r["model"] for r in rows}), key="ev_item_model")
    task = c2.selectbox("Task", sorted({r["task"] for r in rows if r["model"] == model}), key="ev_item_task")
    items = call(client.eval_samples, eval_id, model, task)
    if items:
        st.dataframe(readable(_items_frame(items["samples"])), hide_index=True)
    with st.expander("Lineage of each model and the config"):
        st.json({"models": record["models"], "config": record["config"], "environment": record.get("environment")})


def _items_frame(samples: list[dict]):
    import pandas as pd

    keep = [k for k in ("doc_id", "prompt", "target", "pred", "acc", "exact_match") if any(k in s for s in samples)]
    return pd.DataFrame([{k: s.get(k) for k in keep} for s in samples], columns=keep)


def history_view() -> None:
    runs = call(client.leaderboard_history)
    if runs is None:
        return
    if not runs["runs"]:
        st.info("No checkpoint scores yet: in the Run view tick *Every checkpoint*, or "
                "`playground eval --checkpoints all --model RUN --tasks world`.")
        return
    names = [r["run"] for r in runs["runs"]]
    run = st.selectbox("Run", names, format_func=lambda r: f"{r} ({len(runs['runs'][names.index(r)]['steps'])} "
                                                          "checkpoints scored)", key="ev_hist_run")
    hist = call(client.leaderboard_history, run)
    if hist is None:
        return
    st.caption("Each point is the newest evaluation of that step; the bars are 95% intervals. Points of the same "
               "task come from evaluations with the same items only when they used the same limit.")
    st.plotly_chart(history_figure(hist))
    import pandas as pd

    rows = [{"task": t, "step": p["step"], "model": p["model"], "score": p["score"], "vs chance": p["normalized"],
             "items": p["n"], "evaluation": p["eval_id"]} for t, pts in hist["series"].items() for p in pts]
    st.dataframe(readable(pd.DataFrame(rows)), hide_index=True)


def reports_view() -> None:
    cards = call(client.reports)
    if cards is None:
        return
    if not cards:
        st.info("No report cards yet: `make demo` ends with one.")
        return
    names = [c["name"] for c in cards]
    name = st.selectbox("Report card", names, key="ev_report")
    card = call(client.report, name)
    if card is not None:
        st.markdown(card["markdown"])
    if len(names) >= 2:
        st.subheader("Compare two cards")
        c1, c2 = st.columns(2)
        a = c1.selectbox("Card A", names, index=1, key="ev_report_a")
        b = c2.selectbox("Card B", names, index=0, key="ev_report_b")
        out = call(client.compare_reports, a, b)
        if out is not None:
            import pandas as pd

            st.dataframe(pd.DataFrame(out["rows"], columns=["stage", "figure", "a", "b", "change"]), hide_index=True)


{"Leaderboard": leaderboard_view, "Run": run_view, "Evaluations": evaluations_view, "History": history_view,
 "Report cards": reports_view}[view]()
