"""The Jobs page (Streamlit AppTest) against the real /api/jobs routes, served by uvicorn.

Only Ray's JobSubmissionClient is replaced (`FakeJobs`); the integration tests submit,
tail and stop a real training job through the same routes.
"""

from pathlib import Path

import pytest
import yaml
from fakejobs import FakeJobs, jobs_api
from ray.job_submission import JobStatus
from ui_stub import start_stub

from tests.ui_checks import open_page
from training.workspace import Workspace


@pytest.fixture
def server(tmp_path, monkeypatch):
    server = start_stub(jobs_api(Workspace(tmp_path / "ws"), monkeypatch))
    monkeypatch.setenv("PLAYGROUND_URL", server.url)
    monkeypatch.delenv("PLAYGROUND_API_KEY", raising=False)
    yield server
    server.stop()


def test_empty_then_submit_then_follow_and_stop(server):
    at = open_page("pages/6_Jobs.py")
    assert not at.exception and "No jobs yet" in at.info[0].value
    at.text_area(key="job_config_pretrain").set_value("run_name: from-ui\ntrain:\n  max_steps: 7\n").run()
    at.button[0].click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Submitted raysubmit_1" in at.success[0].value
    job = FakeJobs.jobs["raysubmit_1"]
    assert yaml.safe_load(Path(job.metadata["config_file"]).read_text())["train"]["max_steps"] == 7

    job.status = JobStatus.RUNNING
    FakeJobs.logs["raysubmit_1"] = "step 1/7 loss 5.0\nstep 2/7 loss 4.1\n"
    at = open_page("pages/6_Jobs.py")
    assert list(at.dataframe[0].value["status"]) == ["RUNNING"]
    assert "step 2/7 loss 4.1" in at.code[0].value
    stop = next(b for b in at.button if b.label == "Stop this job")
    stop.click().run()
    assert job.status == JobStatus.STOPPED and "Stopping raysubmit_1" in at.warning[0].value


def test_bad_yaml_and_bad_keys_are_one_line_errors(server):
    at = open_page("pages/6_Jobs.py")
    at.text_area(key="job_config_pretrain").set_value("train: [unclosed").run()
    at.button[0].click().run()
    assert at.error[0].value.startswith("config: not valid YAML")
    at.text_area(key="job_config_pretrain").set_value("train:\n  lr: fast\n").run()
    at.button[0].click().run()
    assert "config.train.lr" in at.error[0].value and "Traceback" not in at.error[0].value
    assert FakeJobs.jobs == {}
