"""Versioned datasets: every pipeline run writes one snapshot folder, never changed afterwards.

    workspace/datasets/<snapshot_id>/
      manifest.json   inputs with SHA-256, the resolved config, counts per stage, outputs with
                      SHA-256, the parent snapshot, the creation time, the code version
      stats.json      counts, histograms, languages, duplicate clusters, removed-by-stage table
      samples.jsonl   documents kept and removed (with the stage and reason), for the browser
      train.jsonl, val.jsonl, test.jsonl   one {"text": ...} per document

The id is `<name>-<8 hex>` of a fingerprint of the inputs, the config and the pipeline
version: the same inputs and config give the same id, and a re-run is a no-op. A snapshot
is a dataset like any other (train.jsonl / val.jsonl), so the tokenizer and pretraining
stages take its id (`data.snapshot=<id>`), and runs record it.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from training.errors import UserError
from training.workspace import Workspace

KIND = "snapshot"
SPLITS = ("train", "val", "test")
_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def snapshot_dir(ws: Workspace, snapshot_id: Any, field: str = "snapshot") -> Path:
    """The folder of a snapshot (UserError naming `field` when there is none)."""
    if not isinstance(snapshot_id, str) or not _ID.fullmatch(snapshot_id) or ".." in snapshot_id:
        raise UserError(f"{field}: not a snapshot id: {snapshot_id!r}")
    path = ws.dataset(snapshot_id)
    manifest = _read_json(path / "manifest.json")
    if not manifest or manifest.get("kind") != KIND:
        raise UserError(f"{field}: no snapshot {snapshot_id!r} in {ws.datasets} (see `playground data list`)")
    return path


def load_manifest(ws: Workspace, snapshot_id: str, field: str = "snapshot") -> dict:
    return json.loads((snapshot_dir(ws, snapshot_id, field) / "manifest.json").read_text())


def load_stats(ws: Workspace, snapshot_id: str, field: str = "snapshot") -> dict:
    return json.loads((snapshot_dir(ws, snapshot_id, field) / "stats.json").read_text())


def list_snapshots(ws: Workspace) -> list[dict]:
    """One summary per snapshot, newest first."""
    out = []
    root = ws.datasets
    for d in root.iterdir() if root.is_dir() else []:
        m = _read_json(d / "manifest.json")
        if not m or m.get("kind") != KIND:
            continue
        out.append({
            "id": m["id"], "name": m["name"], "created_at": m["created_at"], "parent": m.get("parent"),
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
