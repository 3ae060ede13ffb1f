"""A real Ray Tune sweep: 4 trials of the nano model, each a Ray Train run, with ASHA."""

import json

import pytest

from training.pretrain import sweep

pytestmark = pytest.mark.integration


def test_sweep_of_four_trials_on_nano(sweep_result):
    workspace, line = sweep_result["workspace"], sweep_result["line"]
    assert line["trials"] == 4
    assert line["best_config"]["train.lr"] in (3e-3, 1e-2)

    sweeps = sweep.list_sweeps(workspace)
    record = sweep.read_record(workspace, sweeps[0]["sweep_id"])
    assert record["status"] == "FINISHED" and record["best_trial"] == line["best_trial"]
    assert line["best_metric"] == pytest.approx(record["trials"][line["best_trial"]]["best_metric"])
    by_lr = {t["params"]["train.lr"]: t for t in record["trials"].values()}
    # ASHA cuts the hopeless ones short at its first rung; of the good two, at least one runs to
    # the end (the other may stop at a later rung, if it trails the first there).
    assert [(by_lr[lr]["status"], by_lr[lr]["step"]) for lr in (1e-6, 1e-7)] == [("EARLY_STOPPED", 5)] * 2
    assert ("TERMINATED", 20) in [(by_lr[lr]["status"], by_lr[lr]["step"]) for lr in (3e-3, 1e-2)]
    for t in record["trials"].values():  # each trial is an ordinary run: metrics, checkpoints, run.json
        run_dir = workspace.run(t["run_id"])
        assert (run_dir / "run.json").is_file() and (run_dir / "metrics.jsonl").is_file()
        assert json.loads((run_dir / "run.json").read_text())["config"]["train"]["lr"] == t["params"]["train.lr"]
        assert [s for s, _ in t["curve"]][:1] == [5]

    reg = record["registered"]
    assert (workspace.model(reg["model"]) / "config.json").is_file()
    assert reg["run_id"] == record["trials"][line["best_trial"]]["run_id"]
    assert reg["mlflow_version"] is not None, reg

    # MLflow has each trial's params, per-step metrics and artifacts: the resolved config,
    # run.json, the data manifests and the trained model as a Hugging Face export.
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=workspace.mlflow_uri())
    best_run = workspace.run(reg["run_id"])
    mlrun = client.get_run((best_run / "mlflow_run_id").read_text().strip())
    assert mlrun.data.tags["sweep"] == record["sweep_id"] and mlrun.data.params["train.lr"] == str(
        line["best_config"]["train.lr"])
    assert [m.step for m in client.get_metric_history(mlrun.info.run_id, "val_loss")] == [5, 10, 15, 20]
    assert mlrun.info.artifact_uri.startswith(workspace.mlflow_artifacts().as_uri())  # in the workspace
    listed = {a.path for a in client.list_artifacts(mlrun.info.run_id)}
    assert {"config.yaml", "run.json", "data", "model"} <= listed, listed
    assert "model/config.json" in {a.path for a in client.list_artifacts(mlrun.info.run_id, "model")}
    assert "data/manifest.json" in {a.path for a in client.list_artifacts(mlrun.info.run_id, "data")}
