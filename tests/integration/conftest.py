"""One local Ray cluster for the whole integration session (real Ray Train, real gloo DDP).

Ray starts with 8 logical CPUs on this 2-core machine: logical CPUs are Ray's
bookkeeping, not cores. Each vLLM replica reserves 2 (its actor plus its engine's
placement-group bundle), the OpenAI ingress 1, and the deploy test runs two models
while a redeployed ingress starts beside the old one (see ../shared/STACK.md).
"""

import os
import sys
from pathlib import Path

import pytest
from serve_helpers import free_port

from services.serve_env import serve_env
from training.config import load_config
from training.pretrain.inputs import ensure_inputs
from training.workspace import Workspace

# Job drivers started by Ray inherit PATH: make `playground` and this venv's python findable.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# Serve's HTTP path as `playground up` runs it (HAProxy in front; see services/serve_env.py).
os.environ.update(serve_env())

TINY = [
    "data.synthetic_chars=150000", "tokenizer.vocab_size=512", "model.vocab_size=512", "model.block_size=64",
    "model.n_layer=2", "model.n_head=2", "model.n_embd=64", "train.batch_size=8", "train.precision=fp32",
    "train.warmup_steps=2", "train.eval_iters=2", "train.sample_tokens=16", "tracking.experiment=tests",
]


@pytest.fixture(scope="session")
def ray_cluster():
    import ray

    port = free_port()
    ctx = ray.init(num_cpus=8, include_dashboard=True, dashboard_host="127.0.0.1", dashboard_port=port,
                   log_to_driver=False)
    yield {"dashboard": f"http://127.0.0.1:{port}", "gcs": ctx.address_info["gcs_address"]}
    ray.shutdown()


@pytest.fixture(scope="session")
def workspace(tmp_path_factory):
    """A workspace whose tiny dataset and tokenizer are made once per session."""
    ws = Workspace.resolve(tmp_path_factory.mktemp("ws"))
    ensure_inputs(load_config(None, TINY), ws)
    return ws


@pytest.fixture(scope="session")
def tiny_config():
    """tiny_config("train.max_steps=4", ...) -> a validated PretrainConfig for the tiny model."""
    return lambda *overrides: load_config(None, [*TINY, *overrides])


@pytest.fixture(scope="session")
def sweep_result(ray_cluster, workspace, tmp_path_factory):
    """`playground tune` once per session: 4 trials of the nano model with ASHA (for the sweep
    test and the browser test of the Sweeps page). Returns its final JSON line."""
    import json

    import yaml

    from cluster.cli import main

    config = tmp_path_factory.mktemp("sweep") / "lr.yaml"
    config.write_text(yaml.safe_dump({
        "base": "configs/pretrain/nano.yaml",
        "fixed": {  # the session's tiny dataset and tokenizer (made once); nano's model shape
            "data.synthetic_chars": 150000, "tokenizer.vocab_size": 512, "model.vocab_size": 512,
            "train.max_steps": 20, "train.warmup_steps": 2, "train.eval_interval": 5, "train.eval_iters": 2,
            "train.checkpoint_interval": 10, "train.log_interval": 5, "train.sample_tokens": 0,
            "train.precision": "fp32", "scale.threads_per_worker": 1, "tracking.experiment": "tests"},
        # Two good rates first, two hopeless ones after: when the last two reach ASHA's first
        # rung (step 5), the first two are already recorded there, so they are stopped.
        "search": {"train.lr": {"grid": [3e-3, 1e-2, 1e-6, 1e-7]}},
        "max_concurrent_trials": 2,
        "scheduler": {"type": "asha", "grace_period": 5, "reduction_factor": 2},
    }))
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["--workspace", str(workspace.root), "tune", "--config", str(config)])
    assert code == 0, out.getvalue()[-2000:]
    return {"workspace": workspace, "line": json.loads(out.getvalue().strip().splitlines()[-1]),
            "stdout": out.getvalue()}
