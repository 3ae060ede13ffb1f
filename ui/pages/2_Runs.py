"""Training runs: loss curves, learning rate and throughput per step, the text the model
generated as it trained, and what differs between two runs' configs. An alignment run (reward
model, DPO, GRPO) adds its own curves (pair accuracy, margin, implicit rewards, reward, KL to
the SFT model), each with a line on what it means.

HTTP routes (through `ui.client`): GET /api/runs, GET /api/runs/{run}.
"""

import time

import pandas as pd
import streamlit as st

from ui.align_format import metric_frame
from ui.client import ApiError, PlaygroundClient
from ui.format import config_diff, readable, show_value
from ui.widgets import charts

st.set_page_config(page_title="Runs · LLM Playground", page_icon="📈", layout="wide")
client = PlaygroundClient()
st.title("📈 Training runs")

try:
    runs = client.runs()
except ApiError as e:
    st.error(str(e))
    st.stop()

if not runs:
    st.info("No training runs yet: pretrain a model (docs/tutorial.md), then its run appears here.")
    st.stop()

# Rounded as people read them (10,709 tokens/s, loss 3.2146); the charts below get the raw values.
st.dataframe(readable(pd.DataFrame(runs)), hide_index=True)
names = [r["run"] for r in runs]
kinds = {r["run"]: r.get("kind") for r in runs}
run_id = st.selectbox("Run", names, key="runs_selected", bind="query-params")  # ?runs_selected=RUN opens it


def _load(run: str) -> dict | None:
    try:
        return client.run(run)
    except ApiError as e:
        st.error(str(e))
        return None


def _samples(detail: dict) -> None:
    st.subheader("Generated samples")
    samples = sorted(detail.get("samples") or [], key=lambda s: s.get("step", 0), reverse=True)
    if not samples:
        st.caption("No samples logged for this run.")
    for i, group in enumerate(samples):
        # Newest first and open: that is the model as it is now; older steps show its progress.
        with st.expander(f"Step {group.get('step')}", expanded=i == 0):
            for s in group.get("samples") or []:
                st.text(f"prompt: {s.get('prompt', '')}")
                st.code(s.get("text", ""), language=None, wrap_lines=True)


def show_run(run: str) -> dict | None:
    """Everything about one run, read fresh from the server (so a reload loses nothing)."""
    detail = _load(run)
    if detail is None:
        return None
    metrics = detail.get("metrics") or []
    df = metric_frame(metrics)
    if df.empty:
        st.info("This run has logged no metrics yet.")
    else:
        last = metrics[-1]
        age = time.time() - last["time"] if last.get("time") else None
        st.caption(f"step {int(df.index[-1])}, last logged "
                   + (f"{age:.0f} s ago" if age is not None else "at an unknown time"))
        charts(df, kinds.get(run))
    _samples(detail)
    return detail


metrics_now = (_load(run_id) or {}).get("metrics") or []
recent = bool(metrics_now) and time.time() - (metrics_now[-1].get("time") or 0) < 120
live = st.toggle("Live: refresh every 2 s while it trains", value=recent, key=f"live_{run_id}")
# A fragment reruns on its own timer without rerunning the whole page.
detail = st.fragment(show_run, run_every=2 if live else None)(run_id)

# ---- config diff ---------------------------------------------------------------------
st.subheader("Compare configs")
if len(names) < 2:
    st.caption("Train a second run to compare configs.")
else:
    left, right = st.columns(2)
    a = left.selectbox("Run A", names, index=names.index(run_id), key="diff_a")
    b = right.selectbox("Run B", names, index=(names.index(run_id) + 1) % len(names), key="diff_b")
    cfg_a = (detail if a == run_id else _load(a)) or {}
    cfg_b = (detail if b == run_id else _load(b)) or {}
    rows = config_diff(cfg_a.get("config") or {}, cfg_b.get("config") or {})
    if a == b:
        st.caption("Pick two different runs.")
    elif not rows:
        st.success("The two configs are identical.")
    else:
        st.dataframe(pd.DataFrame([(k, show_value(x), show_value(y)) for k, x, y in rows],
                                  columns=["key", a, b]), hide_index=True)
