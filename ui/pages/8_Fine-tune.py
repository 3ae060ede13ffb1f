"""Fine-tune: supervised fine-tuning (SFT) of a workspace model on instructions, start to finish.

- Start: a base model, a method (full, LoRA, QLoRA), the data and the hyperparameters,
  submitted as an `sft` job (POST /api/jobs: `playground sft` on Ray Train, with TRL).
- Watch: a run's loss and validation loss, its throughput, and the same held-out questions
  answered at every evaluation, newest first, so the answers can be seen improving.
- Compare: once the run has ended, the base model against the tuned one on each held-out
  split, their replies side by side, the tuned model's lineage, and a button to serve it.
- Experiments: variants of one config side by side (LoRA rank against full fine-tuning,
  what each forgot of pretraining), from `playground experiment` or an `experiment` job.
- Align: after SFT, a reward model, DPO or GRPO started (a `reward`, `dpo` or `grpo` job) and
  watched, then the SFT model's and the aligned model's answers side by side (ui/align_view.py).

Like every page it only talks HTTP through `ui.client` (GET /api/models, /api/runs,
/api/runs/{run}, POST /api/jobs, /api/deployments, /api/experiments). `?ft_view=Compare&ft_run=RUN`
in the URL opens a run's comparison directly, `?ft_view=Experiments&ft_exp=ID` an experiment,
`?ft_view=Align&al_view=Watch&al_run=RUN` an alignment run.
"""

from datetime import datetime

import altair as alt
import pandas as pd
import streamlit as st
import yaml

from ui import align_view
from ui.client import ApiError, PlaygroundClient
from ui.format import (
    SFT_METHODS,
    SFT_SPLITS,
    accuracy_rows,
    figure,
    lineage_rows,
    readable,
    replies_by_question,
    reply_rows,
    sft_config,
    sft_run_name,
)
from ui.widgets import call, pending_job, serve_it, submit_yaml_job

st.set_page_config(page_title="Fine-tune · LLM Playground", page_icon="🎯", layout="wide")
client = PlaygroundClient()
st.title("🎯 Fine-tune")
st.caption("Supervised fine-tuning (SFT) teaches a pretrained model to answer instructions: it trains on "
           "(question, answer) pairs, with the loss on the answer only. Each run is a `playground sft` Ray job; "
           "the tuned model lands beside the others, ready to deploy.")

VIEWS = {"Start": "start a run", "Watch": "its curves and replies", "Compare": "base vs tuned",
         "Experiments": "variants side by side", "Align": "reward model, DPO, GRPO"}
METHOD_NAMES = {"full": "Full", "lora": "LoRA", "qlora": "QLoRA"}
view = st.radio("View", list(VIEWS), horizontal=True, key="ft_view", bind="query-params",
                captions=list(VIEWS.values()), label_visibility="collapsed")


def _deploy(model: str) -> None:
    # A button callback (it runs before the rerun), so the message survives the rerun.
    try:
        client.deploy(model)
        msg = f"Deploying `{model}`: it takes a minute to load; then chat with it on the Chat page."
        st.session_state["ft_flash"] = ("success", msg)
    except ApiError as e:
        st.session_state["ft_flash"] = ("error", f"Could not deploy `{model}`: {e}")


def pick_run(runs: list[dict]) -> str:
    """The fine-tuning run Watch and Compare show (one widget, so both keep the same choice)."""
    return st.selectbox("Fine-tuning run", [r["run"] for r in runs], key="ft_run", bind="query-params")


def metric_frame(metrics: list[dict]) -> pd.DataFrame:
    """One row per step; val_loss joined between evaluations so it draws as a line."""
    df = pd.DataFrame(metrics)
    if df.empty or "step" not in df:
        return pd.DataFrame()
    df = df.groupby("step").last().sort_index()
    if "val_loss" in df:
        df["val_loss"] = df["val_loss"].interpolate(method="index", limit_area="inside")
    return df


# ---- Start ---------------------------------------------------------------------------


def start() -> None:
    models = call(client.models)
    if models is None:
        return
    if not models:
        st.info("No model to fine-tune yet: pretrain a run and export it (`playground export RUN`); it then "
                "appears here and on the Home page.")
        return
    lineage = {m["id"]: m.get("lineage") for m in models}
    model = st.selectbox("Base model", list(lineage), key="ft_model",
                         format_func=lambda m: m + (f"  (fine-tuned from {lineage[m]['base_model']})"
                                                    if lineage[m] else ""),
                         help="A model of the workspace (GET /api/models): an export of a pretraining run, or "
                              "an earlier fine-tuning run's model.")
    method = st.radio("Method", list(SFT_METHODS), index=0, key="ft_method", format_func=METHOD_NAMES.get,
                      captions=[SFT_METHODS[m].split(": ", 1)[1] for m in SFT_METHODS])

    st.markdown("**Data**")
    generated = st.radio("Instructions", ["generated", "file"], horizontal=True, key="ft_source",
                         format_func={"generated": "generated from the starter world (with held-out splits)",
                                      "file": "a local .jsonl file"}.get) == "generated"
    left, right = st.columns(2)
    shape = left.selectbox("Shape", ["messages", "alpaca"], key="ft_shape",
                           help="messages: chat rows, the loss on the assistant's turns; alpaca: prompt and "
                                "completion, the loss on the completion. Both go through the chat template.")
    if generated:
        n_train = right.number_input("Training examples", 100, 100_000, 20_000, step=100, key="ft_n_train")
        sources = ["instructions"]
    else:
        n_train = 2000
        path = right.text_input("Path of the .jsonl file", key="ft_path", placeholder="/data/instructions.jsonl",
                                help="A file on the machine that runs the API, in the Alpaca (instruction, input, "
                                     "output), messages or ShareGPT shape. A share of its rows becomes validation.")
        sources = [path.strip()] if path.strip() else []

    st.markdown("**Hyperparameters**")
    cols = st.columns(4)
    max_steps = cols[0].number_input("Max steps", 1, 100_000, 240, key="ft_max_steps")
    lr = cols[1].number_input("Learning rate", 1e-6, 1.0, 5e-4, step=1e-4, format="%.1e", key="ft_lr",
                              help="LoRA takes a larger rate than full fine-tuning (1e-3 against 1e-5 for a big "
                                   "model); a tiny model takes more.")
    batch_size = cols[2].number_input("Batch size", 1, 1024, 32, key="ft_batch_size",
                                      help="sequences per step per worker")
    eval_interval = cols[3].number_input("Evaluate every", 1, 100_000, 60, key="ft_eval_interval",
                                         help="steps between evaluations: validation loss and the held-out "
                                              "questions answered (Watch shows them)")
    cols = st.columns(4)
    lora_r = cols[0].number_input("LoRA rank r", 1, 1024, 16, key="ft_lora_r", disabled=method == "full")
    lora_alpha = cols[1].number_input("LoRA alpha", 1, 4096, 32, key="ft_lora_alpha", disabled=method == "full",
                                      help="the update B·A is scaled by alpha / r")
    num_workers = cols[2].number_input("Workers", 1, 64, 1, key="ft_num_workers",
                                       help="Ray Train workers: each a full copy of the model (DDP) on its "
                                            "share of every batch")
    run_name = cols[3].text_input("Run name", key="ft_run_name", placeholder="sft-<model>-<time>",
                                  help="the run's folder and the tuned model's id; empty: made from the model "
                                       "and the time")

    chat_tokens = st.checkbox("LoRA: train the chat tokens' embeddings too (<|im_start|>, <|im_end|>)", value=True,
                              key="ft_chat_tokens", disabled=method == "full",
                              help="Pretraining never showed a model of ours these tokens, and LoRA leaves "
                                   "embeddings frozen: without this it cannot learn where a reply ends. Two "
                                   "rows of the embedding train (peft's trainable tokens).")

    name = run_name.strip() or sft_run_name(model, datetime.now())
    config = sft_config(model=model, method=method, run_name=name, sources=sources, shape=shape,
                        n_train=int(n_train), max_steps=int(max_steps), lr=float(lr), batch_size=int(batch_size),
                        eval_interval=int(eval_interval), lora_r=int(lora_r), lora_alpha=int(lora_alpha),
                        num_workers=int(num_workers), chat_tokens=chat_tokens)
    with st.expander("The config it sends (what `playground sft --config` reads)"):
        st.code(yaml.safe_dump(config, sort_keys=False), language="yaml")
    if st.button("Start fine-tuning", type="primary", key="ft_submit"):
        if not sources:
            st.error("data.sources: give the path of a .jsonl file, or use the generated instructions")
        elif (out := call(client.submit_sft, config)) is not None:
            st.session_state["ft_submitted"] = {"job_id": out["job_id"], "run": name}
    if sub := st.session_state.get("ft_submitted"):
        st.success(f"Submitted job **{sub['job_id']}**: run **{sub['run']}**. Open **Watch** to follow it once "
                   "it starts (the Jobs page has its log).")


# ---- Watch ---------------------------------------------------------------------------


def watch(runs: list[dict]) -> None:
    run = pick_run(runs)
    st.button("Refresh", key="ft_refresh")  # a click reruns the page, which reads the run again
    detail = call(client.run, run)
    if detail is None:
        return
    cfg, metrics = detail.get("config") or {}, detail.get("metrics") or []
    max_steps = (cfg.get("train") or {}).get("max_steps")
    df = metric_frame(metrics)
    step = int(df.index[-1]) if not df.empty else 0
    done = detail.get("results") is not None
    st.caption(f"{METHOD_NAMES.get(cfg.get('method'), cfg.get('method'))} on "
               f"`{(cfg.get('base') or {}).get('model')}` · step {step}"
               + (f" of {max_steps}" if max_steps else "")
               + (" · finished: see **Compare**" if done else " · training (press Refresh to follow it)"))
    if max_steps:
        st.progress(min(step / max_steps, 1.0))
    if df.empty:
        st.info("This run has logged no metrics yet.")
    else:
        last = {c: df[c].dropna().iloc[-1] if c in df and df[c].notna().any() else None
                for c in ("loss", "val_loss", "token_accuracy", "tokens_per_s")}
        cols = st.columns(4)
        for col, (key, label) in zip(cols, (("loss", "Loss"), ("val_loss", "Validation loss"),
                                            ("token_accuracy", "Token accuracy"), ("tokens_per_s", "Tokens / s"))):
            value = last[key]
            col.metric(label, (f"{100 * value:.1f}%" if key == "token_accuracy" else figure(key, value))
                       if value is not None else "–")
        left, right = st.columns(2)
        losses = [c for c in ("loss", "val_loss") if c in df]
        if losses:
            left.markdown("**Loss** and **validation loss** vs step")
            left.line_chart(df[losses].dropna(how="all"))
        if "tokens_per_s" in df:
            right.markdown("**Tokens / s** vs step")
            right.line_chart(df[["tokens_per_s"]].dropna())

    st.subheader("Held-out questions, answered at every evaluation")
    by_question = replies_by_question(detail.get("samples") or [])
    if not by_question:
        st.caption("No evaluation yet: the questions are answered every `train.eval_interval` steps.")
    for question, rows in by_question.items():
        st.markdown(f"**{question}**")
        st.table(pd.DataFrame(rows), hide_index=True)  # newest first: the model as it is now on top


# ---- Compare -------------------------------------------------------------------------


def compare(runs: list[dict]) -> None:
    run = pick_run(runs)
    detail = call(client.run, run)
    if detail is None:
        return
    results = detail.get("results")
    if not results:
        st.info(f"Run **{run}** has not finished: its comparison (results.json) is written when training ends. "
                "**Watch** follows it.")
        return
    if flash := st.session_state.pop("ft_flash", None):
        getattr(st, flash[0])(flash[1])
    model = results["model"]
    trainable, total = results.get("trainable_params"), results.get("total_params")
    share = f" ({100 * trainable / total:.2f}%)" if trainable and total else ""
    st.caption(f"{METHOD_NAMES.get(results.get('method'), results.get('method'))} · "
               f"{trainable or 0:,} of {total or 0:,} parameters trained{share} · tuned model `{model}`")

    st.subheader("Accuracy on held-out questions")
    st.caption("Exact match after normalising case, spaces and end punctuation; greedy replies through the chat "
               "template. A model that was only pretrained continues the text instead of answering.")
    st.table(pd.DataFrame(accuracy_rows(results)), hide_index=True)

    st.subheader("Replies side by side")
    splits = (results.get("replies") or {}).get("sft") or {}
    for split in [*[s for s in SFT_SPLITS if s in splits], *sorted(set(splits) - set(SFT_SPLITS))]:
        rows = reply_rows(results, split)
        if rows:
            st.markdown(f"**{split}** ({SFT_SPLITS.get(split, 'a held-out split')}), {len(rows)} questions")
            st.table(pd.DataFrame(rows), hide_index=True)

    models = call(client.models) or []
    info = next((m for m in models if m["id"] == model), None)
    serve_it(model, info, _deploy, "ft_deploy")
    rows = lineage_rows(detail.get("lineage") or (info or {}).get("lineage"))
    if rows:
        st.markdown("**Lineage**: what the tuned model came from")
        st.table(pd.DataFrame(rows), hide_index=True)


# ---- Experiments ----------------------------------------------------------------------

EXPERIMENT = """base: configs/sft/demo.yaml
fixed: {train.max_steps: 60, train.eval_prompts: 0}
variants:
  full: {method: full, train.lr: 2.0e-3}
  lora-r4: {method: lora, lora.r: 4, lora.alpha: 16, train.lr: 1.0e-2}
  lora-r16: {method: lora, lora.r: 16, lora.alpha: 16, train.lr: 1.0e-2}
forgetting: true
"""
EXPERIMENT_COLUMNS = {"heldout_accuracy": "held-out accuracy (exact match)",
                      "pretrain_perplexity_ratio": "pretraining perplexity after / before (1 = nothing forgotten)",
                      "world_facts_change": "world facts (cloze) accuracy, after - before"}


def experiments() -> None:
    with st.expander("Start an experiment", expanded=False):
        st.caption("Each variant is a `playground sft` run of the base config with its keys set, run one after "
                   "another; the table compares what each learned, cost and forgot. configs/experiments/ has "
                   "lora-rank.yaml (r = 1, 4, 16, 64 and full) and forgetting.yaml.")
        text = st.text_area("Experiment (YAML, like configs/experiments/*.yaml)", EXPERIMENT, height=200,
                            key="ft_exp_config")
        if st.button("Start experiment", type="primary") and (
                out := submit_yaml_job(client.submit_job, "experiment", text)):
            st.success(f"Submitted job {out['job_id']}: the experiment appears below once it starts.")
    found = call(client.experiments)
    if not found:
        if found is not None:
            st.info("No experiments yet: start one above, or run `playground experiment --config "
                    "configs/experiments/lora-rank.yaml`.")
        return
    exp_id = st.selectbox("Experiment", [e["experiment_id"] for e in found], key="ft_exp", bind="query-params")
    running = next((e["status"] == "RUNNING" for e in found if e["experiment_id"] == exp_id), False)
    st.fragment(show_experiment, run_every=3 if running else None)(exp_id)


def show_experiment(exp_id: str) -> None:
    record = call(client.experiment, exp_id)
    if record is None:
        return
    rows = record["table"]
    done = sum(r["status"] == "FINISHED" for r in rows)
    before = record.get("before") or {}
    facts, ppl = (before.get("world_facts") or {}).get("accuracy"), (before.get("pretrain_val") or {}).get("perplexity")
    st.caption(f"{record['status']} · {done} of {len(rows)} variants finished · base model `{record['base_model']}`"
               + (f" · before fine-tuning: world facts {facts:.2f}" if facts is not None else "")
               + (f", pretraining perplexity {ppl:.2f}" if ppl is not None else ""))
    table = pd.DataFrame(rows)
    st.dataframe(readable(table), hide_index=True)
    failed = [(v, r.get("error")) for v, r in record["variants"].items() if r["status"] == "FAILED"]
    for variant, error in failed:
        st.error(f"{variant}: {error}")
    finished = table[table["status"] == "FINISHED"]
    if finished.empty:
        st.info("No variant has finished yet.")
        return
    shown = [(key, title) for key, title in EXPERIMENT_COLUMNS.items() if finished[key].notna().any()]
    for col, (key, title) in zip(st.columns(len(shown)), shown):
        with col:
            st.markdown(f"**{title}**")
            st.altair_chart(alt.Chart(finished).mark_bar().encode(
                x=alt.X("variant:N", sort=None, title=None), y=alt.Y(f"{key}:Q", title=None),
                tooltip=["variant", key, "trainable_params", "peak_memory_mb", "seconds"]), use_container_width=True)


# ---- the page ------------------------------------------------------------------------

if view == "Start":
    start()
elif view == "Experiments":
    experiments()
elif view == "Align":
    align_view.show(client, _deploy)
else:
    sft_runs = call(client.sft_runs)
    if sft_runs is None:
        st.stop()
    pending_job(client, "ft_submitted", [r["run"] for r in sft_runs], "its data and model")
    if not sft_runs:
        st.info("No fine-tuning runs yet: start one in **Start** (or `playground sft --config "
                "configs/sft/demo.yaml`).")
        st.stop()
    (watch if view == "Watch" else compare)(sft_runs)
