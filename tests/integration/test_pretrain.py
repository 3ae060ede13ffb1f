"""Real Ray Train runs of the pretraining recipe on a tiny model."""

import json

import pytest

from training.model import checkpoint
from training.pretrain.pretrain import run

pytestmark = pytest.mark.integration


def metrics(ws, run_id):
    return [json.loads(line) for line in (ws.run(run_id) / "metrics.jsonl").read_text().splitlines()]


# One DDP run serves two tests: the DDP test reads its checkpoints, metrics and MLflow run, and the FSDP
# test compares its own run with it step by step (a Ray Train run costs ~20 s of start-up here).
DDP = ["scale.num_workers=2", "scale.threads_per_worker=1", "train.max_steps=6", "train.log_interval=1",
       "train.checkpoint_interval=2", "train.eval_interval=2", "train.keep_checkpoints=1"]


@pytest.fixture(scope="module")
def ddp_run(ray_cluster, workspace, tiny_config):
    result = run(tiny_config(*DDP), workspace, run_id="ddp")
    assert result.error is None
    return result


def kept_checkpoints(ws, run_id, rows) -> tuple[list[int], list[int]]:
    """The checkpoint steps a run kept, and the ones it should have: the best by val_loss plus the latest."""
    evals = {r["step"]: r["val_loss"] for r in rows if "val_loss" in r}
    kept = sorted(checkpoint.checkpoint_step(p) for p in ws.run(run_id).glob("checkpoint_*") if p.is_dir())
    return kept, sorted({min(evals, key=evals.get), rows[-1]["step"]})


def test_ddp_two_workers_checkpoint_metrics_mlflow(ddp_run, workspace):
    result = ddp_run
    for key in ("loss", "val_loss", "perplexity", "lr", "grad_norm", "tokens_per_s", "mfu", "memory_mb"):
        assert key in result.metrics, key
    assert result.metrics["step"] == 6
    assert 0 < result.metrics["mfu"] < 1 and result.metrics["memory_mb"] > 100  # vs a measured CPU matmul peak
    run_dir = workspace.run("ddp")
    rows = metrics(workspace, "ddp")
    assert [r["step"] for r in rows] == [1, 2, 3, 4, 5, 6]
    kept, want = kept_checkpoints(workspace, "ddp", rows)
    assert kept == want
    state = checkpoint.load(checkpoint.latest(run_dir))
    assert state["step"] == 6 and len(state["rng_states"]) == 2  # one RNG state per worker
    assert state["config"]["scale"]["num_workers"] == 2
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [2, 4, 6] and samples[0]["samples"][0]["prompt"]
    # MLflow got the same run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=workspace.mlflow_uri())
    mlrun = client.get_run((run_dir / "mlflow_run_id").read_text().strip())
    assert mlrun.data.params["model.n_layer"] == "2"
    history = client.get_metric_history(mlrun.info.run_id, "loss")
    assert [m.step for m in history] == [1, 2, 3, 4, 5, 6]


def test_resume_is_bit_exact_and_from_run_reproduces_the_losses(ray_cluster, workspace, tiny_config):
    """2k steps straight == k steps, stop, resume for k more (CPU, fp32, with dropout). Then run.json
    records what the run needs, and `playground pretrain --from-run` trains it again as a new run with
    the same losses at every step."""
    from cluster.cli import main

    common = ["train.max_steps=8", "train.log_interval=1", "train.checkpoint_interval=4",
              "train.eval_interval=4", "model.dropout=0.1", "tracking.mlflow=false"]
    cfg = tiny_config(*common)
    assert run(cfg, workspace, run_id="straight").error is None
    assert run(tiny_config(*common, "train.stop_at=4"), workspace, run_id="split").error is None
    assert checkpoint.checkpoint_step(checkpoint.latest(workspace.run("split"))) == 4
    assert run(tiny_config(*common), workspace, run_id="split", resume=True).error is None

    a, b = metrics(workspace, "straight"), metrics(workspace, "split")
    assert [r["step"] for r in a] == [r["step"] for r in b] == list(range(1, 9))
    for ra, rb in zip(a, b):
        assert abs(ra["loss"] - rb["loss"]) <= 1e-6, (ra["step"], ra["loss"], rb["loss"])
        if "val_loss" in ra:
            assert abs(ra["val_loss"] - rb["val_loss"]) <= 1e-6
    assert a[0]["loss"] - a[-1]["loss"] > 0.1  # and it is actually learning

    record = json.loads((workspace.run("straight") / "run.json").read_text())
    assert record["seed"] == cfg.train.seed and record["config"] == cfg.model_dump(mode="json")
    assert record["dataset"] == cfg.data.dataset_id() and record["packages"]["torch"] and record["tokenizer"]
    assert main(["--workspace", str(workspace.root), "pretrain", "--from-run", "straight"]) == 0
    again = [p.name for p in workspace.runs.iterdir() if p.name.startswith("straight-again-")]
    assert len(again) == 1
    assert [r["loss"] for r in a] == [r["loss"] for r in metrics(workspace, again[0])]


def test_fsdp_on_two_workers_matches_ddp_and_keeps_the_best_checkpoints(ddp_run, workspace, tiny_config):
    """scale.strategy=fsdp through the real recipe (FSDP2 over gloo: it runs on CPU too) gives
    DDP's losses, writes the same full checkpoints, and Ray keeps the 1 best by val_loss plus
    the latest."""
    assert run(tiny_config(*DDP, "scale.strategy=fsdp", "tracking.mlflow=false"), workspace,
               run_id="as-fsdp").error is None
    a, b = metrics(workspace, "ddp"), metrics(workspace, "as-fsdp")
    assert [r["step"] for r in a] == [r["step"] for r in b] == [1, 2, 3, 4, 5, 6]
    for ra, rb in zip(a, b):
        assert abs(ra["loss"] - rb["loss"]) <= 1e-4, (ra["step"], ra["loss"], rb["loss"])
    kept, want = kept_checkpoints(workspace, "as-fsdp", b)
    assert kept == want
    sa = checkpoint.load(checkpoint.latest(workspace.run("ddp")))["model"]
    sb = checkpoint.load(checkpoint.latest(workspace.run("as-fsdp")))["model"]
    assert set(sa) == set(sb)
    worst = max((sa[k] - sb[k]).abs().max().item() for k in sa)
    assert worst < 1e-4, worst


def test_killed_worker_resumes_from_its_last_checkpoint(ray_cluster, workspace, tiny_config):
    """SIGKILL a Ray Train worker mid-run: FailureConfig restarts the group, the loop resumes
    from the latest checkpoint, and the run finishes with every step logged (none missing)."""
    import os
    import signal
    import threading
    import time

    import psutil

    # Each logged step is a ray.train.report (about a second here): log every 10 steps.
    cfg = tiny_config("train.max_steps=150", "train.log_interval=10", "train.checkpoint_interval=50",
                      "train.eval_interval=150", "train.sample_tokens=0", "tracking.mlflow=false",
                      "scale.max_failures=1")
    out = {}
    thread = threading.Thread(target=lambda: out.update(result=run(cfg, workspace, run_id="killed")))
    thread.start()
    log = workspace.run("killed") / "metrics.jsonl"
    deadline = time.time() + 240
    while time.time() < deadline and not (log.is_file() and len(log.read_text().splitlines()) >= 8):
        time.sleep(0.2)
    workers = [p for p in psutil.process_iter(["cmdline"]) if "RayTrainWorker" in " ".join(p.info["cmdline"] or [])]
    assert workers, "no Ray Train worker process found"
    os.kill(workers[0].pid, signal.SIGKILL)
    killed_at = len(log.read_text().splitlines())
    thread.join(timeout=400)
    assert not thread.is_alive() and out["result"].error is None
    steps = [r["step"] for r in metrics(workspace, "killed")]
    assert steps[-1] == 150 and killed_at < 15
    assert sorted(set(steps)) == list(range(10, 151, 10))  # no gap
    assert len(steps) > len(set(steps))  # the steps after the last checkpoint ran twice
