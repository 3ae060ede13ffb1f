"""A stand-in for Ray's JobSubmissionClient that keeps jobs the way Ray's job table does.

Used where a unit test exercises the job routes or the Jobs page without a cluster; the
integration tests submit, tail and stop real jobs.
"""

from types import SimpleNamespace
from typing import TYPE_CHECKING, ClassVar

from ray.job_submission import JobStatus

if TYPE_CHECKING:
    from fastapi import FastAPI


class FakeJobs:
    """Stands in for ray.job_submission.JobSubmissionClient."""

    jobs: ClassVar[dict[str, SimpleNamespace]] = {}
    logs: ClassVar[dict[str, str]] = {}

    def __init__(self, address):
        self.address = address

    def submit_job(self, *, entrypoint, runtime_env, metadata):
        job_id = f"raysubmit_{len(FakeJobs.jobs) + 1}"
        FakeJobs.jobs[job_id] = SimpleNamespace(
            submission_id=job_id, status=JobStatus.PENDING, metadata=metadata, entrypoint=entrypoint,
            runtime_env=runtime_env, start_time=1000 + len(FakeJobs.jobs), end_time=None, message=None)
        FakeJobs.logs[job_id] = ""
        return job_id

    def list_jobs(self):
        return list(FakeJobs.jobs.values())

    def get_job_info(self, job_id):
        if job_id not in FakeJobs.jobs:
            raise RuntimeError(f"Job {job_id} does not exist")
        return FakeJobs.jobs[job_id]

    def get_job_logs(self, job_id):
        return FakeJobs.logs[job_id]

    def stop_job(self, job_id):
        FakeJobs.jobs[job_id].status = JobStatus.STOPPED
        return True


def jobs_api(ws, monkeypatch) -> "FastAPI":
    """/api/jobs's real routes with `harden`, on `ws`, with Ray's job client replaced by FakeJobs."""
    from fastapi import FastAPI

    from services.jobs_api import router
    from services.llm import harden

    monkeypatch.setattr("ray.job_submission.JobSubmissionClient", FakeJobs)
    FakeJobs.jobs, FakeJobs.logs = {}, {}
    app = FastAPI()
    app.include_router(router, prefix="/api")
    harden(app, set(), None)
    app.state.workspace, app.state.dashboard_url = ws, "http://127.0.0.1:1"
    return app
