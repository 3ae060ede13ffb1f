"""Small Streamlit helpers shared by the pages (the network stays in ui/client.py)."""

import time
from collections.abc import Callable

import streamlit as st
import yaml

from ui.client import ApiError


def call(fn, *args, **kwargs):
    """Call the API; on failure show its one-line error (never a traceback) and return None."""
    try:
        return fn(*args, **kwargs)
    except ApiError as e:
        st.error(str(e))
        return None


def submit_yaml_job(submit: Callable[[str, dict], dict], kind: str, text: str) -> dict | None:
    """Parse a YAML config typed in a text area and submit it as a `kind` job; a YAML or API
    mistake is shown as one line. Returns the API's answer, or None."""
    try:
        config = yaml.safe_load(text) or {}
    except yaml.YAMLError as e:
        st.error(f"config: not valid YAML ({str(e).splitlines()[0]})")
        return None
    if not isinstance(config, dict):
        st.error("config: a YAML mapping of keys to values, like the files in configs/")
        return None
    return call(submit, kind, config)


DONE_STATES = ("SUCCEEDED", "FAILED", "STOPPED")


def follow_job(state_key: str, fetch: Callable[[str], dict], progress_text: Callable[[dict], str],
               on_success: Callable[[dict], str], failed: str) -> None:
    """Poll the job whose id is in `st.session_state[state_key]` with a progress bar until it
    ends (about 10 minutes at most; rerunning the page looks again), then say how it ended."""
    job_id = st.session_state.get(state_key)
    if not job_id:
        return
    bar = st.progress(0.0, text=f"job {job_id}: starting")
    for _ in range(1200):
        status = call(fetch, job_id)
        if status is None:
            return
        p = status["progress"]
        bar.progress(min(p["done"] / p["total"], 1.0) if p["total"] else 0.0,
                     text=f"job {job_id}: {status['status']}, {progress_text(status)}")
        if status["status"] in DONE_STATES:
            if status["status"] == "SUCCEEDED":
                st.success(on_success(status))
            else:
                st.error(f"{failed}: {status.get('error') or status['status']}")
            del st.session_state[state_key]
            return
        time.sleep(0.5)


def pending_job(client, state_key: str, run_ids: list[str], preparing: str) -> None:
    """The job a page submitted (st.session_state[state_key]: job_id and run), while its run has
    not appeared yet: its failure, or that it is still `preparing` (e.g. "its data and model")."""
    sub = st.session_state.get(state_key)
    if not sub or sub["run"] in run_ids:
        return
    job = call(client.job, sub["job_id"])
    if job is None:
        return
    if job["status"] == "FAILED":
        st.error(f"Job {sub['job_id']} (run {sub['run']}) failed: {job.get('error') or job.get('message')}")
    elif job["status"] in ("PENDING", "RUNNING"):
        st.info(f"Job {sub['job_id']} is {job['status']}: run **{sub['run']}** appears here once it has prepared "
                f"{preparing}. Press Refresh.")


def charts(df, kind: str | None) -> None:
    """A run's curves, two per row: every chart its metrics allow (ui/align_format.py `chart_table`),
    an alignment curve with one line on how to read it (the Runs page and the Align view)."""
    from ui.align_format import chart_table

    cols = st.columns(2)
    for i, (title, columns, caption) in enumerate(chart_table(df, kind)):
        with cols[i % 2]:
            st.markdown(f"**{title}** vs step")
            if caption:
                st.caption(caption)
            st.line_chart(df[columns].dropna(how="all"))


def serve_it(model: str, info: dict | None, deploy: Callable[[str], None], key: str) -> None:
    """"Serve it": whether `model` (its GET /api/models row `info`) is served, a link to chat with
    it, or a Deploy button whose callback is `deploy(model)`."""
    st.subheader("Serve it")
    if info is None:
        st.warning(f"`{model}` is not among the workspace's models (GET /api/models).")
    elif info.get("deployed"):
        st.success(f"`{model}` is being served.")
        st.page_link("pages/1_Chat.py", label="Chat with it")
    else:
        st.button(f"Deploy {model}", key=key, type="primary", on_click=deploy, args=(model,))
