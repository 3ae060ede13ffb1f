"""Models: every model of the workspace with its lineage (data -> tokenizer -> pretraining -> post-training
-> quantization -> deployment -> evaluations), its model card, its run's checkpoints, a weight diff of
two models or checkpoints, and the actions: deploy, quantize, import, publish, delete.

Everything comes from /api/models/... (services/models_api.py over training/registry/); quantizing and
Hub downloads run as Ray jobs, followed here.
"""

import time

import streamlit as st

from ui.client import ApiError, PlaygroundClient
from ui.format import human_bytes
from ui.models_format import (
    checkpoint_table,
    diff_options,
    diff_table,
    eval_table,
    filter_rows,
    log_progress,
    registry_table,
    score_table,
    serving_note,
)
from ui.widgets import DONE_STATES, call

st.set_page_config(page_title="Models · LLM Playground", page_icon="📦", layout="wide")
client = PlaygroundClient()
st.title("📦 Models")
st.caption("Every model the workspace holds, where it came from, and what you can do with it. MLflow's model "
           "registry mirrors this list (one registered model each; the alias `deployed` marks what is served).")


def _act(label: str, fn, *args, **kwargs) -> None:
    """A button callback: the result (or the one-line error) survives the rerun in session_state."""
    try:
        out = fn(*args, **kwargs)
        st.session_state["models_flash"] = ("success", label.format(**(out if isinstance(out, dict) else {})))
        if isinstance(out, dict) and out.get("job_id"):
            st.session_state["models_job"] = {"job_id": out["job_id"], "model": out.get("model"), "what": label}
    except ApiError as e:
        st.session_state["models_flash"] = ("error", str(e))


def follow_job() -> None:
    """The quantize or import job this page started: a progress bar until it ends."""
    job = st.session_state.get("models_job")
    if not job:
        return
    bar = st.progress(0.0, text=f"job {job['job_id']}: starting")
    for _ in range(600):
        info = call(client.job, job["job_id"])
        if info is None:
            return
        logs = call(client.job_logs, job["job_id"], 50) or {"lines": []}
        done_total = log_progress(logs["lines"])
        fraction = min(done_total[0] / done_total[1], 1.0) if done_total and done_total[1] else 0.0
        bar.progress(1.0 if info["status"] == "SUCCEEDED" else fraction,
                     text=f"job {job['job_id']} ({job['model']}): {info['status']}")
        if info["status"] in DONE_STATES:
            if info["status"] == "SUCCEEDED":
                st.success(f"Job {job['job_id']} finished: model **{job['model']}** is in the list.")
            else:
                st.error(f"Job {job['job_id']} failed: {info.get('error') or info.get('message')}")
            del st.session_state["models_job"]
            return
        time.sleep(1.0)


if flash := st.session_state.pop("models_flash", None):
    getattr(st, flash[0])(flash[1])
follow_job()

with st.expander("Import a Hugging Face model", expanded=False):
    st.caption("A model folder on the server (config.json, weights, tokenizer) is copied into the workspace at "
               "once; a Hub name (owner/name) is downloaded by a job, which needs the internet.")
    source = st.radio("From", ["Local folder", "Hugging Face Hub"], horizontal=True, key="models_import_from")
    where = st.text_input("Folder on the server" if source == "Local folder" else "Hub name (owner/name)",
                          key="models_import_source")
    new_id = st.text_input("Model id (optional)", key="models_import_id")
    if st.button("Import", type="primary", key="models_import", disabled=not where.strip()):
        kwargs = {"path": where.strip()} if source == "Local folder" else {"hub": where.strip()}
        _act("Imported **{model}**." if source == "Local folder" else "Downloading **{model}** (job {job_id}).",
             client.import_model, **kwargs, new_id=new_id.strip() or None)
        st.rerun()

rows = call(client.registry)
if rows is None:
    st.stop()
if not rows:
    st.info("No models yet: export a pretraining run (`playground export RUN`), fine-tune one on the Fine-tune "
            "page, or import one above.")
    st.stop()

left, mid, right = st.columns([2, 2, 1])
kinds = left.multiselect("Kinds", sorted({r["kind"] for r in rows}), key="models_kinds")
text = mid.text_input("Search (id or parent)", key="models_search")
served_only = right.checkbox("Served only", key="models_served")
shown = filter_rows(rows, kinds, text, served_only)
st.dataframe(registry_table(shown), hide_index=True, width="stretch")
if not shown:
    st.info("No model matches these filters.")
    st.stop()

model_id = st.selectbox("Model", [r["id"] for r in shown], key="models_selected", bind="query-params")
detail = call(client.model, model_id)
if detail is None:
    st.stop()

cols = st.columns(4)
cols[0].metric("Kind", detail["kind"])
cols[1].metric("Parameters", f"{detail['parameters']:,}" if detail.get("parameters") else "?")
cols[2].metric("Size on disk", human_bytes(detail.get("size_bytes")))
cols[3].metric("Served", "yes" if detail.get("deployed") else "no")

# ---- actions -----------------------------------------------------------------------------
note = serving_note(detail)
a1, a2, a3, a4 = st.columns(4)
with a1:
    if detail.get("deployed"):
        st.button("Undeploy", key="models_undeploy", on_click=_act,
                  args=(f"Stopped serving `{model_id}`.", client.undeploy, model_id))
    else:
        st.button("Deploy", key="models_deploy", type="primary", disabled=note is not None, help=note,
                  on_click=_act, args=(f"Deploying `{model_id}`: it can take a minute to load.", client.deploy,
                                       model_id))
    if note:
        st.caption(note)
with a2:
    method = st.selectbox("Quantize to", ["int8", "int4"], key="models_qmethod",
                          help="int8: W8A8 (8-bit weights and activations); int4: W4A16 (4-bit weights, groups)")
    st.button("Quantize", key="models_quantize", on_click=_act,
              args=("Quantizing to **{model}** (job {job_id}).", client.quantize, model_id, method))
with a3:
    repo = st.text_input("Publish to (owner/name)", key="models_repo")
    st.button("Publish", key="models_publish", disabled=not repo.strip(), on_click=_act,
              args=("Published to {url}.", client.publish_model, model_id, repo.strip()))
with a4:
    confirm = st.checkbox(f"Yes, delete {model_id}", key="models_confirm_delete")
    st.button("Delete", key="models_delete", disabled=not confirm or detail.get("deployed"),
              help="Undeploy it first" if detail.get("deployed") else None, on_click=_act,
              args=("Deleted **{deleted}**.", client.delete_model, model_id))

lineage_tab, card_tab, evals_tab, ckpt_tab, diff_tab, mlflow_tab = st.tabs(
    ["Lineage", "Model card", "Evaluations", "Checkpoints", "Diff", "MLflow"])

with lineage_tab:
    graph = detail["lineage_graph"]
    chain = " ← ".join([model_id, *graph["ancestors"]])
    st.caption(f"From its data to its deployments and evaluations. Parents: {chain}"
               + (f" · made from it: {', '.join(detail['children'])}" if detail["children"] else ""))
    st.graphviz_chart(detail["dot"])

with card_tab:
    st.caption("Generated from what the workspace knows (Hugging Face model card format); written as README.md "
               "into the model folder when the model is made.")
    st.markdown(detail["card"])

with evals_tab:
    if detail["evaluations"]:
        st.dataframe(eval_table(detail["evaluations"]), hide_index=True)
    else:
        st.info("Not evaluated yet: the Evaluate page runs the offline suites on it.")

with ckpt_tab:
    ckpts = detail["checkpoints"]
    if not ckpts:
        st.info("No checkpoints: this model was not trained here, or its run kept none.")
    else:
        st.dataframe(checkpoint_table(ckpts), hide_index=True)
        pick = st.selectbox("Checkpoint", [c["name"] for c in ckpts], key="models_ckpt")
        chosen = next(c for c in ckpts if c["name"] == pick)
        st.button(f"Export {pick} as a model", key="models_export", on_click=_act,
                  args=("Exported as **{model}**.", client.export_checkpoint, chosen["run"], chosen["step"]))

with diff_tab:
    st.caption("How far one model's weights moved from another's, layer by layer: ||B - A|| / ||A||. Pick two of "
               "the same shape: a model and the one it was fine-tuned from, or two checkpoints of a run.")
    options = diff_options(rows, detail["checkpoints"])
    parent = detail.get("parent") if detail.get("parent") in options else None
    d1, d2 = st.columns(2)
    # bound to the URL: ?models_diff_a=RUN@4&models_diff_b=RUN@8 opens a diff of two checkpoints
    a = d1.selectbox("A (before)", options, index=options.index(parent or model_id), key="models_diff_a",
                     bind="query-params")
    b = d2.selectbox("B (after)", options, index=options.index(model_id), key="models_diff_b", bind="query-params")
    if st.button("Compare", key="models_diff_go"):
        diff = call(client.model_diff, a, b)
        if diff is not None:
            overall = diff["overall"]
            st.caption(f"From A = `{a}` to B = `{b}`.")
            def four(x) -> str:  # None: undefined (A's weights all zero)
                return "-" if x is None else f"{x:.4f}"

            st.metric("Relative change, all weights", four(overall["relative_change"]),
                      help=f"cosine similarity {four(overall['cosine'])} over {overall['params']:,} parameters")
            table = diff_table(diff)
            st.bar_chart(table.set_index("layer")["relative change"], horizontal=True)
            st.dataframe(table, hide_index=True)
            if diff.get("scores"):
                st.markdown("**Evaluation scores, A → B**")
                st.dataframe(score_table(diff["scores"]), hide_index=True)

with mlflow_tab:
    reg = detail.get("mlflow")
    if not reg:
        st.info("Not in MLflow's model registry yet (it is brought in step after each change, or with "
                "`playground models sync`).")
    elif "error" in reg:
        st.warning(f"MLflow's registry could not be read: {reg['error']}")
    else:
        st.markdown(f"Registered model **{reg['name']}** · aliases: "
                    f"{', '.join(f'`{k}` → v{v}' for k, v in reg['aliases'].items()) or 'none'}")
        st.dataframe(reg["versions"], hide_index=True)
