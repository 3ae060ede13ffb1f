"""Alignment in the UI: the pure helpers of ui/align_format.py (the config the Align view sends,
the chart table the Runs page and the Align view draw, the figures and replies of results.json),
and the Fine-tune page's Align view (Streamlit AppTest) against the stub server with a reward, a
DPO and a GRPO run added, its Start against the real /api/jobs routes (Ray's job client faked)."""

from datetime import datetime
from pathlib import Path

import pandas as pd
import pytest
import yaml
from fakejobs import FakeJobs
from fastapi import APIRouter
from ui_stub import KEY, MODEL, QUESTIONS, SFT_LINEAGE, SFT_RUN, make_app, start_stub

from tests.ui_checks import open_page
from training.posttrain.align_config import AlignConfig
from training.workspace import Workspace
from ui.align_format import (
    align_config,
    align_lineage_rows,
    align_problem,
    align_run_name,
    chart_table,
    headline,
    metric_frame,
    policy_models,
    result_figures,
    reward_models,
    side_by_side,
)

PAGE = "pages/8_Fine-tune.py"
REWARD_RUN, DPO_RUN, GRPO_RUN = "reward-demo", "dpo-demo", "grpo-live"


def _reply(question: str, expected: str, reply: str) -> dict:
    return {"instruction": question, "input": "", "expected": expected, "reply": reply, "correct": reply == expected}


DPO_LINEAGE = {"kind": "dpo", "method": "dpo", "adapter": "full", "base_model": SFT_RUN, "base_path": "/w/models/x",
               "parent_run": SFT_RUN, "preference_snapshot": "preferences-9f8e7d6c", "run_id": DPO_RUN, "beta": 0.1,
               "loss_type": "sigmoid"}
DPO_RESULTS = {
    "model": DPO_RUN, "method": "dpo", "adapter": "full", "trainable_params": 4_200_000, "total_params": 4_200_000,
    "heldout_pair_accuracy": 0.84, "heldout_margin": 1.25, "heldout_pairs": 100, "kl": 0.0312,
    "sft_accuracy_before": 0.62, "sft_accuracy_after": 0.58, "alignment_tax": 0.58 - 0.62,
    "replies": {"before": [_reply(QUESTIONS[0], "Mirel", "Mirel"), _reply(QUESTIONS[1], "Queen Ada", "King Bo")],
                "after": [_reply(QUESTIONS[0], "Mirel", "Mirel is the capital"),
                          _reply(QUESTIONS[1], "Queen Ada", "Queen Ada")]},
}
DPO_METRICS = [
    *({"step": s, "loss": 0.69 - s / 200, "lr": 5e-5, "grad_norm": 2.0, "tokens_seen": 500 * s, "tokens_per_s": 800.0,
       "pair_accuracy": 0.5 + s / 200, "margin": s / 50, "rewards_chosen": -s / 100, "rewards_rejected": -s / 40,
       "memory_mb": 700.0} for s in (5, 10, 15, 20, 25, 30, 35, 40)),
    {"step": 20, "val_loss": 0.6, "val_pair_accuracy": 0.7, "val_margin": 0.3, "val_rewards_chosen": -0.1, "kl": 0.01},
    {"step": 40, "val_loss": 0.5, "val_pair_accuracy": 0.8, "val_margin": 0.6, "val_rewards_chosen": -0.2, "kl": 0.03},
]
REWARD_METRICS = [
    *({"step": s, "loss": 0.69 - s / 100, "lr": 1e-4, "pair_accuracy": 0.5 + s / 100, "margin": s / 20,
       "mean_reward": 0.1} for s in (5, 10, 20)),
    {"step": 20, "val_loss": 0.4, "val_pair_accuracy": 0.75, "val_margin": 0.9},
]
ALIGN = {
    DPO_RUN: {"kind": "dpo", "config": {"run_name": DPO_RUN, "method": "dpo", "base": {"model": SFT_RUN},
                                        "adapter": "full", "dpo": {"beta": 0.1}, "train": {"max_steps": 40}},
              "lineage": DPO_LINEAGE, "results": DPO_RESULTS, "metrics": DPO_METRICS,
              "samples": [{"step": 20, "samples": [{"prompt": QUESTIONS[0], "text": "Mirel"}]},
                          {"step": 40, "samples": [{"prompt": QUESTIONS[0], "text": "Mirel is the capital"}]}]},
    REWARD_RUN: {"kind": "reward", "config": {"method": "reward", "base": {"model": SFT_RUN}, "train": {"max_steps": 20}},
                 "lineage": {**DPO_LINEAGE, "kind": "reward", "method": "reward", "run_id": REWARD_RUN},
                 "results": {"model": REWARD_RUN, "method": "reward", "adapter": "full", "heldout_pair_accuracy": 0.9,
                             "heldout_margin": 2.5, "heldout_pairs": 100},
                 "metrics": REWARD_METRICS,
                 "samples": [{"step": 20, "samples": [{"prompt": QUESTIONS[1], "text": "r(chosen) +1.00  vs  ..."}]}]},
    GRPO_RUN: {"kind": "grpo", "config": {"method": "grpo", "base": {"model": SFT_RUN}, "reward_model": REWARD_RUN,
                                          "train": {"max_steps": 30}},
               "lineage": None, "results": None, "samples": [],
               "metrics": [{"step": 5, "loss": 0.0, "reward": 0.2, "reward_std": 0.5, "grpo_kl": 0.001}]},
}


def _align_app(extra=None):
    """The stub with the alignment runs, a reward model and the DPO policy added to its routes."""
    app = make_app()
    base = {(r.path, tuple(r.methods)): r.endpoint for r in app.router.routes if hasattr(r, "methods")}
    router = APIRouter()

    @router.get("/api/runs")
    def runs():
        return [{"run": run, "kind": v["kind"], "step": v["metrics"][-1]["step"]} for run, v in ALIGN.items()] \
            + base[("/api/runs", ("GET",))]()

    @router.get("/api/runs/{run}")
    def run(run: str):
        return {"run": run, **ALIGN[run]} if run in ALIGN else base[("/api/runs/{run}", ("GET",))](run)

    @router.get("/api/models")
    def models():
        row = {"path": "/w/models/x", "deployed": False, "step": 40, "val_loss": None, "size_bytes": 1, "config": {}}
        return base[("/api/models", ("GET",))]() + [
            {"id": REWARD_RUN, "run_id": REWARD_RUN, **row, "lineage": ALIGN[REWARD_RUN]["lineage"]},
            {"id": DPO_RUN, "run_id": DPO_RUN, **row, "lineage": DPO_LINEAGE}]

    n = len(app.router.routes)
    app.include_router(router)
    if extra is not None:
        app.include_router(extra, prefix="/api")
    new = app.router.routes[n:n + 3]
    del app.router.routes[n:n + 3]
    app.router.routes[:0] = new  # Starlette takes the first match: these before the stub's own
    return app


@pytest.fixture
def server(tmp_path, monkeypatch):
    from services.jobs_api import router

    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", FakeJobs)
    FakeJobs.jobs, FakeJobs.logs = {}, {}
    app = _align_app(router)
    app.state.workspace, app.state.dashboard_url = Workspace(tmp_path / "ws"), "http://127.0.0.1:1"
    s = start_stub(app)
    monkeypatch.setenv("PLAYGROUND_URL", s.url)
    monkeypatch.setenv("PLAYGROUND_API_KEY", KEY)
    yield s
    s.stop()


def _clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _align(mode: str, run: str | None = None):
    at = open_page(None)
    at.query_params["ft_view"] = "Align"
    at.query_params["al_view"] = mode
    if run:
        at.query_params["al_run"] = run
    at.switch_page(PAGE).run()
    _clean(at)
    return at


# ---- the page --------------------------------------------------------------------------------


def test_align_view_shows_a_dpo_run_with_its_results_then_deploys(server):
    at = _align("Watch", DPO_RUN)
    assert at.radio(key="ft_view").value == "Align" and at.radio(key="al_view").value == "Watch"
    assert at.selectbox(key="al_run").options == [DPO_RUN, REWARD_RUN, GRPO_RUN]  # the alignment runs only
    captions = " ".join(c.value for c in at.caption)
    assert f"DPO (full) from `{SFT_RUN}` · step 40 of 40 · finished" in captions
    assert "both may fall" in captions and "coin toss" in captions and "full vocabulary" in captions
    markdown = [m.value for m in at.markdown]
    assert {"**Implicit rewards** vs step", "**Pair accuracy** vs step", "**Margin** vs step",
            "**KL to the SFT model (nats per token)** vs step"} <= set(markdown)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Validation pair accuracy"] == "80.0%" and metrics["KL to the SFT model"] == "0.0312"
    assert metrics["Held-out pair accuracy"] == "84.0%" and metrics["SFT accuracy, before → after"] == "62.0% → 58.0%"
    samples, replies, lineage = (t.value for t in at.table)
    assert list(samples["reply"]) == ["Mirel is the capital", "Mirel"]  # newest first
    assert list(replies.columns) == ["question", "expected", "SFT reply", "SFT", "aligned reply", "aligned"]
    assert replies.iloc[1].tolist() == [QUESTIONS[1], "Queen Ada", "King Bo", "✗", "Queen Ada", "✓"]
    rows = dict(zip(lineage.iloc[:, 0], lineage["value"]))
    assert rows["base model"] == SFT_RUN and rows["preference snapshot"] == "preferences-9f8e7d6c"
    assert rows["beta"] == "0.1" and rows["DPO loss"] == "sigmoid"

    at.button(key="al_deploy").click().run()
    _clean(at)
    assert f"Deploying `{DPO_RUN}`" in at.success[0].value
    assert next(b for m, p, _, b in reversed(server.app.state.requests)
                if (m, p) == ("POST", "/api/deployments")) == {"model": DPO_RUN}


def test_align_view_a_reward_run_and_one_still_training(server):
    at = _align("Watch", REWARD_RUN)
    assert not [b for b in at.button if b.key == "al_deploy"]  # a scorer is not served
    assert {m.label: m.value for m in at.metric}["Held-out pair accuracy"] == "90.0%"
    assert "**Implicit rewards** vs step" not in [m.value for m in at.markdown]
    assert list(at.table[0].value.columns) == ["step", "scores"]

    at.selectbox(key="al_run").set_value(GRPO_RUN).run()
    _clean(at)
    assert "scored by `reward-demo` · step 5 of 30 · training" in " ".join(c.value for c in at.caption)
    assert "**Reward and its spread** vs step" in [m.value for m in at.markdown]
    assert not at.table


def test_align_start_submits_a_dpo_job_and_grpo_needs_a_reward_model(server):
    at = _align("Start")
    assert at.radio(key="al_method").options == ["Reward model", "DPO", "GRPO"]
    assert at.selectbox(key="al_model").value == SFT_RUN  # the SFT model first; no reward model offered
    assert REWARD_RUN not in at.selectbox(key="al_model").options
    at.radio(key="al_method").set_value("grpo").run()
    assert at.selectbox(key="al_reward_model").value == REWARD_RUN
    assert yaml.safe_load(at.code[0].value)["reward_model"] == REWARD_RUN

    at.radio(key="al_method").set_value("dpo").run()
    at.selectbox(key="al_loss_type").set_value("ipo")
    at.number_input(key="al_max_steps_dpo").set_value(6)
    at.text_input(key="al_run_name").set_value("dpo-from-ui").run()
    sent = yaml.safe_load(at.code[0].value)
    assert sent["method"] == "dpo" and sent["dpo"] == {"beta": 0.1, "loss_type": "ipo"}
    assert sent["train"]["eval_interval"] == 6
    at.button(key="al_submit").click().run()
    _clean(at)
    assert "Submitted job **raysubmit_1**: run **dpo-from-ui**" in at.success[0].value
    job = FakeJobs.jobs["raysubmit_1"]
    assert job.metadata["kind"] == "dpo" and " dpo --config " in job.entrypoint
    saved = yaml.safe_load(Path(job.metadata["config_file"]).read_text())
    assert saved["base"]["model"] == SFT_RUN and saved["dpo"]["loss_type"] == "ipo"


def test_grpo_without_a_reward_model_cannot_start(server, monkeypatch):
    import ui.client

    models = ui.client.PlaygroundClient.models
    monkeypatch.setattr(ui.client.PlaygroundClient, "models",
                        lambda self: [m for m in models(self) if m["id"] != REWARD_RUN])
    at = _align("Start")
    at.radio(key="al_method").set_value("grpo").run()
    _clean(at)
    assert "train one first" in at.info[0].value and at.button(key="al_submit").proto.disabled


def test_runs_page_draws_a_dpo_runs_curves_with_what_they_mean(server):
    at = open_page("pages/2_Runs.py")
    at.selectbox(key="runs_selected").set_value(DPO_RUN).run()
    _clean(at)
    titles = [m.value for m in at.markdown if m.value.endswith(" vs step")]
    assert {"**Loss** vs step", "**Pair accuracy** vs step", "**Margin** vs step", "**Implicit rewards** vs step",
            "**KL to the SFT model (nats per token)** vs step"} <= set(titles)  # in two columns
    assert len(at.get("vega_lite_chart")) == len(titles) == 9  # and lr, grad norm, tokens/s, memory
    captions = [c.value for c in at.caption]
    assert any(c.startswith("β·log(π/π_ref) of each reply; both may fall") for c in captions)
    assert any("full vocabulary" in c for c in captions)


# ---- the helpers ----------------------------------------------------------------------------


def test_align_config_validates_and_sets_the_method():
    common = dict(model="m", run_name="r", adapter="lora", max_steps=10, lr=1e-5, batch_size=8, eval_interval=20)
    for method in ("reward", "dpo", "grpo"):
        config = align_config(method=method, reward_model="rm", beta=0.2, **common)
        cfg = AlignConfig.model_validate(config)
        assert cfg.method == method and cfg.train.eval_interval == 10 and cfg.base.model == "m"
    assert align_config(method="reward", **common)["adapter"] == "full"  # a reward model trains in full
    dpo = AlignConfig.model_validate(align_config(method="dpo", loss_type="hinge", **common))
    assert (dpo.adapter, dpo.dpo.beta, dpo.dpo.loss_type) == ("lora", 0.1, "hinge")
    grpo = AlignConfig.model_validate(align_config(method="grpo", reward_model="rm", num_generations=2, **common))
    assert (grpo.reward_model, grpo.grpo.num_generations, grpo.grpo.beta) == ("rm", 2, 0.04)
    with pytest.raises(ValueError):
        align_config(method="ppo", **common)
    assert align_problem(align_config(method="grpo", **common)).startswith("reward_model:")
    odd = align_config(method="grpo", reward_model="rm", num_generations=3, **common)
    assert align_problem(odd).startswith("train.batch_size: 8") and align_problem(align_config(method="dpo", **common)) is None
    assert align_run_name("dpo", "org/SFT v1", datetime(2025, 1, 2, 3, 4, 5)) == "dpo-org-SFT-v1-20250102-030405"


def test_chart_table_picks_the_charts_of_each_method():
    dpo = metric_frame(DPO_METRICS)
    titles = {title: (columns, caption) for title, columns, caption in chart_table(dpo, "dpo")}
    assert list(titles)[:5] == ["Loss", "Pair accuracy", "Margin", "Implicit rewards",
                                "KL to the SFT model (nats per token)"]
    assert titles["Implicit rewards"][0] == ["rewards_chosen", "rewards_rejected"]
    assert "both may fall" in titles["Implicit rewards"][1] and "implicit reward" in titles["Pair accuracy"][1]
    assert titles["Loss"] == (["loss", "val_loss"], None) and "Reward and its spread" not in titles
    # val_* and kl join their evaluations (steps 20, 40) and stop there
    assert dpo.loc[30, "val_pair_accuracy"] == pytest.approx(0.75) and dpo.loc[30, "kl"] == pytest.approx(0.02)
    assert pd.isna(dpo.loc[10, "kl"]) and pd.isna(dpo.loc[10, "val_margin"])

    reward = {t: (c, cap) for t, c, cap in chart_table(metric_frame(REWARD_METRICS), "reward")}
    assert list(reward) == ["Loss", "Pair accuracy", "Margin", "Learning rate"]
    assert reward["Pair accuracy"] == (["pair_accuracy", "val_pair_accuracy"],
                                       "share of pairs where the chosen reply scores higher; 0.5 is a coin toss")
    assert reward["Margin"][1].startswith("r(chosen) - r(rejected)")

    grpo = {t: (c, cap) for t, c, cap in chart_table(metric_frame(ALIGN[GRPO_RUN]["metrics"]), "grpo")}
    assert grpo["Reward and its spread"][0] == ["reward", "reward_std"] and "no spread, no signal" in \
        grpo["Reward and its spread"][1]
    kl_columns, kl_caption = grpo["KL to the SFT model (nats per token)"]
    assert kl_columns == ["grpo_kl"] and kl_caption.startswith("grpo_kl: TRL's estimate")
    assert chart_table(metric_frame([]), "dpo") == []
    assert headline(dpo, "dpo") == [("Validation pair accuracy", "80.0%"), ("Validation margin", "0.6"),
                                    ("KL to the SFT model", "0.03"), ("Loss", "0.4900")]
    assert headline(metric_frame(ALIGN[GRPO_RUN]["metrics"]), "grpo")[2] == ("KL to the SFT model", "–")


def test_side_by_side_figures_and_lineage():
    assert side_by_side(DPO_RESULTS) == [
        {"question": QUESTIONS[0], "expected": "Mirel", "SFT reply": "Mirel", "SFT": "✓",
         "aligned reply": "Mirel is the capital", "aligned": "✗"},
        {"question": QUESTIONS[1], "expected": "Queen Ada", "SFT reply": "King Bo", "SFT": "✗",
         "aligned reply": "Queen Ada", "aligned": "✓"}]
    with_input = {"replies": {"before": [], "after": [{"instruction": "Add", "input": "2 3", "expected": "5",
                                                       "reply": "5", "correct": True}]}}
    assert side_by_side(with_input)[0]["question"] == "Add\n2 3" and side_by_side({}) == []

    figures = {f["label"]: f for f in result_figures(DPO_RESULTS)}
    assert figures["SFT accuracy, before → after"]["delta"] == "-4.0 pts" and "Reward, before → after" not in figures
    grpo = {f["label"]: f for f in result_figures({**DPO_RESULTS, "method": "grpo", "mean_reward_before": -0.5,
                                                   "mean_reward_after": 0.25, "reward_gain": 0.75})}
    assert (grpo["Reward, before → after"]["value"], grpo["Reward, before → after"]["delta"]) == (
        "-0.500 → +0.250", "+0.750")
    reward = [f["label"] for f in result_figures(ALIGN[REWARD_RUN]["results"])]
    assert reward == ["Held-out pair accuracy", "Held-out margin", "Held-out pairs"]

    rows = {r["of the tuned model"]: r["value"] for r in align_lineage_rows(DPO_LINEAGE)}
    assert rows["method"] == "dpo" and rows["adapter"] == "full" and rows["beta"] == "0.1"
    assert align_lineage_rows(None) == []


def test_which_models_a_run_starts_from():
    models = [{"id": MODEL, "lineage": None}, {"id": "rm", "lineage": {"kind": "reward", "base_model": "other"}},
              {"id": SFT_RUN, "lineage": SFT_LINEAGE}, {"id": "rm2", "lineage": {"kind": "reward", "base_model": SFT_RUN}}]
    assert policy_models(models) == [SFT_RUN, MODEL]
    assert reward_models(models, SFT_RUN) == ["rm2", "rm"] and reward_models(models[:1]) == []
