"""Versioned datasets: every dataset is a snapshot folder, written once, never changed afterwards.

    workspace/datasets/<snapshot_id>/
      manifest.json   inputs with SHA-256, the resolved config, counts per stage, outputs with
                      SHA-256, the parent snapshot, the creation time, the code version
      stats.json      counts, histograms, languages, duplicate clusters, removed-by-stage table
      samples.jsonl   documents kept and removed (with the stage and reason), for the browser
      train.jsonl, val.jsonl, test.jsonl   one {"text": ...} per document
      tokens/<tokenizer_id>/   token shards for training, added later (training/data/shards.py)

Two drivers make snapshots, with the same reader (`sources.py`), split (`pipeline.finalize`)
and writer (`write`, here):

    playground data run       every cleaning stage, on Ray Data         (training/data/pipeline.py)
    playground data prepare   the cleaning stages off, in this process  (training/data/prepare.py)

The id of a `data run` snapshot is `<name>-<8 hex>` of a fingerprint of the inputs, the
config and the pipeline version: the same inputs and config give the same id, and a
re-run is a no-op. `data prepare` names its snapshot after the run config
(`DataConfig.dataset_id()`) and rebuilds it when the fingerprint changes. The tokenizer
and pretraining stages read either kind (`data.snapshot=<id>`, or `data.sources`), and
runs record the id.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import subprocess
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from training.atomic import atomic_dir
from training.data.config import PipelineConfig
from training.errors import UserError
from training.workspace import Workspace

if TYPE_CHECKING:
    from training.data.report import Report

KIND = "snapshot"
SPLITS = ("train", "val", "test")
PIPELINE_VERSION = 1  # part of every fingerprint: bump it when the same config starts giving other documents
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_json(path: Path) -> dict | None:
    """The JSON object in `path`, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


# ----------------------------------------------------------------------------- writing (both drivers)


@dataclass(frozen=True)
class Plan:
    """A snapshot about to be made: what it reads (`sources.plan_reads`), its fingerprint, id and folder."""

    cfg: PipelineConfig
    tasks: list[dict]
    inputs: list[dict]
    skipped: list[dict]
    parents: list[str]
    fingerprint: str
    id: str
    dir: Path

    def reusable(self) -> dict | None:
        """The manifest already in `dir` when it has this fingerprint and its outputs are intact."""
        old = read_json(self.dir / "manifest.json")
        if old and old.get("kind") == KIND and old.get("fingerprint") == self.fingerprint and all(
                (self.dir / f).is_file() and sha256_file(self.dir / f) == o["sha256"]
                for f, o in old["outputs"].items()):
            return old
        return None


def make_plan(cfg: PipelineConfig, ws: Workspace, reads: tuple, snapshot_id: str | None = None,
              prefix: str = "") -> Plan:
    """Fingerprint what `sources.plan_reads` found and name the snapshot.

    Args:
        cfg: the pipeline config.
        ws: the workspace.
        reads: (tasks, inputs, skipped, parents) from `sources.plan_reads(cfg, ws)`.
        snapshot_id: the folder name; None: `<cfg.name>-<8 hex of the fingerprint>`.
        prefix: where `cfg`'s keys sit in the user's config ("data." for a run config), for errors.

    Raises:
        UserError: when every input was skipped, or the folder holds something that is
            not ours (a snapshot, or an older playground's dataset): it is never replaced.
    """
    tasks, inputs, skipped, parents = reads
    if not tasks:
        raise UserError(f"{prefix}sources: nothing to read (every input was skipped: "
                        + "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3]) + ")")
    config = cfg.model_dump(mode="json")
    fingerprint = hashlib.sha256(json.dumps(
        {"inputs": inputs, "skipped": skipped, "config": config, "pipeline": PIPELINE_VERSION},
        sort_keys=True).encode()).hexdigest()
    snapshot_id = snapshot_id or f"{cfg.name}-{fingerprint[:8]}"
    folder = ws.dataset(snapshot_id)
    ours = (read_json(folder / "manifest.json") or {}).get("kind") in (KIND, "text")
    if folder.exists() and (not folder.is_dir() or any(folder.iterdir())) and not ours:
        raise UserError(f"{prefix}name: refusing to overwrite {folder}: it exists and is not a snapshot")
    return Plan(cfg, tasks, inputs, skipped, parents, fingerprint, snapshot_id, folder)


def write(plan: Plan, batches: Iterable[dict], report: Report, *, driver: str, timings: dict[str, float],
          t_start: float, tokenizer: str | None = None, stage_extra: dict | None = None,
          clusters: list[dict] | None = None, before_stats: Callable[[], None] | None = None) -> dict:
    """Write the snapshot folder all at once (a crash or an error leaves the old folder, or none).

    Args:
        plan: from `make_plan`; what is at `plan.dir` is replaced.
        batches: the final batches in reading order: the columns of `stages.clean_batch` plus
            "split" ("" for a removed document) and "tokens", as `pipeline.finalize` makes them.
        report: fed every batch; becomes stats.json and samples.jsonl.
        driver: "ray" (`data run`) or "prepare" (`data prepare`), recorded in the manifest.
        timings: seconds per step so far; "write" and "total" (since `t_start`) are added.
        tokenizer: the tokenizer folder that counted tokens, if any.
        stage_extra, clusters: per-stage fields and duplicate clusters for stats.json.
        before_stats: called when the split files are written (a progress line).

    Returns:
        The manifest, plus "reused": False and "timings".
    """
    t = time.perf_counter()
    with atomic_dir(plan.dir) as tmp:
        outputs = _write_splits(tmp, batches, report)
        timings["write"] = time.perf_counter() - t
        if before_stats:
            before_stats()
        timings["total"] = time.perf_counter() - t_start
        stats = report.stats(extra=stage_extra or {}, clusters=clusters or [], skipped=plan.skipped,
                             timings={k: round(v, 3) for k, v in timings.items()},
                             tokenizer=Path(tokenizer).name if tokenizer else None)
        for name, content in (("stats.json", json.dumps(stats, indent=1)),
                              ("samples.jsonl", "".join(json.dumps(s, ensure_ascii=False) + "\n"
                                                        for s in report.samples))):
            (tmp / name).write_text(content, encoding="utf-8")
            outputs[name] = {"sha256": sha256_file(tmp / name), "size": (tmp / name).stat().st_size}
        table = stats["stages"]
        counts = {row["stage"]: {"in": row["in"], "out": row["out"]} for row in table}
        counts["split"] = {"in": table[-1]["out"], "out": stats["totals"]["docs"]}
        parents = plan.parents
        manifest = {
            "kind": KIND, "id": plan.id, "name": plan.cfg.name, "driver": driver,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds"), "code_version": _code_version(),
            "parent": parents[0] if len(parents) == 1 else (parents or None),
            "sources": list(plan.cfg.sources), "inputs": plan.inputs, "skipped_inputs": plan.skipped,
            "config": plan.cfg.model_dump(mode="json"), "counts": counts, "split": plan.cfg.split.model_dump(),
            "outputs": outputs, "fingerprint": plan.fingerprint,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {**manifest, "reused": False, "timings": stats["timings_s"]}


def _write_splits(tmp: Path, batches: Iterable[dict], report: Report) -> dict:
    """Stream the kept documents into one JSONL file per split (hashing as it goes); feed the report."""
    shas = {s: hashlib.sha256() for s in SPLITS}
    counts = {s: [0, 0] for s in SPLITS}
    with contextlib.ExitStack() as stack:
        files = {s: stack.enter_context(open(tmp / f"{s}.jsonl", "wb")) for s in SPLITS}
        for b in batches:
            report.add(b)
            for text, split, ext_id in zip(b["text"], b["split"], b["ext_id"]):
                if split:
                    row = {"id": ext_id, "text": text} if ext_id else {"text": text}
                    line = (json.dumps(row, ensure_ascii=False) + "\n").encode("utf-8")
                    files[split].write(line)
                    shas[split].update(line)
                    counts[split][0] += 1
                    counts[split][1] += len(text)
    return {f"{s}.jsonl": {"sha256": shas[s].hexdigest(), "size": (tmp / f"{s}.jsonl").stat().st_size,
                           "docs": counts[s][0], "chars": counts[s][1]} for s in SPLITS}


def _code_version() -> dict:
    try:
        git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                             check=False, text=True, timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        git = None
    from importlib.metadata import PackageNotFoundError, version
    try:
        pkg = version("llm-playground")
    except PackageNotFoundError:
        pkg = None
    return {"pipeline": PIPELINE_VERSION, "git": git, "playground": pkg}


# ----------------------------------------------------------------------------- reading


def manifest_at(folder: Path, field: str = "dataset") -> dict:
    """The manifest of the snapshot in `folder`.

    Raises:
        UserError: naming `field`, when there is no snapshot there, or only a dataset made by
            an older playground (before every dataset was a snapshot), with what to run.
    """
    manifest = read_json(folder / "manifest.json")
    if manifest and manifest.get("kind") == KIND:
        return manifest
    if manifest is None:
        raise UserError(f"{field}: no snapshot {folder.name!r} in {folder.parent} (see `playground data list`)")
    if manifest.get("kind") == "instructions":  # training/posttrain/sft_data.py: for `playground sft`, not text
        raise UserError(f"{field}: {folder.name!r} is instruction data (for `playground sft`), not a text snapshot")
    raise UserError(f"{field}: no snapshot {folder.name!r}: it is a dataset made by an older playground; run "
                    f"`playground data prepare --config <your run config>` again, or delete {folder}")


def is_snapshot(folder: Path) -> bool:
    """True when `folder` holds a snapshot (no check of its files)."""
    return (read_json(folder / "manifest.json") or {}).get("kind") == KIND


def snapshot_dir(ws: Workspace, snapshot_id: Any, field: str = "snapshot") -> Path:
    """The folder of a snapshot (UserError naming `field` when there is none)."""
    if not isinstance(snapshot_id, str) or not _ID.fullmatch(snapshot_id) or ".." in snapshot_id:
        raise UserError(f"{field}: not a snapshot id: {snapshot_id!r}")
    path = ws.dataset(snapshot_id)
    manifest_at(path, field)
    return path


def load_manifest(ws: Workspace, snapshot_id: str, field: str = "snapshot") -> dict:
    return manifest_at(snapshot_dir(ws, snapshot_id, field), field)


def load_stats(ws: Workspace, snapshot_id: str, field: str = "snapshot") -> dict:
    return json.loads((snapshot_dir(ws, snapshot_id, field) / "stats.json").read_text())


def iter_split(folder: Path, split: str = "train") -> Iterator[str]:
    """The documents of one split of the snapshot in `folder`, streamed from its JSONL file."""
    with open(folder / f"{split}.jsonl", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)["text"]


def list_snapshots(ws: Workspace) -> list[dict]:
    """One summary per snapshot, newest first."""
    out = []
    root = ws.datasets
    for d in root.iterdir() if root.is_dir() else []:
        m = read_json(d / "manifest.json")
        if not m or m.get("kind") != KIND:
            continue
        out.append({
            "id": m["id"], "name": m["name"], "created_at": m["created_at"], "parent": m.get("parent"),
            "driver": m.get("driver", "ray"),
            "sources": m["sources"], "docs_in": m["counts"]["read"]["out"], "docs_out": m["counts"]["split"]["out"],
            "splits": {s: m["outputs"][f"{s}.jsonl"]["docs"] for s in SPLITS if f"{s}.jsonl" in m["outputs"]},
        })
    return sorted(out, key=lambda s: (s["created_at"], s["id"]), reverse=True)


def samples(ws: Workspace, snapshot_id: str, *, status: str | None = None, reason: str | None = None,
            stage: str | None = None, limit: int = 20, offset: int = 0) -> dict:
    """Sample documents, filtered by status ("kept"/"removed"), stage and reason (prefix match)."""
    if status not in (None, "kept", "removed"):
        raise UserError(f"status: use 'kept' or 'removed', got {status!r}")
    if not 1 <= limit <= 500:
        raise UserError(f"limit: between 1 and 500, got {limit}")
    if offset < 0:
        raise UserError(f"offset: 0 or more, got {offset}")
    items = []
    with open(snapshot_dir(ws, snapshot_id) / "samples.jsonl", encoding="utf-8") as f:
        for line in f:
            s = json.loads(line)
            if ((status is None or s["status"] == status) and (stage is None or s["stage"] == stage)
                    and (reason is None or (s["reason"] or "").startswith(reason))):
                items.append(s)
    return {"total": len(items), "items": items[offset:offset + limit]}


def _flat(d: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(d, dict):
        return {prefix: d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def diff(ws: Workspace, a: str, b: str) -> dict:
    """What changed from snapshot `a` to `b`: config keys, inputs, counts per stage, outputs."""
    ma, mb = load_manifest(ws, a, "a"), load_manifest(ws, b, "b")
    ca, cb = _flat(ma["config"]), _flat(mb["config"])
    config = {k: [ca.get(k), cb.get(k)] for k in sorted(set(ca) | set(cb)) if ca.get(k) != cb.get(k)}
    ia = {i["path"]: i["sha256"] for i in ma["inputs"]}
    ib = {i["path"]: i["sha256"] for i in mb["inputs"]}
    inputs = {
        "added": sorted(set(ib) - set(ia)), "removed": sorted(set(ia) - set(ib)),
        "changed": sorted(p for p in set(ia) & set(ib) if ia[p] != ib[p]),
    }
    counts = {stage: {"a": ma["counts"].get(stage, {}).get("out"), "b": mb["counts"].get(stage, {}).get("out")}
              for stage in dict.fromkeys([*ma["counts"], *mb["counts"]])}
    outputs = {name: {"a": ma["outputs"].get(name, {}).get("sha256"), "b": mb["outputs"].get(name, {}).get("sha256"),
                      "docs_a": ma["outputs"].get(name, {}).get("docs"), "docs_b": mb["outputs"].get(name, {}).get("docs")}
               for name in dict.fromkeys([*ma["outputs"], *mb["outputs"]]) if name.endswith(".jsonl")
               and name != "samples.jsonl"}
    for o in outputs.values():
        o["same"] = o["a"] == o["b"]
    return {"a": a, "b": b, "related": mb.get("parent") == a or ma.get("parent") == b,
            "config": config, "inputs": inputs, "counts": counts, "outputs": outputs}
