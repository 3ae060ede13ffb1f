"""Sweeps: Ray Tune hyperparameter searches, their trials, the best config and how the
settings relate to the result (parallel coordinates, a scatter per setting, the curves).

Everything comes from /api/sweeps (services/sweeps_api.py), which reads each sweep's record
as Tune rewrites it, so a running sweep can be followed live; sweeps are started as jobs
(`playground tune` through /api/jobs).
"""

import altair as alt
import pandas as pd
import streamlit as st
import yaml

from ui.client import PlaygroundClient
from ui.format import figure, parallel_rows, readable, show_value, trial_rows
from ui.widgets import call, submit_yaml_job

st.set_page_config(page_title="Sweeps · LLM Playground", page_icon="🎛️", layout="wide")
client = PlaygroundClient()
st.title("🎛️ Sweeps")

EXAMPLE = """name: lr
base: configs/pretrain/nano.yaml
fixed:
  train.max_steps: 300
  train.eval_interval: 50
  train.sample_tokens: 0
search:
  train.lr: {loguniform: [3.0e-4, 3.0e-2]}
num_samples: 8
max_concurrent_trials: 2
scheduler: {type: asha, grace_period: 50, reduction_factor: 2}
"""

with st.expander("Start a sweep", expanded=False):
    st.caption("Each trial is a Ray Train run of the base config with the searched keys set; ASHA stops "
               "the trials that trail at 50, 100, 200... steps. Keys take grid, choice, uniform or loguniform.")
    text = st.text_area("Sweep (YAML, like configs/tune/*.yaml)", EXAMPLE, height=300, key="sweep_config")
    if st.button("Start sweep", type="primary") and (out := submit_yaml_job(client.submit_job, "tune", text)):
        st.success(f"Submitted job {out['job_id']}: its sweep appears below once Tune starts "
                   "(the Jobs page has its log).")

sweeps = call(client.sweeps)
if sweeps is None:
    st.stop()
if not sweeps:
    st.info("No sweeps yet: start one above, or run `playground tune --config configs/tune/lr.yaml`.")
    st.stop()

st.dataframe(readable(pd.DataFrame(sweeps)), hide_index=True)
sweep_id = st.selectbox("Sweep", [s["sweep_id"] for s in sweeps], key="sweeps_selected")


def show_sweep(sweep_id: str) -> None:
    record = call(client.sweep, sweep_id)
    if record is None:
        return
    metric = record["metric"]
    rows, columns = trial_rows(record)
    metric_col = f"best {metric}"
    done = sum(r["status"] in ("TERMINATED", "EARLY_STOPPED") for r in rows)
    st.caption(f"{record['status']} · {done} of {len(rows)} trials finished · {metric} ({record['mode']}) · "
               f"{record['max_steps']} steps each at most · started {record['created_at']}")

    best = record.get("best_trial")
    if best:
        left, right = st.columns([1, 2])
        left.metric(f"Best {metric}", figure(metric, record["best_metric"]), help=f"trial {best}")
        params = record["trials"][best]["params"]
        right.markdown("**Best config** (trial " + best + ")")
        right.code(yaml.safe_dump(params, sort_keys=False), language="yaml")
        reg = record.get("registered") or {}
        if reg.get("model"):
            what = f"Best checkpoint ({reg['run_id']}, {reg['checkpoint']}) exported as model" if reg.get("checkpoint") \
                else f"Best trial's fine-tuned model ({reg['run_id']}):"
            st.success(f"{what} **{reg['model']}**" + (f", MLflow model {reg['mlflow_model']} v{reg['mlflow_version']}"
                                                if reg.get("mlflow_version") else "")
                       + ". Deploy it from the home page.")

    st.subheader("Trials")
    table = pd.DataFrame(rows)
    for col in columns:  # lists and mappings as text, so the table renders any search
        table[col] = table[col].map(lambda v: v if isinstance(v, (int, float, str)) or v is None else show_value(v))
    st.dataframe(readable(table), hide_index=True)  # rounded on screen; `table` keeps the numbers for the plots

    if not rows or table[metric_col].isna().all():
        st.info("No trial has reported an evaluation yet.")
        return
    st.subheader("How the settings relate to the result")
    para = pd.DataFrame(parallel_rows(rows, columns, metric_col))
    if not para.empty:
        st.markdown("**Parallel coordinates** (each line a trial; axes scaled 0–1, colour = " + metric_col + ")")
        chart = alt.Chart(para).mark_line(point=True).encode(
            x=alt.X("axis:N", sort=[*columns, metric_col], title=None),
            y=alt.Y("scaled:Q", title=None, axis=None),
            color=alt.Color("metric:Q", scale=alt.Scale(scheme="viridis", reverse=True), title=metric),
            detail="trial:N", tooltip=["trial", "axis", "value", "metric"])
        st.altair_chart(chart, use_container_width=True)
    numeric = [c for c in columns if pd.api.types.is_numeric_dtype(table[c])]
    if numeric:
        cols = st.columns(min(len(numeric), 3))
        for i, col in enumerate(numeric):
            values = table[col].dropna()
            log = bool(len(values)) and values.min() > 0 and values.max() / values.min() > 20
            with cols[i % len(cols)]:
                st.markdown(f"**{metric_col}** vs **{col}**")
                st.altair_chart(alt.Chart(table).mark_circle(size=80).encode(
                    x=alt.X(f"{col}:Q", scale=alt.Scale(type="log" if log else "linear"), title=col),
                    y=alt.Y(f"{metric_col}:Q", scale=alt.Scale(zero=False), title=metric),
                    color="status:N", tooltip=["trial", col, metric_col, "status"]), use_container_width=True)
    curves = pd.DataFrame([{"trial": t, "step": s, metric: v} for t, trial in record["trials"].items()
                           for s, v in trial.get("curve") or []])
    if not curves.empty:
        st.markdown(f"**{metric}** vs step, per trial (ASHA stops the trailing ones early)")
        st.altair_chart(alt.Chart(curves).mark_line(point=True).encode(
            x="step:Q", y=alt.Y(f"{metric}:Q", scale=alt.Scale(zero=False)), color="trial:N",
            tooltip=["trial", "step", metric]), use_container_width=True)


running = next((s["status"] == "RUNNING" for s in sweeps if s["sweep_id"] == sweep_id), False)
live = st.toggle("Live: refresh every 2 s while it runs", value=running, key=f"sweep_live_{sweep_id}")
st.fragment(show_sweep, run_every=2 if live else None)(sweep_id)
