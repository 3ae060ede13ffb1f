"""Jobs: start a training, fine-tuning, tokenizer or data job on the cluster, follow its log, stop it.

Everything goes through /api/jobs (services/jobs_api.py): the jobs are Ray jobs, so they
keep running, and stay listed, when this page or the API restarts; `ray job list` and the
Ray dashboard show the same ones.
"""

import pandas as pd
import streamlit as st

from ui.client import PlaygroundClient
from ui.widgets import call, submit_yaml_job

st.set_page_config(page_title="Jobs · LLM Playground", page_icon="🛠️", layout="wide")
client = PlaygroundClient()
st.title("🛠️ Jobs")

EXAMPLES = {
    "pretrain": "run_name: my-run\ndata:\n  synthetic_chars: 2000000\nmodel:\n  n_layer: 4\n  n_head: 4\n"
                "  n_embd: 128\n  block_size: 128\n  vocab_size: 2048\ntokenizer:\n  vocab_size: 2048\n"
                "train:\n  max_steps: 300\n  batch_size: 16\n",
    "sft": "base:\n  model: my-run        # a model id from the Home page (GET /api/models)\nmethod: lora\n"
           "data:\n  sources: [instructions]\n  shape: messages\nlora:\n  r: 16\n  alpha: 32\ntrain:\n"
           "  max_steps: 80\n  batch_size: 32\n  lr: 3.0e-3\n  eval_interval: 40\n",
    "tokenizer": "data:\n  synthetic_chars: 2000000\ntokenizer:\n  vocab_size: 2048\n",
    "data": "name: mydata\nsources: [synthetic, \"planted:2\"]\nstages:\n  near_dedup: {threshold: 0.8}\n",
    "tune": "name: lr\nbase: configs/pretrain/nano.yaml\nfixed:\n  train.max_steps: 300\n  train.eval_interval: 50\n"
            "search:\n  train.lr: {loguniform: [3.0e-4, 3.0e-2]}\nnum_samples: 8\nmax_concurrent_trials: 2\n",
}

with st.expander("Start a job", expanded=False):
    kind = st.selectbox("Kind", list(EXAMPLES), format_func={
        "pretrain": "pretrain (Ray Train)", "sft": "fine-tune on instructions (see the Fine-tune page)",
        "tokenizer": "train the run's tokenizer",
        "data": "data pipeline (Ray Data)", "tune": "sweep (Ray Tune; see the Sweeps page)"}.get)
    text = st.text_area("Config (YAML; what you leave out keeps its default)", EXAMPLES[kind], height=260,
                        key=f"job_config_{kind}")
    if st.button("Submit", type="primary") and (out := submit_yaml_job(client.submit_job, kind, text)):
        st.success(f"Submitted {out['job_id']} ({out['name']}); the config is in {out['config_file']}.")

jobs = call(client.jobs)
if jobs is None:
    st.stop()
if not jobs:
    st.info("No jobs yet: start one above, or from another page (tokenizer training, data pipeline).")
    st.stop()

st.dataframe(pd.DataFrame(jobs)[["job_id", "kind", "name", "status", "message"]], hide_index=True)
job_id = st.selectbox("Job", [j["job_id"] for j in jobs],
                      format_func=lambda j: next(f"{j}  ({x['kind']} {x['name']}, {x['status']})"
                                                 for x in jobs if x["job_id"] == j))
tail = st.slider("Last lines", 20, 1000, 200, step=20)
logs = call(client.job_logs, job_id, tail)
if logs is not None:
    left, right = st.columns([3, 1])
    left.caption(f"{logs['status']} · showing {len(logs['lines'])} of {logs['total_lines']} lines")
    if logs["status"] in ("PENDING", "RUNNING") and right.button("Stop this job"):
        out = call(client.stop_job, job_id)
        if out is not None:
            st.warning(f"Stopping {job_id}: Ray sends SIGTERM, then SIGKILL.")
    st.code("\n".join(logs["lines"]) or "(no output yet)", language=None)
    if logs["status"] in ("PENDING", "RUNNING"):
        st.button("Refresh")
