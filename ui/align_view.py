"""The Fine-tune page's Align view: alignment after supervised fine-tuning, start to finish.

- Start: a method (a reward model, DPO or GRPO), the SFT model it starts from, for GRPO the reward
  model that scores the replies, the method's knobs and the hyperparameters, submitted as a
  `reward`, `dpo` or `grpo` job (POST /api/jobs: `playground reward|dpo|grpo`, with TRL).
- Watch: an alignment run's curves as on the Runs page (pair accuracy, margin, implicit rewards,
  reward, KL to the SFT model), and the held-out questions answered (or, for a reward model, pairs
  scored) at every evaluation; once it has ended, its held-out figures, the SFT model's and the
  aligned model's answers side by side, its lineage, and a button to serve a DPO or GRPO policy.

The page (ui/pages/8_Fine-tune.py) calls `show`. It only talks HTTP through `ui.client`
(GET /api/models, /api/runs, /api/runs/{run}, /api/jobs/{id}, POST /api/jobs, /api/deployments).
`?ft_view=Align&al_view=Watch&al_run=RUN` in the URL opens a run. Widget keys start with `al_`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pandas as pd
import streamlit as st
import yaml

from ui.align_format import (
    ALIGN_METHODS,
    DPO_LOSSES,
    METHOD_NAMES,
    TRAIN_DEFAULTS,
    align_config,
    align_lineage_rows,
    align_problem,
    align_run_name,
    headline,
    kind_of,
    metric_frame,
    policy_models,
    result_figures,
    reward_models,
    side_by_side,
)
from ui.client import PlaygroundClient
from ui.format import replies_by_question
from ui.widgets import call, charts, pending_job, serve_it

MODES = {"Start": "train a reward model, DPO or GRPO", "Watch": "its curves, then SFT vs aligned"}


def show(client: PlaygroundClient, deploy: Callable[[str], None]) -> None:
    """The Align view; `deploy(model)` is the page's Deploy-button callback (it leaves a flash message)."""
    st.caption("Alignment starts from an SFT model and teaches it which of two replies people prefer: a reward "
               "model learns to score replies, DPO learns from the pairs directly, GRPO samples replies and "
               "follows the reward model's scores. Each run is a Ray job; a DPO or GRPO policy can be served.")
    mode = st.radio("Align", list(MODES), horizontal=True, key="al_view", bind="query-params",
                    captions=list(MODES.values()), label_visibility="collapsed")
    if mode == "Start":
        start(client)
        return
    runs = call(client.align_runs)
    if runs is None:
        return
    pending_job(client, "al_submitted", [r["run"] for r in runs], "its pairs and models")
    if not runs:
        st.info("No alignment runs yet: start one in **Start** (or `playground reward --config "
                "configs/align/reward.yaml base.model=<SFT model>`).")
        return
    watch(client, runs, deploy)


# ---- Start ---------------------------------------------------------------------------


def start(client: PlaygroundClient) -> None:
    models = call(client.models)
    if models is None:
        return
    policies = policy_models(models)
    if not policies:
        st.info("No model to align yet: fine-tune one (**Start**, then its model appears here).")
        return
    kinds = {m["id"]: kind_of(m) for m in models}
    method = st.radio("Method", list(ALIGN_METHODS), key="al_method", format_func=METHOD_NAMES.get,
                      captions=list(ALIGN_METHODS.values()))
    model = st.selectbox("SFT model", policies, key="al_model",
                         format_func=lambda m: m + (f"  ({kinds[m]})" if kinds[m] else "  (not fine-tuned)"),
                         help="The model alignment starts from (GET /api/models), SFT models first: the reward "
                              "model's body, or the policy and its frozen reference for DPO and GRPO.")
    if kinds[model] != "sft":
        st.caption("Not an SFT model: alignment expects one that already answers instructions (chat template).")

    reward_model, blocked = None, False
    if method == "grpo":
        scorers = reward_models(models, model)
        if scorers:
            reward_model = st.selectbox("Reward model", scorers, key="al_reward_model",
                                        help="A `reward` run's model: it scores each sampled reply. It must read "
                                             "the policy's tokens: one trained from the same SFT model does.")
        else:
            blocked = True
            st.info("GRPO needs a reward model to score its replies, and the workspace has none: train one first "
                    "(method **Reward model**), then come back.")

    st.markdown("**Method**")
    cols = st.columns(4)
    adapter, beta, loss_type, num_generations = "full", None, "sigmoid", 4
    if method == "reward":
        cols[0].caption("A reward model trains in full: its score head is new.")
    else:
        adapter = cols[0].radio("Adapter", ["full", "lora"], key="al_adapter", horizontal=True,
                                help="full: every weight trains (TRL keeps a frozen copy as the reference); "
                                     "lora: adapters on a frozen base, which is itself the reference")
    if method == "dpo":
        beta = cols[1].number_input("beta", 0.001, 10.0, 0.1, step=0.01, format="%.3f", key="al_dpo_beta",
                                    help="how far the policy may move from the SFT model: the smaller, the further")
        loss_type = cols[2].selectbox("Loss", list(DPO_LOSSES), key="al_loss_type",
                                      format_func=lambda k: f"{k}: {DPO_LOSSES[k]}")
    if method == "grpo":
        beta = cols[1].number_input("KL weight beta", 0.0, 10.0, 0.04, step=0.01, format="%.3f", key="al_grpo_beta",
                                    help="weight of the KL penalty to the SFT model (0: no reference)")
        num_generations = cols[2].number_input("Replies per prompt", 2, 64, 4, key="al_num_generations",
                                               help="the group: each reply is judged against its group's mean")

    st.markdown("**Hyperparameters**")
    steps0, lr0, every0 = TRAIN_DEFAULTS[method]
    cols = st.columns(5)  # per-method keys: each method keeps its own defaults (configs/align/*.yaml)
    max_steps = cols[0].number_input("Max steps", 1, 100_000, steps0, key=f"al_max_steps_{method}")
    lr = cols[1].number_input("Learning rate", 1e-7, 1.0, lr0, step=1e-5, format="%.1e", key=f"al_lr_{method}")
    batch_size = cols[2].number_input("Batch size", 1, 1024, 16, key="al_batch_size",
                                      help="pairs per step per worker; GRPO: replies per step (prompts x replies "
                                           "per prompt)")
    eval_interval = cols[3].number_input("Evaluate every", 1, 100_000, every0, key=f"al_eval_interval_{method}",
                                         help="steps between evaluations: held-out pairs, KL to the SFT model, "
                                              "the held-out questions answered (Watch shows them)")
    run_name = cols[4].text_input("Run name", key="al_run_name", placeholder=f"{method}-<model>-<time>",
                                  help="the run's folder and its model's id; empty: made from the method, the "
                                       "model and the time")

    name = run_name.strip() or align_run_name(method, model, datetime.now())
    config = align_config(method=method, model=model, run_name=name, adapter=adapter, reward_model=reward_model,
                          beta=None if beta is None else float(beta), loss_type=loss_type,
                          num_generations=int(num_generations), max_steps=int(max_steps), lr=float(lr),
                          batch_size=int(batch_size), eval_interval=int(eval_interval))
    with st.expander(f"The config it sends (what `playground {method} --config` reads)"):
        st.code(yaml.safe_dump(config, sort_keys=False), language="yaml")
    if st.button(f"Start {METHOD_NAMES[method]} training", type="primary", key="al_submit", disabled=blocked):
        if problem := align_problem(config):
            st.error(problem)
        elif (out := call(client.submit_job, method, config)) is not None:
            st.session_state["al_submitted"] = {"job_id": out["job_id"], "run": name}
    if sub := st.session_state.get("al_submitted"):
        st.success(f"Submitted job **{sub['job_id']}**: run **{sub['run']}**. Open **Watch** to follow it once it "
                   "starts (the Jobs page has its log).")


# ---- Watch ---------------------------------------------------------------------------


def watch(client: PlaygroundClient, runs: list[dict], deploy: Callable[[str], None]) -> None:
    kinds = {r["run"]: r.get("kind") for r in runs}
    # No format_func: the URL holds the option as shown, and ?al_run=RUN should name the run alone.
    run = st.selectbox("Alignment run", list(kinds), key="al_run", bind="query-params",
                       help="The reward, DPO and GRPO runs (GET /api/runs), newest first.")
    st.button("Refresh", key="al_refresh")  # a click reruns the page, which reads the run again
    detail = call(client.run, run)
    if detail is None:
        return
    cfg, results = detail.get("config") or {}, detail.get("results")
    kind = kinds.get(run) or cfg.get("method")
    df = metric_frame(detail.get("metrics") or [])
    max_steps = (cfg.get("train") or {}).get("max_steps")
    step = int(df.index[-1]) if not df.empty else 0
    scorer = f" scored by `{cfg['reward_model']}`" if kind == "grpo" and cfg.get("reward_model") else ""
    st.caption(f"{METHOD_NAMES.get(kind, kind)} ({cfg.get('adapter', 'full')}) from "
               f"`{(cfg.get('base') or {}).get('model')}`{scorer} · step {step}"
               + (f" of {max_steps}" if max_steps else "")
               + (" · finished" if results else " · training (press Refresh to follow it)"))
    if max_steps:
        st.progress(min(step / max_steps, 1.0))
    if df.empty:
        st.info("This run has logged no metrics yet.")
    else:
        figures = headline(df, kind)
        for col, (label, value) in zip(st.columns(len(figures)), figures):
            col.metric(label, value)
        charts(df, kind)

    reward = kind == "reward"
    st.subheader("Held-out pairs, scored at every evaluation" if reward
                 else "Held-out questions, answered at every evaluation")
    by_question = replies_by_question(detail.get("samples") or [])
    if not by_question:
        st.caption("No evaluation yet: they come every `train.eval_interval` steps.")
    for question, rows in by_question.items():
        st.markdown(f"**{question}**")
        table = pd.DataFrame(rows)  # newest first: the model as it is now on top
        st.table(table.rename(columns={"reply": "scores"}) if reward else table, hide_index=True)

    if results:
        finished(client, detail, results, deploy)
    else:
        st.caption("Its held-out figures, and the SFT model's answers beside the aligned one's, come when training "
                   "ends (results.json).")


def finished(client: PlaygroundClient, detail: dict, results: dict, deploy: Callable[[str], None]) -> None:
    """An ended run: held-out figures, SFT vs aligned answers, serving, lineage."""
    if flash := st.session_state.pop("ft_flash", None):
        getattr(st, flash[0])(flash[1])
    model, method = results.get("model"), results.get("method")
    trainable, total = results.get("trainable_params"), results.get("total_params")
    share = f" ({100 * trainable / total:.2f}%)" if trainable and total else ""
    st.subheader("Held-out results")
    st.caption(f"{METHOD_NAMES.get(method, method)} ({results.get('adapter', 'full')}) · {trainable or 0:,} of "
               f"{total or 0:,} parameters trained{share} · model `{model}`")
    figures = result_figures(results)
    for col, f in zip(st.columns(len(figures)), figures):
        col.metric(f["label"], f["value"], f["delta"], help=f["help"])

    if method != "reward":
        st.subheader("SFT and aligned answers side by side")
        st.caption("The same held-out questions, greedy replies through the chat template; ✓: the expected (chosen) "
                   "reply exactly, after normalising case, spaces and end punctuation.")
        rows = side_by_side(results)
        if rows:
            st.table(pd.DataFrame(rows), hide_index=True)
        else:
            st.caption("No replies were recorded.")

    models = call(client.models) or []
    info = next((m for m in models if m["id"] == model), None)
    if method == "reward":
        st.caption(f"A reward model scores replies; it is not served for chat. GRPO uses it: pick `{model}` as "
                   "the reward model in **Start**.")
    else:
        serve_it(model, info, deploy, "al_deploy")
    rows = align_lineage_rows(detail.get("lineage") or (info or {}).get("lineage"))
    if rows:
        st.markdown("**Lineage**: what the aligned model came from")
        st.table(pd.DataFrame(rows), hide_index=True)
