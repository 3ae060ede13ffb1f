"""`playground up` when Ray cannot start: one line that says why, not a traceback.

`cluster/start.sh` (a real `ray start`) is replaced by a recorded failure: starting a
second Ray head on this machine's ports is not something a unit test can do safely.
"""

import os
import subprocess

import pytest

from cluster import local
from training.errors import UserError
from training.workspace import Workspace

RAY_SAYS = ("Usage stats collection is enabled.\n"
            "ConnectionError: Ray is trying to start at 127.0.0.1:6379, but is already being used by "
            "another process. Please stop that process or use a different port.\n")


def test_up_says_why_ray_did_not_start(tmp_path, monkeypatch):
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        if cmd[0].endswith("start.sh"):
            return subprocess.CompletedProcess(cmd, 1, stdout="", stderr=RAY_SAYS)
        return subprocess.CompletedProcess(cmd, 1, stdout="", stderr="")  # `ray status`: none running

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)  # up() sets it for its clients; restored after
    monkeypatch.setattr(local.subprocess, "run", fake_run)
    monkeypatch.setattr(local, "_serve_client", lambda: pytest.fail("must not deploy when Ray did not start"))
    with pytest.raises(UserError) as err:
        local.up(Workspace(tmp_path / "ws"), [])
    message = str(err.value)
    assert "\n" not in message
    assert "exited 1" in message and "127.0.0.1:6379, but is already being used" in message
    assert "ray stop" in message
    assert any(c[0].endswith("start.sh") for c in calls)


def test_importing_local_leaves_rays_auth_mode_alone(monkeypatch):
    """Ray reads RAY_AUTH_MODE once per process: a process that imports this module (a test run)
    and then starts its own Ray must not find the mode changed under it (its GCS would then ask
    for a token its client never sends). Only up/down/status set it, for what they start."""
    import importlib
    import os

    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    importlib.reload(local)
    assert "RAY_AUTH_MODE" not in os.environ


def test_join_running_cluster_points_at_a_live_cluster_only(tmp_path, monkeypatch):
    """`playground eval` joins `playground up`'s cluster: its address from Ray's marker file, token mode on;
    a marker whose GCS does not answer, or RAY_ADDRESS already set, changes nothing."""
    import socket

    from cluster.local import join_running_cluster

    monkeypatch.setattr("tempfile.gettempdir", lambda: str(tmp_path))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    assert join_running_cluster() is None  # no marker
    (tmp_path / "ray").mkdir()
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    (tmp_path / "ray" / "ray_current_cluster").write_text(f"127.0.0.1:{port}\n")
    try:
        assert join_running_cluster() == f"127.0.0.1:{port}"
        assert os.environ["RAY_ADDRESS"] == f"127.0.0.1:{port}" and os.environ["RAY_AUTH_MODE"] == "token"
        assert join_running_cluster() is None  # RAY_ADDRESS is set now: left as it is
    finally:
        listener.close()
    monkeypatch.delenv("RAY_ADDRESS")
    assert join_running_cluster() is None  # the marker's GCS no longer answers
