"""Fixture snapshots for the data API and Data page tests, in the pipeline's file formats.

`write_fixture_snapshot` writes what `training/data/pipeline.py` writes for one run
(manifest.json, stats.json, samples.jsonl, train/val/test.jsonl, with SHA-256s that match
the files), with figures that add up: every stage's `out` is the next stage's `in`, the
removed documents of each stage split into its reasons, and the samples carry those reasons.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from training.data.config import PipelineConfig
from training.workspace import Workspace

# stage -> (removed by reason); the documents read are 120, of which the read stage drops 2.
REMOVED = {
    "read": {"non_utf8": 1, "line_too_long": 1},
    "normalize": {"empty": 1},
    "language": {"lang:de": 5, "lang:unknown": 2},
    "quality": {"min_words": 6, "dup_lines": 4},
    "pii": {},
    "exact_dedup": {"exact_dup": 5},
    "near_dedup": {"near_dup": 5},
    "split": {},
}
READ = 120
# A document whose text must be shown as text, never rendered.
MARKUP = "<script>alert('x')</script> **not bold** [link](http://x) # not a heading"


def _sha(path: Path) -> dict:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data)}


def _doc(i: int) -> str:
    return (f"Document {i} is about the river and the town; it has enough words to pass every "
            f"quality check the pipeline runs, and it ends here. " * 2).strip()


def write_fixture_snapshot(ws: Workspace, snapshot_id: str = "web-1a2b3c4d", *, parent: str | None = None,
                           name: str = "web", created_at: str = "2026-11-21T10:00:00+00:00",
                           near_dup: int = 5, config: dict | None = None, sources: list[str] | None = None) -> Path:
    """Write one snapshot folder under `ws.datasets`; `near_dup` changes what near-dedup removes,
    `config` is merged over the stage configs (e.g. {"near_dedup": {"threshold": 0.7}})."""
    removed = {**REMOVED, "near_dedup": {"near_dup": near_dup} if near_dup else {}}
    sources = sources or (["/data/a.jsonl"] if parent is None else [f"snapshot:{parent}"])
    cfg = PipelineConfig(name=name, sources=sources).model_dump(mode="json")
    for stage, fields in (config or {}).items():
        cfg["stages"][stage].update(fields)
    folder = ws.dataset(snapshot_id)
    folder.mkdir(parents=True, exist_ok=True)

    counts, stages, n = {}, [], READ
    for stage, reasons in removed.items():
        out = n - sum(reasons.values())
        counts[stage] = {"in": n, "out": out}
        row = {"stage": stage, "in": n, "out": out, "removed": n - out, "chars_removed": 40 * (n - out),
               "reasons": reasons}
        if stage == "normalize":
            row["changed"] = 30
        if stage == "pii":
            row.update(replaced={"email": 12, "phone": 3, "ip": 1, "credit_card": 2, "ssn": 1}, changed=15)
        if stage == "exact_dedup":
            row["clusters"] = 4
        if stage == "near_dedup":
            row.update(clusters=near_dup, bands=9, rows=13)
        if stage != "split":
            stages.append(row)
        n = out
    kept = n

    split_docs = {"val": 5, "test": 4}
    split_docs["train"] = kept - 9
    texts = [_doc(i) for i in range(kept)]
    texts[0] = MARKUP + " " + texts[0]
    outputs, splits, at = {}, {}, 0
    for split in ("train", "val", "test"):
        part = texts[at:at + split_docs[split]]
        at += len(part)
        path = folder / f"{split}.jsonl"
        path.write_text("".join(json.dumps({"text": t}) + "\n" for t in part), encoding="utf-8")
        chars = sum(len(t) for t in part)
        outputs[f"{split}.jsonl"] = {**_sha(path), "docs": len(part), "chars": chars}
        splits[split] = {"docs": len(part), "chars": chars, "words": sum(len(t.split()) for t in part),
                         "tokens": None}

    samples = []
    for i, t in enumerate(texts[:12]):
        split = "train" if i < split_docs["train"] else "val"
        samples.append({"doc_id": 1000 + i, "source": sources[0], "status": "kept", "stage": None, "reason": None,
                        "split": split, "text": t, "chars": len(t), "lang": "en"})
    doc_id = 1
    for stage, reasons in removed.items():
        for reason, count in reasons.items():
            for _ in range(min(count, 3)):
                text = f"removed by {stage} because {reason}: document {doc_id}"
                samples.append({"doc_id": doc_id, "source": sources[0], "status": "removed", "stage": stage,
                                "reason": reason, "split": None, "text": text, "chars": len(text),
                                "lang": reason[5:] if reason.startswith("lang:") else "en"})
                doc_id += 1
    with open(folder / "samples.jsonl", "w", encoding="utf-8") as f:
        f.writelines(json.dumps(s) + "\n" for s in samples)

    stats = {
        "totals": {k: sum(s[k] for s in splits.values()) if k != "tokens" else None
                   for k in ("docs", "chars", "words", "tokens")},
        "splits": splits,
        "input": {"docs": READ, "chars": 260_000},
        "stages": stages,
        "histograms": {
            "chars": {"edges": [1, 10, 100, 1000, 10_000, 100_000], "kept": [0, 2, kept - 30, 25, 3],
                      "removed": [3, 8, 15, 4, READ - kept - 30]},
            "words": {"edges": [1, 3.16, 10, 31.6, 100, 316], "kept": [0, 0, 10, kept - 40, 30],
                      "removed": [5, 10, 10, 5, READ - kept - 30]},
        },
        "languages": {"en": 110, "de": 5, "unknown": 2},
        "dup_clusters": [
            {"kind": "exact", "size": 3, "kept": 17, "examples": [{"doc_id": 17, "text": texts[1][:300]},
                                                                  {"doc_id": 18, "text": texts[1][:300]}]},
            {"kind": "near", "size": 2, "kept": 40, "examples": [{"doc_id": 40, "text": MARKUP},
                                                                 {"doc_id": 41, "text": MARKUP + "!"}]},
        ],
        "skipped_inputs": [{"path": "/data/y.bin", "reason": "binary file"}],
        "timings_s": {"read_clean": 1.2, "exact_dedup": 0.3, "near_dedup": 0.5, "write": 0.2, "total": 2.4},
        "tokenizer": None,
    }
    (folder / "stats.json").write_text(json.dumps(stats, indent=2), encoding="utf-8")
    outputs["stats.json"] = _sha(folder / "stats.json")
    outputs["samples.jsonl"] = _sha(folder / "samples.jsonl")

    manifest = {
        "kind": "snapshot", "id": snapshot_id, "name": name, "created_at": created_at,
        "code_version": {"pipeline": 1, "git": "abc123", "playground": "0.1.0"},
        "parent": parent, "sources": sources,
        "inputs": [{"source": s, "path": s, "sha256": hashlib.sha256(s.encode()).hexdigest(), "size": 123}
                   for s in sources],
        "config": cfg, "counts": counts,
        "split": {k: cfg["split"][k] for k in ("train", "val", "test", "seed")},
        "outputs": outputs,
        "fingerprint": hashlib.sha256(json.dumps([sources, cfg]).encode()).hexdigest(),
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2), encoding="utf-8")
    return folder
