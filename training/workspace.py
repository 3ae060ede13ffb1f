"""The workspace: one directory that holds everything the playground makes.

```
workspace/
  datasets/<dataset_id>/            a snapshot: text splits and manifest (training/data/snapshot.py),
                                    + tokens/<tokenizer_id>/ shards (training/data/shards.py)
  tokenizers/<tokenizer_id>/        Hugging Face tokenizer folders
  runs/<run_id>/                    Ray Train storage for one run: checkpoint_*/, config.yaml,
                                    metrics.jsonl, samples.jsonl
  runs/mlflow.db                    the default MLflow store (SQLite)
  runs/mlartifacts/                 its artifacts: configs, manifests, samples, exported models
  models/<run_id>/                  Hugging Face exports (what vLLM serves)
```

Ray jobs, Serve replicas and the UI all find the same files here, so the path must
be absolute and the same for every process: it comes from `--workspace`, else the
`PLAYGROUND_WORKSPACE` environment variable, else `workspace/` in the project.
On a multi-node cluster point it at a shared filesystem.
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent.parent
ENV_VAR = "PLAYGROUND_WORKSPACE"


@dataclass(frozen=True)
class Workspace:
    root: Path

    @classmethod
    def resolve(cls, path: str | Path | None = None) -> Workspace:
        chosen = path or os.environ.get(ENV_VAR) or PROJECT_ROOT / "workspace"
        return cls(Path(chosen).expanduser().resolve())

    @property
    def datasets(self) -> Path:
        return self.root / "datasets"

    @property
    def tokenizers(self) -> Path:
        return self.root / "tokenizers"

    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def models(self) -> Path:
        return self.root / "models"

    def dataset(self, dataset_id: str) -> Path:
        return self.datasets / dataset_id

    def tokens(self, dataset_id: str, tokenizer_id: str) -> Path:
        return self.datasets / dataset_id / "tokens" / tokenizer_id

    def tokenizer(self, tokenizer_id: str) -> Path:
        return self.tokenizers / tokenizer_id

    def run(self, run_id: str) -> Path:
        return self.runs / run_id

    def model(self, model_id: str) -> Path:
        return self.models / model_id

    def mlflow_uri(self) -> str:
        # MLflow 3 refuses the plain-folder store; SQLite is its recommended local backend.
        return f"sqlite:///{self.runs / 'mlflow.db'}"

    def mlflow_artifacts(self) -> Path:
        """Where the local store's experiments keep their artifacts (configs, samples, models)."""
        return self.runs / "mlartifacts"

    def redact_root(self, text: str) -> str:
        """`text` with this workspace's absolute path written `<workspace>`.

        For messages that go over HTTP: they say what inside the workspace is wrong
        (`<workspace>/runs/x/checkpoint_000002`), not where the server keeps it.
        """
        for root in sorted({str(self.root), str(self.root.resolve())} - {os.sep}, key=len, reverse=True):
            # the whole name only: a sibling folder such as `<root>-old` is not the workspace
            text = re.sub(re.escape(root) + r"(?![\w.-])", "<workspace>", text)
        return text

    def list_runs(self) -> list[Path]:
        """Run folders, newest first (a run folder is one that has a config.yaml)."""
        if not self.runs.is_dir():
            return []
        runs = [p for p in self.runs.iterdir() if (p / "config.yaml").is_file()]
        return sorted(runs, key=lambda p: (p / "config.yaml").stat().st_mtime, reverse=True)


def read_jsonl(path: Path) -> list[dict]:
    """Rows of a JSON-lines file; [] when it does not exist yet."""
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def run_summary(run_dir: Path) -> dict:
    """The last metrics of a run, for `playground runs` and GET /api/runs."""
    from training.model.checkpoint import latest

    rows = read_jsonl(run_dir / "metrics.jsonl")
    last = rows[-1] if rows else {}
    # The last training row: an evaluation row, or fine-tuning's closing row of accuracies, has no loss.
    last_train = next((r for r in reversed(rows) if "loss" in r), last)
    last_eval = next((r for r in reversed(rows) if "val_loss" in r), {})
    ckpt = latest(run_dir)
    return {"run": run_dir.name, "step": last.get("step"), "loss": last_train.get("loss"),
            "val_loss": last_eval.get("val_loss"), "perplexity": last_eval.get("perplexity"),
            "tokens_per_s": last_train.get("tokens_per_s"), "checkpoint": ckpt.name if ckpt else None}
