"""Real Ray Train runs of the pretraining recipe on a tiny model."""

import json

import pytest

from training import checkpoint
from training.pretrain import run

pytestmark = pytest.mark.integration


def metrics(ws, run_id):
    return [json.loads(line) for line in (ws.run(run_id) / "metrics.jsonl").read_text().splitlines()]


def test_ddp_two_workers_checkpoint_metrics_mlflow(ray_cluster, workspace, tiny_config):
    cfg = tiny_config("scale.num_workers=2", "scale.threads_per_worker=1", "train.max_steps=6",
                      "train.log_interval=2", "train.eval_interval=3", "train.checkpoint_interval=3")
    result = run(cfg, workspace, run_id="ddp")
    assert result.error is None
    for key in ("loss", "val_loss", "perplexity", "lr", "grad_norm", "tokens_per_s"):
        assert key in result.metrics, key
    assert result.metrics["step"] == 6
    run_dir = workspace.run("ddp")
    assert sorted(p.name for p in run_dir.glob("checkpoint_*") if p.is_dir()) == ["checkpoint_000003", "checkpoint_000006"]
    state = checkpoint.load(checkpoint.latest(run_dir))
    assert state["step"] == 6 and len(state["rng_states"]) == 2  # one RNG state per worker
    assert state["config"]["scale"]["num_workers"] == 2
    rows = metrics(workspace, "ddp")
    assert [r["step"] for r in rows] == [2, 3, 4, 6]
    samples = [json.loads(line) for line in (run_dir / "samples.jsonl").read_text().splitlines()]
    assert [s["step"] for s in samples] == [3, 6] and samples[0]["samples"][0]["prompt"]
    # MLflow got the same run.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=workspace.mlflow_uri())
    mlrun = client.get_run((run_dir / "mlflow_run_id").read_text().strip())
    assert mlrun.data.params["model.n_layer"] == "2"
    history = client.get_metric_history(mlrun.info.run_id, "loss")
    assert [m.step for m in history] == [2, 3, 4, 6]


def test_resume_is_bit_exact(ray_cluster, workspace, tiny_config):
    """2k steps straight == k steps, stop, resume for k more (CPU, fp32)."""
    common = ["train.max_steps=8", "train.log_interval=1", "train.checkpoint_interval=4",
              "train.eval_interval=4", "model.dropout=0.1", "tracking.mlflow=false"]
    assert run(tiny_config(*common), workspace, run_id="straight").error is None
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
