"""The Fine-tune page (Streamlit AppTest): Watch and Compare against the stub's SFT runs, Start
against the real /api/jobs routes (Ray's job client replaced by `FakeJobs`), and the page's
pure helpers in ui/format.py. The integration tests open it in a browser on a real run."""

from datetime import datetime
from pathlib import Path

import pytest
import yaml
from fakejobs import FakeJobs
from ray.job_submission import JobStatus
from ui_stub import (  # noqa: F401
    KEY,
    MODEL,
    QUESTIONS,
    SFT_LIVE,
    SFT_RESULTS,
    SFT_RUN,
    make_app,
    start_stub,
    stub,
    stub_env,
)

from tests.ui_checks import open_page
from training.workspace import Workspace
from ui.format import accuracy_rows, lineage_rows, replies_by_question, reply_rows, sft_config, sft_run_name

PAGE = "pages/8_Fine-tune.py"


def _clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _view(view: str, run: str | None = None):
    """The page opened on `view` (and `run`) through the URL, as `?ft_view=...&ft_run=...` does."""
    at = open_page(None)
    at.query_params["ft_view"] = view
    if run:
        at.query_params["ft_run"] = run
    at.switch_page(PAGE).run()
    _clean(at)
    return at


def test_watch_shows_curves_and_the_replies_newest_first(stub_env):  # noqa: F811
    at = open_page(PAGE)
    _clean(at)
    at.radio(key="ft_view").set_value("Watch").run()
    _clean(at)
    assert at.selectbox(key="ft_run").options == [SFT_RUN, SFT_LIVE]  # the fine-tuning runs only
    assert at.selectbox(key="ft_run").value == SFT_RUN
    captions = " ".join(c.value for c in at.caption)
    assert f"LoRA on `{MODEL}` · step 80 of 80 · finished" in captions
    assert at.get("progress")[0].value == 100
    assert {m.label: m.value for m in at.metric} == {"Loss": "1.0000", "Validation loss": "1.2000",
                                                     "Token accuracy": "72.0%", "Tokens / s": "980"}
    assert len(at.get("vega_lite_chart")) == 2  # loss & val_loss, tokens/s
    markdown = [m.value for m in at.markdown]
    assert all(f"**{q}**" in markdown for q in QUESTIONS)
    first, second = (t.value for t in at.table)
    assert list(first["step"]) == [80, 40] and list(first["reply"]) == ["Mirel", "the capital the"]
    assert list(second["reply"]) == ["King Bo", "Ostria is"]
    assert "Refresh" in [b.label for b in at.button]

    at.selectbox(key="ft_run").set_value(SFT_LIVE).run()  # still training: no samples yet
    _clean(at)
    assert "step 10 of 80 · training" in " ".join(c.value for c in at.caption)
    assert not at.table and any("No evaluation yet" in c.value for c in at.caption)


def test_compare_base_and_tuned_side_by_side_then_deploy(stub_env):  # noqa: F811
    at = _view("Compare", SFT_RUN)
    assert at.radio(key="ft_view").value == "Compare" and at.selectbox(key="ft_run").value == SFT_RUN
    assert any("73,728 of 4,200,000 parameters trained (1.76%)" in c.value for c in at.caption)
    accuracy, template, entity, lineage = (t.value for t in at.table)
    assert list(accuracy["split"]) == ["heldout_template (held-out phrasings)", "heldout_entity (held-out entities)",
                                       "val (validation)"]
    assert list(accuracy["base model"]) == ["0.0%", "0.0%", "2.0%"]
    assert list(accuracy["fine-tuned"]) == ["62.0%", "41.0%", "70.0%"]
    assert list(accuracy["change"]) == ["+62.0 pts", "+41.0 pts", "+68.0 pts"]
    assert template.iloc[0].tolist() == [QUESTIONS[0], "Mirel", "Once upon a time there", "✗", "Mirel", "✓"]
    assert entity.iloc[0].tolist() == [QUESTIONS[1], "Queen Ada", "the the the", "✗", "King Bo", "✗"]
    assert dict(zip(lineage.iloc[:, 0], lineage["value"])) == {
        "base model": MODEL, "method": "lora", "data snapshot": "instructions-1a2b3c4d", "parent run": MODEL,
        "fine-tuning run": SFT_RUN}

    at.button(key="ft_deploy").click().run()
    _clean(at)
    assert f"Deploying `{SFT_RUN}`" in at.success[0].value
    assert next(b for m, p, _, b in reversed(stub_env.app.state.requests)
                if (m, p) == ("POST", "/api/deployments")) == {"model": SFT_RUN}


def test_compare_waits_for_a_run_to_end(stub_env):  # noqa: F811
    at = _view("Compare", SFT_LIVE)
    assert f"Run **{SFT_LIVE}** has not finished" in at.info[0].value and not at.table
    assert not [b for b in at.button if b.key == "ft_deploy"]


# ---- Start: the real /api/jobs routes --------------------------------------------------------


@pytest.fixture
def server(tmp_path, monkeypatch):
    """The stub (models, runs) with the real /api/jobs routes on a workspace, Ray's job client faked."""
    from services.jobs_api import router

    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", FakeJobs)
    FakeJobs.jobs, FakeJobs.logs = {}, {}
    app = make_app()
    app.include_router(router, prefix="/api")
    app.state.workspace, app.state.dashboard_url = Workspace(tmp_path / "ws"), "http://127.0.0.1:1"
    server = start_stub(app)
    monkeypatch.setenv("PLAYGROUND_URL", server.url)
    monkeypatch.setenv("PLAYGROUND_API_KEY", KEY)
    yield server
    server.stop()


def test_start_submits_an_sft_job_and_watch_follows_it(server):
    at = open_page(PAGE)
    _clean(at)
    assert at.radio(key="ft_view").value == "Start"
    assert at.selectbox(key="ft_model").options[-1] == f"{SFT_RUN}  (fine-tuned from {MODEL})"
    # The defaults are make demo's stage (configs/sft/demo.yaml), the one measured to answer.
    demo = yaml.safe_load(Path("configs/sft/demo.yaml").read_text())
    sent = yaml.safe_load(at.code[0].value)
    assert at.radio(key="ft_method").value == demo["method"] == sent["method"] == "full"
    assert sent["data"]["n_train"] == demo["data"]["n_train"]
    assert {k: sent["train"][k] for k in ("max_steps", "lr", "batch_size", "eval_interval")} == {
        k: demo["train"][k] for k in ("max_steps", "lr", "batch_size", "eval_interval")}
    assert at.radio(key="ft_method").options == ["Full", "LoRA", "QLoRA"]
    assert any("4 bits (NF4" in c for c in at.radio(key="ft_method").proto.captions)
    at.radio(key="ft_method").set_value("lora").run()
    assert yaml.safe_load(at.code[0].value)["lora"]["trainable_tokens"] == ["<|im_start|>", "<|im_end|>"]
    at.radio(key="ft_method").set_value("full").run()
    assert at.number_input(key="ft_lora_r").proto.disabled  # no adapters in a full fine-tune
    at.number_input(key="ft_max_steps").set_value(5)
    at.number_input(key="ft_eval_interval").set_value(50)  # more than max_steps: evaluated at the end
    at.text_input(key="ft_run_name").set_value("sft-from-ui").run()
    sent = yaml.safe_load(at.code[0].value)
    assert sent["method"] == "full" and "lora" not in sent and sent["train"]["eval_interval"] == 5
    at.button(key="ft_submit").click().run()
    _clean(at)
    assert "Submitted job **raysubmit_1**: run **sft-from-ui**" in at.success[0].value
    job = FakeJobs.jobs["raysubmit_1"]
    assert job.metadata["kind"] == "sft" and " sft --config " in job.entrypoint
    saved = yaml.safe_load(Path(job.metadata["config_file"]).read_text())
    assert saved["run_name"] == "sft-from-ui" and saved["base"]["model"] == MODEL and saved["method"] == "full"
    assert saved["train"]["max_steps"] == 5 and saved["data"]["sources"] == ["instructions"]

    at.radio(key="ft_view").set_value("Watch").run()  # the run has not appeared yet: its job says why
    _clean(at)
    assert "Job raysubmit_1 is PENDING: run **sft-from-ui** appears here" in at.info[0].value
    job.status = JobStatus.FAILED
    FakeJobs.logs["raysubmit_1"] = "error: base.model: cannot load 'x'\n"
    at.run()
    assert "failed: error: base.model: cannot load 'x'" in at.error[0].value


def test_start_with_a_file_names_what_is_wrong(server):
    at = open_page(PAGE)
    at.radio(key="ft_source").set_value("file").run()
    at.button(key="ft_submit").click().run()
    assert at.error[0].value.startswith("data.sources: give the path of a .jsonl file")
    at.text_input(key="ft_path").set_value("/no/such/rows.jsonl").run()
    at.button(key="ft_submit").click().run()
    assert not at.exception and "config.data.sources[0]" in at.error[0].value
    assert FakeJobs.jobs == {}


# ---- the helpers ----------------------------------------------------------------------------


def test_run_names_and_the_config_sent():
    assert sft_run_name("org/Model v2", datetime(2025, 1, 2, 3, 4, 5)) == "sft-org-Model-v2-20250102-030405"
    common = dict(model="m", run_name="r", shape="alpaca", n_train=500, max_steps=10, lr=1e-3, batch_size=8,
                  eval_interval=4, lora_r=8, lora_alpha=16, num_workers=2)
    lora = sft_config(method="qlora", sources=["instructions"], **common)
    assert lora["lora"] == {"r": 8, "alpha": 16} and lora["data"] == {"sources": ["instructions"],
                                                                       "shape": "alpaca", "n_train": 500}
    tokens = sft_config(method="lora", sources=["instructions"], chat_tokens=True, **common)
    assert tokens["lora"]["trainable_tokens"] == ["<|im_start|>", "<|im_end|>"]
    full = sft_config(method="full", sources=["/d/rows.jsonl"], chat_tokens=True, **common)
    assert "lora" not in full and "n_train" not in full["data"] and full["scale"] == {"num_workers": 2}

    from training.posttrain.config import SFTConfig

    assert SFTConfig.model_validate(lora).train.eval_interval == 4  # what the page sends, the schema takes


def test_replies_and_accuracy_tables():
    samples = [{"step": 40, "samples": [{"prompt": "q", "text": "old"}]},
               {"step": 80, "samples": [{"prompt": "q", "text": "new"}, {"prompt": "p", "text": "x"}]}]
    assert replies_by_question(samples) == {"q": [{"step": 80, "reply": "new"}, {"step": 40, "reply": "old"}],
                                            "p": [{"step": 80, "reply": "x"}]}
    results = {**SFT_RESULTS, "base": {"val": 0.5, "custom": 0.1}, "sft": {"val": 0.75, "custom": None}}
    assert accuracy_rows(results) == [
        {"split": "val (validation)", "base model": "50.0%", "fine-tuned": "75.0%", "change": "+25.0 pts"},
        {"split": "custom", "base model": "10.0%", "fine-tuned": "", "change": ""}]
    with_input = {"base": {"s": [{"instruction": "Add", "input": "2 3", "expected": "5", "reply": "",
                                  "correct": False}]},
                  "sft": {"s": [{"instruction": "Add", "input": "2 3", "expected": "5", "reply": "5",
                                 "correct": True}]}}
    assert reply_rows({"replies": with_input}, "s") == [{"question": "Add\n2 3", "expected": "5", "base reply": "",
                                                         "base": "✗", "tuned reply": "5", "tuned": "✓"}]
    assert reply_rows({"replies": with_input}, "other") == [] and lineage_rows(None) == []
