"""Rank 0's record of a training run: metrics.jsonl and samples.jsonl in the run folder,
MLflow (params, per-step metrics, artifacts, the final model) and optionally Weights & Biases.

No Ray here: the recipe (training/pretrain/pretrain.py) builds one `Tracker` on rank 0.
"""

from __future__ import annotations

import json
import tempfile
import time
import uuid
from pathlib import Path

from training.config import PretrainConfig  # or any run config with .tracking (the SFT one too)
from training.errors import UserError


class Tracker:
    """Rank 0's record of the run: metrics.jsonl and samples.jsonl in the run folder, plus MLflow."""

    def __init__(self, cfg: PretrainConfig, paths: dict):
        self.run_dir = Path(paths["run_dir"])
        self.mlflow = None
        self.log_model, self.tokenizer_dir = cfg.tracking.log_model, paths.get("tokenizer_dir")
        self.wandb = _start_wandb(cfg, paths, self.run_dir) if cfg.tracking.wandb_project else None
        if cfg.tracking.mlflow:
            import mlflow

            mlflow.set_tracking_uri(paths["mlflow_uri"])
            if paths.get("mlflow_artifacts") and mlflow.get_experiment_by_name(cfg.tracking.experiment) is None:
                # With the local SQLite store MLflow would put artifacts in ./mlruns of whatever
                # folder the Ray worker runs in; keep them in the workspace beside the database.
                try:
                    mlflow.create_experiment(cfg.tracking.experiment,
                                             artifact_location=Path(paths["mlflow_artifacts"]).as_uri())
                except mlflow.exceptions.MlflowException:  # another worker or trial made it first
                    pass
            mlflow.set_experiment(cfg.tracking.experiment)
            id_file = self.run_dir / "mlflow_run_id"
            run_id = id_file.read_text().strip() if id_file.is_file() else None
            run = mlflow.start_run(run_id=run_id, run_name=paths["run_id"])
            if run_id is None:
                id_file.write_text(run.info.run_id)
                mlflow.log_params(_flatten(cfg.model_dump(mode="json")))
                mlflow.set_tags({"dataset": paths.get("dataset_id"), "snapshot": paths.get("snapshot") or "-",
                                 **paths.get("tags", {})})
                # What it takes to read or redo the run: the resolved config, run.json, the data manifest.
                for name in ("config.yaml", "run.json"):
                    if (self.run_dir / name).is_file():
                        mlflow.log_artifact(str(self.run_dir / name))
                tokens = Path(paths["tokens_dir"]) if paths.get("tokens_dir") else None
                manifests = [(Path(m), where) for m, where in paths.get("manifests", [])]
                if tokens is not None:
                    manifests += [(tokens.parent.parent / "manifest.json", "data"), (tokens / "manifest.json", "data/tokens")]
                for manifest, where in manifests:
                    if manifest.is_file():
                        mlflow.log_artifact(str(manifest), where)
            self.mlflow = mlflow

    def log(self, metrics: dict) -> None:
        row = {k: v for k, v in metrics.items() if k != "samples"}
        row["time"] = time.time()
        with open(self.run_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
        if "samples" in metrics:
            with open(self.run_dir / "samples.jsonl", "a") as f:
                f.write(json.dumps({"step": metrics["step"], "samples": metrics["samples"]}) + "\n")
        numeric = {k: float(v) for k, v in row.items() if isinstance(v, (int, float)) and k not in ("step", "time")}
        if self.wandb:
            self.wandb.log(numeric | ({"samples": _wandb_samples(metrics["samples"])} if "samples" in metrics else {}),
                           step=metrics["step"])
        if self.mlflow:
            self.mlflow.log_metrics(numeric, step=metrics["step"])
            if "samples" in metrics:
                text = "\n\n".join(f"{s['prompt']}{s['text']}" for s in metrics["samples"])
                self.mlflow.log_text(text, f"samples/step_{metrics['step']:06d}.txt")

    def close(self, model=None) -> None:
        """End the MLflow run; with tracking.log_model, log the trained model as a Hugging Face
        export (artifacts/model: what `mlflow artifacts download` hands to transformers or vLLM)."""
        if self.wandb:
            self.wandb.finish()
        if not self.mlflow:
            return
        if model is not None and self.log_model:
            from training.model.export import export_hf

            with tempfile.TemporaryDirectory() as tmp:
                try:
                    export_hf(model, Path(tmp) / "model", tokenizer_dir=self.tokenizer_dir)
                except UserError as e:  # a lab variant Hugging Face has no class for
                    self.mlflow.log_text(f"not exported: {e}\n", "model/NOT_EXPORTED.txt")
                else:
                    self.mlflow.log_artifacts(str(Path(tmp) / "model"), "model")
        self.mlflow.end_run()


def _start_wandb(cfg: PretrainConfig, paths: dict, run_dir: Path):
    """A Weights & Biases run for this training run (resumed with it: the id is kept in the run folder)."""
    try:
        import wandb
    except ImportError:
        raise UserError("tracking.wandb_project is set but wandb is not installed (pip install wandb)") from None
    id_file = run_dir / "wandb_run_id"
    run_id = id_file.read_text().strip() if id_file.is_file() else uuid.uuid4().hex[:8]
    id_file.write_text(run_id)
    return wandb.init(project=cfg.tracking.wandb_project, name=paths["run_id"], id=run_id, resume="allow",
                      dir=str(run_dir), config=cfg.model_dump(mode="json"),
                      tags=[f"{k}:{v}" for k, v in paths.get("tags", {}).items()])


def _wandb_samples(samples: list[dict]):
    import wandb

    return wandb.Table(columns=["prompt", "text"], data=[[s["prompt"], s["text"]] for s in samples])


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        out.update(_flatten(v, key + ".") if isinstance(v, dict) else {key: str(v)[:500]})
    return out
