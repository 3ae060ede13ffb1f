"""Across nodes: a two-node Ray cluster on this machine trains with one Ray Train worker per
node and serves the playground API from the node that is not the head.

The scenario runs in a subprocess (multinode_job.py): this pytest process already holds the
session's Ray connection (conftest.py's `ray_cluster`), and a process holds only one. The
subprocess gets its own Ray temp folder, so its cluster shares nothing with the session's, and
whatever it leaves behind (a timeout) is found by that folder and ended by process id.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pytest

from training.config import dump_config

pytestmark = pytest.mark.integration

SCRIPT = Path(__file__).with_name("multinode_job.py")
TIMEOUT_S = 300


def _end_leftovers(ray_tmp: str) -> list[int]:
    """End the processes of the subprocess's cluster that outlived it (raylets, GCS, workers:
    their command lines name its temp folder). Only those: never a broad `ray stop`."""
    ended = []
    for p in psutil.process_iter(["cmdline"]):
        if any(ray_tmp in arg for arg in p.info["cmdline"] or []) and p.pid != os.getpid():
            try:
                p.kill()
                ended.append(p.pid)
            except psutil.Error:  # gone meanwhile
                pass
    return ended


@pytest.fixture
def multinode(tmp_path, workspace, tiny_config):
    """Run multinode_job.py on a fresh workspace (the session's tiny dataset and tokenizer copied
    in, so no node prepares data); return its JSON line and the workspace."""
    ws = tmp_path / "ws"
    for sub in ("datasets", "tokenizers"):
        shutil.copytree(workspace.root / sub, ws / sub)
    cfg = tiny_config("scale.num_workers=2", "scale.threads_per_worker=1", "train.max_steps=4",
                      "train.log_interval=2", "train.eval_interval=2", "train.checkpoint_interval=4",
                      "train.sample_tokens=0", "tracking.mlflow=false")
    config = tmp_path / "tiny.yaml"
    config.write_text(dump_config(cfg))
    # Short: Ray's unix sockets live under it (a path limit of about 100 characters).
    ray_tmp = tempfile.mkdtemp(prefix="raymn-", dir="/tmp")
    env = {**os.environ, "RAY_TMPDIR": ray_tmp}
    env.pop("RAY_ADDRESS", None)  # its own cluster, never the session's or one left running here
    proc = subprocess.Popen([sys.executable, str(SCRIPT), "--workspace", str(ws), "--config", str(config)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)
    try:
        out, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        pytest.fail(f"multinode_job.py ran past {TIMEOUT_S} s:\n{err[-3000:]}")
    finally:
        left = _end_leftovers(ray_tmp)
        shutil.rmtree(ray_tmp, ignore_errors=True)
    assert proc.returncode == 0, err[-4000:]
    assert not left, f"the job left processes running: {left}"
    return {"result": json.loads(out.strip().splitlines()[-1]), "workspace": ws}


def test_training_spans_two_nodes_and_serve_answers_from_the_second(multinode):
    r, ws = multinode["result"], multinode["workspace"]
    head, second = r["nodes"]["head"], r["nodes"]["second"]
    assert head != second
    # (a) Two Ray Train workers, one on each node, trained together (world size 2: the
    # checkpoint holds both ranks' RNG states, gathered over gloo across the nodes) ...
    assert sorted(r["train_nodes"]) == sorted([head, second])
    assert r["world_size"] == r["num_workers"] == 2 and r["step"] == 4
    # ... and the checkpoint is in the shared workspace, where any node reads it.
    assert Path(r["checkpoint"]) == ws / "runs" / "multinode" / "checkpoint_000004"
    assert (ws / "runs" / "multinode" / "metrics.jsonl").is_file()
    # (b) The API's replicas ran on the second node; HTTP went through the head's proxy to them,
    # and they read the run from the same workspace.
    assert r["replica_nodes"] == {"PlaygroundAPI": [second], "Inspector": [second]}
    assert r["health"] == "ok" and Path(r["health_workspace"]) == ws
    assert r["runs"] == ["multinode"]
    print("multinode timings:", r["timings"])
