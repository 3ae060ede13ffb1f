"""`make demo`: the whole path, each stage a `playground` command as a user types it.

data prepare -> tokenizer train -> pretrain (Ray Train) -> export (Hugging Face) -> sample
-> sft (full fine-tuning with TRL on Ray Train) -> up (Ray Serve + vLLM + the playground API + the
Streamlit UI) -> a streamed chat with the tuned model
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
SFT_CONFIG = "configs/sft/demo.yaml"
QUESTION = "What is the capital of Varnia?"


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
    sft_id = f"{run_id}-sft"
    stage("1/7 data", "data", "prepare", "--config", CONFIG)
    stage("2/7 tokenizer", "tokenizer", "train", "--config", CONFIG)
    stage("3/7 pretrain on Ray Train", "pretrain", "--config", CONFIG, f"run_name={run_id}")
    stage("4/7 export to Hugging Face format", "export", run_id)
    stage("5/7 sample", "sample", run_id, "--prompt", "Once upon a time", "--prompt", f"Q: {QUESTION}",
          "--max-new-tokens", "40", "--temperature", "0.7")
    stage("6/7 fine-tune on instructions: TRL's SFTTrainer on Ray Train", "sft", "--config", SFT_CONFIG,
          f"base.model={run_id}", f"run_name={sft_id}")

    stage("7/7 serve it: Ray Serve + vLLM, the playground API and the UI", "up", "--model", sft_id)
    print(f"\nA streamed chat with the tuned model, through Serve (the endpoint the UI uses):\n> {QUESTION}")
    from openai import OpenAI

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=os.environ.get("PLAYGROUND_API_KEY", "none"))
    stream = client.chat.completions.create(model=sft_id, messages=[{"role": "user", "content": QUESTION}],
                                            max_tokens=40, temperature=0.0, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()

    rows = [json.loads(x) for x in (ws.run(run_id) / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in rows if "val_loss" in r]
    print(f"\nDone in {time.time() - start:.0f} s.")
    print(f"  run:           {ws.run(run_id)}")
    print(f"  val_loss:      {evals[0]['val_loss']:.3f} (step {evals[0]['step']}) -> "
          f"{evals[-1]['val_loss']:.3f} (step {evals[-1]['step']}), perplexity {evals[-1]['perplexity']:.1f}")
    print(f"  HF export:     {ws.model(run_id)}  (AutoModelForCausalLM / vLLM load it)")
    results = json.loads((ws.run(sft_id) / "results.json").read_text())
    scores = "  ".join(f"{split} {results['base'].get(split, 0):.2f} -> {acc:.2f}" for split, acc in results["sft"].items())
    print(f"  tuned model:   {ws.model(sft_id)}  held-out accuracy, base -> tuned: {scores}")
    print(f"  MLflow:        {ws.mlflow_uri()}  (`mlflow ui --backend-store-uri {ws.mlflow_uri()}`)")
    print("\nRunning now (stop with `playground down`):")
    print("  UI (chat, runs, fine-tune): http://127.0.0.1:8501")
    print("  OpenAI-compatible API:    http://127.0.0.1:8000/v1   playground API docs: http://127.0.0.1:8000/api/docs")
    print("  Ray dashboard:            http://127.0.0.1:8265")


if __name__ == "__main__":
    main()
