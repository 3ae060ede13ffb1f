"""LLM Playground UI entry point (`streamlit run ui/Home.py`): cluster health, the Serve
deployments, and the model registry with deploy / undeploy buttons.

Like every page it only calls the Serve HTTP endpoints through `ui.client`, so it runs on
any machine that can reach the cluster (set PLAYGROUND_URL, and PLAYGROUND_API_KEY if set).
"""

import pandas as pd
import streamlit as st

from ui.client import ApiError, PlaygroundClient
from ui.format import figure, human_bytes, mlflow_line

st.set_page_config(page_title="LLM Playground", page_icon="🧪", layout="wide")
client = PlaygroundClient()

STATUS_ICON = {"HEALTHY": "🟢", "UPDATING": "🟡", "DEPLOYING": "🟡", "UNHEALTHY": "🔴",
               "DEPLOY_FAILED": "🔴", "UPSCALING": "🟡", "DOWNSCALING": "🟡"}


def _act(action: str, model: str) -> None:
    # Runs as a button callback, before the script reruns, so the table below already
    # shows the new state and the message survives the rerun via session_state.
    try:
        if action == "deploy":
            client.deploy(model)
            msg = ("success", f"Deploying `{model}`: it can take a minute to load. Press Refresh to follow it.")
        else:
            client.undeploy(model)
            msg = ("success", f"Removed `{model}` from serving (its export is kept).")
    except ApiError as e:
        msg = ("error", f"Could not {action} `{model}`: {e}")
    st.session_state["home_flash"] = msg


st.title("🧪 LLM Playground")
st.caption(f"Cluster: `{client.base_url}` · API docs: [{client.base_url}/api/docs]({client.base_url}/api/docs)")
st.button("Refresh")  # any click reruns the script, which re-reads everything

if flash := st.session_state.pop("home_flash", None):
    getattr(st, flash[0])(flash[1])

try:
    health = client.health()
except ApiError as e:
    st.error(str(e))
    st.stop()

# ---- cluster health ------------------------------------------------------------------
status = str(health.get("status", "unknown"))
(st.success if status == "ok" else st.warning)(f"Cluster status: **{status}**")

links = health.get("links") or {}
cols = st.columns(2)
if links.get("ray_dashboard"):
    cols[0].link_button("Ray dashboard", links["ray_dashboard"])
if links.get("mlflow"):
    cols[1].link_button("MLflow", links["mlflow"])
cols[1].caption(mlflow_line(links))

st.subheader("Serve deployments")
deployments = health.get("deployments") or {}
if deployments:
    st.dataframe(pd.DataFrame(
        [{"deployment": name, "status": f"{STATUS_ICON.get(str(s), '⚪')} {s}"} for name, s in deployments.items()]
    ), hide_index=True)
else:
    st.info("No Serve deployments are running.")

# ---- model registry ------------------------------------------------------------------
st.subheader("Models")
st.page_link("pages/13_Models.py", label="Every model's lineage, card, checkpoints and variants: the Models page",
             icon="📦")
try:
    models = client.models()
except ApiError as e:
    st.error(str(e))
    st.stop()

if not models:
    st.info("No exported models yet: train a run and export it, then it appears here.")
served = set(health.get("models_deployed") or [])
for m in models:
    model_id = m["id"]
    deployed = bool(m.get("deployed")) or model_id in served
    with st.container(border=True):
        left, right = st.columns([4, 1])
        val = m.get("val_loss")
        left.markdown(f"**`{model_id}`** {'🟢 deployed' if deployed else '⚪ not deployed'}")
        lineage = m.get("lineage") or {}
        left.caption(" · ".join([
            f"run `{m.get('run_id')}`", f"step {m.get('step')}",
            f"val_loss {figure('val_loss', val) or '?'}",
            human_bytes(m.get("size_bytes")),
            *([f"fine-tuned ({lineage.get('method')}) from `{lineage.get('base_model')}`"] if lineage.get("method")
              else [f"{m.get('kind')} from `{m['parent']}`"] if m.get("parent") else []),
        ]))
        if deployed:
            right.button("Undeploy", key=f"undeploy:{model_id}", on_click=_act, args=("undeploy", model_id))
        else:
            right.button("Deploy", key=f"deploy:{model_id}", on_click=_act, args=("deploy", model_id), type="primary")
        if m.get("config"):
            with st.expander("config"):
                st.json(m["config"], expanded=False)

st.caption("Chat with a deployed model on the **Chat** page; compare training runs on **Runs**; fine-tune a "
           "model on **Fine-tune**.")
