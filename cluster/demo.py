"""`make demo`: the whole training path, each stage a `playground` command as a user types it.

data prepare -> tokenizer train -> pretrain (Ray Train) -> export (Hugging Face) -> sample
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import datetime

from training.workspace import Workspace

CONFIG = "configs/pretrain/demo.yaml"


def stage(title: str, *args: str) -> None:
    cmd = [sys.executable, "-m", "cluster.cli", *args]
    print(f"\n=== {title}\n$ playground {' '.join(args)}", flush=True)
    t = time.time()
    rc = subprocess.call(cmd)
    if rc:
        sys.exit(rc)
    print(f"--- {title}: {time.time() - t:.0f} s", flush=True)


def main() -> None:
    ws = Workspace.resolve()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    run_id = f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    start = time.time()
    stage("1/5 data", "data", "prepare", "--config", CONFIG)
    stage("2/5 tokenizer", "tokenizer", "train", "--config", CONFIG)
    stage("3/5 pretrain on Ray Train", "pretrain", "--config", CONFIG, f"run_name={run_id}")
    stage("4/5 export to Hugging Face format", "export", run_id)
    stage("5/5 sample", "sample", run_id, "--prompt", "Once upon a time", "--prompt", "Q: What is 2 plus 5?",
          "--prompt", "Tom: Hello, Mia!", "--max-new-tokens", "60", "--temperature", "0.7")

    rows = [json.loads(x) for x in (ws.run(run_id) / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_loss" in r]
    print(f"\nDone in {time.time() - start:.0f} s.")
    print(f"  run:           {ws.run(run_id)}")
    print(f"  val_loss:      {evals[0]['val_loss']:.3f} (step {evals[0]['step']}) -> "
          f"{evals[-1]['val_loss']:.3f} (step {evals[-1]['step']}), perplexity {evals[-1]['perplexity']:.1f}")
    print(f"  HF export:     {ws.model(run_id)}  (AutoModelForCausalLM / vLLM load it)")
    print(f"  MLflow:        {ws.mlflow_uri()}  (`mlflow ui --backend-store-uri {ws.mlflow_uri()}`)")


if __name__ == "__main__":
    main()
