"""`make demo`: the whole path, each stage a `playground` command as a user types it.

data prepare -> tokenizer train -> pretrain (Ray Train) -> export (Hugging Face) -> sample
-> sft (full fine-tuning with TRL on Ray Train) -> up (Ray Serve + vLLM + the playground API + the
Streamlit UI) -> a streamed chat with the tuned model -> eval (lm-eval against the served model)

At the end it writes the run's report card (evaluation/report.py): workspace/reports/<run_id>/report.md
with every stage's key figures and seconds, the environment, the seed and the commit, as nanochat
does for its speedrun. Two cards compare with `evaluation.report.compare_reports`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import datetime

from training.workspace import Workspace

CONFIG = "configs/pretrain/demo.yaml"
SFT_CONFIG = "configs/sft/demo.yaml"
QUESTION = "What is the capital of Varnia?"
EVAL_TASKS = "world_facts,world_arithmetic,world_stories"


def stage(log: list[dict], title: str, *args: str) -> dict:
    """Run `playground ARGS` as its own process; record its seconds and command in `log`.

    The entry is recorded before a failure exits (with the stage's return code), so a caller that
    tolerates one failing stage still has its time for the report.
    """
    cmd = [sys.executable, "-m", "cluster.cli", *args]
    command = f"playground {' '.join(args)}"
    print(f"\n=== {title}\n$ {command}", flush=True)
    t = time.time()
    rc = subprocess.call(cmd)
    entry = {"name": args[0], "title": title, "seconds": round(time.time() - t, 1), "command": command, "rc": rc}
    log.append(entry)
    if rc:
        sys.exit(rc)
    print(f"--- {title}: {entry['seconds']:.0f} s", flush=True)
    return entry


def evaluate(log: list[dict], sft_id: str, run_id: str) -> str | None:
    """The last stage, lm-eval on the served model; its failure leaves the report without an evaluation."""
    eval_id = f"{run_id}-eval"
    try:
        stage(log, "8/8 evaluate the served model with lm-eval", "eval", "--model", sft_id, "--tasks", EVAL_TASKS,
              "--backend", "served", f"name={eval_id}")
    except SystemExit as e:
        print(f"--- the evaluation failed (exit code {e.code}); the report is written without it", flush=True)
        return None
    return eval_id


def chat(sft_id: str) -> None:
    """A streamed chat with the tuned model, through Serve (the endpoint the UI uses)."""
    print(f"\nA streamed chat with the tuned model, through Serve (the endpoint the UI uses):\n> {QUESTION}")
    from openai import OpenAI

    client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=os.environ.get("PLAYGROUND_API_KEY", "none"))
    stream = client.chat.completions.create(model=sft_id, messages=[{"role": "user", "content": QUESTION}],
                                            max_tokens=40, temperature=0.0, stream=True)
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
    print()


def main() -> None:
    from evaluation.report import build_report, stage_table, write_report
    from training.config import load_config

    ws = Workspace.resolve()
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    run_id = f"demo-{datetime.now():%Y%m%d-%H%M%S}"
    start = time.time()
    sft_id = f"{run_id}-sft"
    log: list[dict] = []
    stage(log, "1/8 data", "data", "prepare", "--config", CONFIG)
    stage(log, "2/8 tokenizer", "tokenizer", "train", "--config", CONFIG)
    stage(log, "3/8 pretrain on Ray Train", "pretrain", "--config", CONFIG, f"run_name={run_id}")
    stage(log, "4/8 export to Hugging Face format", "export", run_id)
    stage(log, "5/8 sample", "sample", run_id, "--prompt", "Once upon a time", "--prompt", f"Q: {QUESTION}",
          "--max-new-tokens", "40", "--temperature", "0.7")
    stage(log, "6/8 fine-tune on instructions: TRL's SFTTrainer on Ray Train", "sft", "--config", SFT_CONFIG,
          f"base.model={run_id}", f"run_name={sft_id}")
    stage(log, "7/8 serve it: Ray Serve + vLLM, the playground API and the UI", "up", "--model", sft_id)
    chat(sft_id)
    eval_id = evaluate(log, sft_id, run_id)

    cfg = load_config(CONFIG)
    report = build_report(ws, stages=log, run_id=run_id, sft_id=sft_id, eval_id=eval_id, seed=cfg.train.seed)
    md_path, _ = write_report(ws, report, run_id)
    print(f"\nDone in {time.time() - start:.0f} s. Report card: {md_path}\n")
    print(stage_table(report))
    summary(ws, report)


def summary(ws: Workspace, report: dict) -> None:
    """Where everything is, and the headline figures of the report."""
    pre, sft, ev = report.get("pretrain") or {}, report.get("sft") or {}, report.get("eval") or {}
    print(f"\n  run:           {ws.run(report['run_id'])}")
    if pre.get("last_val_loss") is not None:
        bpb = f", {pre['bits_per_byte']:.3f} bits per byte" if pre.get("bits_per_byte") is not None else ""
        print(f"  val_loss:      {pre['first_val_loss']:.3f} (step {pre['first_val_step']}) -> "
              f"{pre['last_val_loss']:.3f} (step {pre['last_val_step']}), perplexity {pre['perplexity']:.1f}{bpb}")
    print(f"  HF export:     {ws.model(report['run_id'])}  (AutoModelForCausalLM / vLLM load it)")
    if sft:
        scores = "  ".join(f"{a['split']} {a['base'] or 0:.2f} -> {a['tuned'] or 0:.2f}" for a in sft["accuracy"])
        print(f"  tuned model:   {ws.model(sft['run_id'])}  held-out accuracy, base -> tuned: {scores}")
    if ev:
        scores = "  ".join(f"{r['task']} {r['score']:.2f}" for r in ev["rows"] if not r["group"])
        print(f"  evaluation:    {ev['eval_id']} ({ev['status']}): {scores}  (`playground eval --show {ev['eval_id']}`)")
    print(f"  MLflow:        {ws.mlflow_uri()}  (`mlflow ui --backend-store-uri {ws.mlflow_uri()}`)")
    print("\nRunning now (stop with `playground down`):")
    print("  UI (chat, runs, fine-tune): http://127.0.0.1:8501")
    print("  OpenAI-compatible API:    http://127.0.0.1:8000/v1   playground API docs: http://127.0.0.1:8000/api/docs")
    print("  Ray dashboard:            http://127.0.0.1:8265")


if __name__ == "__main__":
    main()
