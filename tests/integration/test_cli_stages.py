"""Each stage as a user runs it: the `playground` command in a subprocess, joined to the
session's Ray cluster, then the same stage submitted as a Ray job."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import TINY

from training.workspace import Workspace

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]


def playground(ws: Workspace, ray_cluster, *args, check=True):
    env = {**os.environ, "PLAYGROUND_WORKSPACE": str(ws.root), "RAY_ADDRESS": ray_cluster["gcs"]}
    proc = subprocess.run([sys.executable, "-m", "cluster.cli", *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600, check=False)
    if check:
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def test_pretrain_export_sample_runs(ray_cluster, workspace):
    steps = ["train.max_steps=30", "train.log_interval=10", "train.eval_interval=15", "train.lr=5e-3"]
    playground(workspace, ray_cluster, "pretrain", *TINY, *steps, "run_name=cli")
    out = playground(workspace, ray_cluster, "export", "cli").stdout
    export_dir = workspace.model("cli")
    assert "exported cli (step 30)" in out
    info = json.loads((export_dir / "playground.json").read_text())
    assert info["step"] == 30 and info["val_loss"] is not None

    # The export is a standard Hugging Face checkpoint with a chat-ready tokenizer.
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(export_dir)
    model = AutoModelForCausalLM.from_pretrained(export_dir)
    assert type(model).__name__ == "GPT2LMHeadModel"
    assert "<|im_start|>assistant" in tok.apply_chat_template([{"role": "user", "content": "hi"}],
                                                              tokenize=False, add_generation_prompt=True)
    ids = tok("Once upon a time", return_tensors="pt").input_ids
    with torch.no_grad():
        generated = model.generate(ids, max_new_tokens=8, do_sample=False)
    assert generated.shape[1] > ids.shape[1]

    # That vLLM decodes such an export greedily exactly as our model does is checked once, through the
    # served stack (test_serve_lab.py: tiny-a, exported by the same export_hf), rather than by a second engine.

    out = playground(workspace, ray_cluster, "sample", "cli", "--prompt", "Once upon a time", "--max-new-tokens", "20",
                     "--temperature", "0").stdout
    assert "Once upon a time" in out

    listing = json.loads(playground(workspace, ray_cluster, "runs", "--json").stdout)
    row = next(r for r in listing if r["run"] == "cli")
    assert row["step"] == 30 and row["checkpoint"] == "checkpoint_000030" and row["val_loss"] < 6.0


def test_ray_job_submit(ray_cluster, workspace):
    """The documented form: `ray job submit --working-dir . -- playground pretrain ...`."""
    run_id = "from-job"
    runtime_env = json.dumps({"env_vars": {"PLAYGROUND_WORKSPACE": str(workspace.root)}})
    cmd = ["ray", "job", "submit", "--address", ray_cluster["dashboard"], "--working-dir", ".",
           "--runtime-env-json", runtime_env, "--", "playground", "pretrain", *TINY,
           "train.max_steps=4", "train.log_interval=2", f"run_name={run_id}"]
    t = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "succeeded" in proc.stdout.lower()
    assert (workspace.run(run_id) / "checkpoint_000004" / "state.pt").is_file()
    assert time.time() - t < 300
