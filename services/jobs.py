"""What the labs' HTTP routes share: the workspace, and Ray jobs (submit one, read it back).

Long work (training a tokenizer, running the data pipeline) runs as a Ray job so the API
replica stays free: the route checks the request, then submits `playground ...` (the CLI)
with the workspace in its environment. Status and progress come back from the job's own
logs: the CLI prints `progress ...` lines and, on a user error, one `error: ...` line.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import sys
import threading
from pathlib import Path
from typing import Any

from fastapi import Request

from training.workspace import ENV_VAR, Workspace


def workspace(request: Request) -> Workspace:
    return request.app.state.workspace


def job_client(request: Request):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(request.app.state.dashboard_url)


def write_job_config(ws: Workspace, kind: str, cfg: Any) -> Path:
    """`workspace/jobs/<kind>-<sha8>.yaml`: a resolved pydantic config for a job (written aside, then
    renamed), named by its content so the same config is one file."""
    import yaml

    text = yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False)
    path = ws.root / "jobs" / f"{kind}-{hashlib.sha256(text.encode()).hexdigest()[:8]}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def submit_cli_job(request: Request, args: list[str], metadata: dict[str, str]) -> str:
    """Submit `python -m cluster.cli ARGS` as a Ray job (blocking: call it off the event loop)."""
    return job_client(request).submit_job(
        entrypoint=shlex.join([sys.executable, "-m", "cluster.cli", *args]),
        runtime_env={"env_vars": {ENV_VAR: str(workspace(request).root)}},
        metadata=metadata)


def read_job(request: Request, job_id: str, kind: str) -> tuple[Any, str] | None:
    """(job info, its logs) of a job submitted with metadata kind=`kind`; None when there is no
    such job (blocking: call it off the event loop)."""
    client = job_client(request)
    try:
        info = client.get_job_info(job_id)
    except RuntimeError:  # the job client's "does not exist" (and other failures) are RuntimeErrors
        return None
    if (info.metadata or {}).get("kind") != kind:
        return None
    return info, client.get_job_logs(job_id)


def job_status(info: Any) -> str:
    """PENDING, RUNNING, SUCCEEDED, FAILED or STOPPED."""
    return str(getattr(info.status, "value", info.status))


def job_error(status: str, info: Any, logs: str) -> str | None:
    """For a failed job, its own one-line error (`error: ...`, else its last line), not Ray's wrapper."""
    if status != "FAILED":
        return None
    lines = [ln.strip() for ln in logs.strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    return errors[-1] if errors else lines[-1] if lines else (info.message or "the job failed")
