"""`playground bench data`: the whole pipeline on a generated corpus whose problems are known.

`synth.write_bench_corpus` plants exact and near duplicates, PII, other languages and
low-quality documents, and writes down which is which (truth.json). The bench runs the
default pipeline over it on a local Ray cluster and checks the output against that truth:

    mb_per_s           input MB / pipeline seconds (read, clean, dedup, split, write, stats)
    scaling            MB/s with 1 and with 2 Ray workers on the first `scaling_mb` MB, end to end
                       and for the read+clean step alone (the part that runs on every worker;
                       the dedup shuffle and the write have costs that do not shrink with workers)
    dup_rate_after     kept documents that duplicate another kept document / kept documents
    pii_recall         planted PII values gone from the kept documents / planted values in them
    langid_accuracy    the pipeline's detector on every document whose language is known
    false_removals     unique, clean English documents that were removed anyway

Like the other benches it prints a table and ends with one JSON line, also written to
reports/bench/data.json.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import time
from pathlib import Path

from training.data import pipeline, synth
from training.data.config import PipelineConfig
from training.data.langid import LanguageDetector
from training.workspace import Workspace

GOALS = {"mb_per_s": 1.7, "dup_rate_after": 0.01, "pii_recall": 0.99}


def _run(cfg: PipelineConfig, ws: Workspace, workers: int | None, mb: float) -> tuple[dict, float]:
    t = time.perf_counter()
    m = pipeline.run(cfg, ws, workers=workers)
    seconds = time.perf_counter() - t
    return m, mb / seconds


def _kept(ws: Workspace, snapshot_id: str) -> dict[str, str]:
    out = {}
    for split in ("train", "val", "test"):
        with open(ws.dataset(snapshot_id) / f"{split}.jsonl", encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                out[row["id"]] = row["text"]
    return out


def score(truth: dict, kept: dict[str, str]) -> dict:
    """The quality figures of one run, from truth.json and the kept documents (id -> text)."""
    roots: dict[str, str] = {}
    for table in ("exact_dup_of", "near_dup_of"):
        for dup, orig in truth[table].items():
            roots[dup] = orig
    groups: dict[str, int] = {}
    for doc in kept:
        root = roots.get(doc, doc)
        groups[root] = groups.get(root, 0) + 1
    extra = sum(n - 1 for n in groups.values() if n > 1)
    in_kept = [p for p in truth["pii"] if p["id"] in kept]
    redacted = sum(p["value"] not in kept[p["id"]] for p in in_kept)
    special = set(roots) | set(truth["low_quality"]) | {d for d, lang in truth["lang"].items() if lang != "en"}
    clean = [d for d, lang in truth["lang"].items() if lang == "en" and d not in special]
    return {
        "docs_in": truth["docs"], "docs_kept": len(kept),
        "dup_rate_before": round(len(roots) / truth["docs"], 4),
        "dup_rate_after": round(extra / max(len(kept), 1), 5),
        "pii_items": len(in_kept), "pii_recall": round(redacted / max(len(in_kept), 1), 5),
        "pii_items_in_removed_docs": len(truth["pii"]) - len(in_kept),
        "non_english_kept": sum(truth["lang"].get(d) != "en" for d in kept),
        "low_quality_kept": sum(d in kept for d in truth["low_quality"]),
        "false_removals": round(sum(d not in kept for d in clean) / max(len(clean), 1), 5),
    }


def langid_accuracy(corpus: Path, truth: dict, cfg: PipelineConfig) -> float:
    texts, langs = [], []
    for part in sorted(corpus.glob("part-*.jsonl")):
        with open(part, encoding="utf-8") as f:
            for line in f:
                row = json.loads(line)
                texts.append(row["text"])
                langs.append(truth["lang"][row["id"]])
    found = LanguageDetector(cfg.stages.language).detect(texts)
    return round(sum(f[0] == t for f, t in zip(found, langs)) / len(langs), 5)


def bench_data(*, mb: int = 200, scaling_mb: int = 50, workspace: Workspace, out: str = "reports/bench/data.json",
               seed: int = 0) -> dict:
    root = workspace.root / "bench" / f"data-{mb}mb-s{seed}"
    t = time.perf_counter()
    truth = synth.write_bench_corpus(root, target_bytes=mb * 1_000_000, seed=seed, shards=8)
    gen_s = time.perf_counter() - t
    parts = sorted(root.glob("part-*.jsonl"))
    total_mb = sum(p.stat().st_size for p in parts) / 1e6
    stamp = f"{int(time.time())}"
    base = {"sources": [str(p) for p in parts], "id_field": "id", "name": f"bench-{stamp}"}
    cfg = PipelineConfig.model_validate(base)

    pipeline._init_ray(None)
    import ray

    cpus = int(ray.cluster_resources().get("CPU", 1))
    ws = Workspace(workspace.root / "bench" / "snapshots")
    try:
        manifest, mb_per_s = _run(cfg, ws, None, total_mb)
        kept = _kept(ws, manifest["id"])
        quality = score(truth, kept)
        # Scaling: the same pipeline on the first shards, with 1 and then 2 read/clean workers.
        n = max(2, round(len(parts) * scaling_mb / total_mb))
        sub = parts[:n]
        sub_mb = sum(p.stat().st_size for p in sub) / 1e6
        scaling, clean = {}, {}
        for workers in (1, 2):
            sub_cfg = PipelineConfig.model_validate({**base, "sources": [str(p) for p in sub],
                                                     "name": f"bench-{stamp}-w{workers}"})
            m, scaling[workers] = _run(sub_cfg, ws, workers, sub_mb)
            clean[workers] = sub_mb / m["timings"]["read_clean"]  # the parallel part alone
        accuracy = langid_accuracy(root, truth, cfg)
    finally:
        shutil.rmtree(ws.root, ignore_errors=True)

    result = {
        "bench": "data", "corpus_mb": round(total_mb, 1), "generate_s": round(gen_s, 1),
        "mb_per_s": round(mb_per_s, 3), "pipeline_s": round(total_mb / mb_per_s, 1),
        "timings_s": manifest["timings"],
        "scaling_mb": round(sub_mb, 1), "mb_per_s_1_worker": round(scaling[1], 3),
        "mb_per_s_2_workers": round(scaling[2], 3), "scaling_2_over_1": round(scaling[2] / scaling[1], 3),
        "read_clean_mb_per_s_1_worker": round(clean[1], 3), "read_clean_mb_per_s_2_workers": round(clean[2], 3),
        "read_clean_scaling_2_over_1": round(clean[2] / clean[1], 3),
        **quality, "langid_accuracy": accuracy,
        "goals": GOALS, "goals_met": {"mb_per_s": mb_per_s >= GOALS["mb_per_s"],
                                      "dup_rate_after": quality["dup_rate_after"] < GOALS["dup_rate_after"],
                                      "pii_recall": quality["pii_recall"] >= GOALS["pii_recall"]},
        "machine": {"cpus": os.cpu_count(), "ray_cpus": cpus, "python": platform.python_version()},
    }
    print(f"corpus {total_mb:.0f} MB ({truth['docs']:,} docs, generated in {gen_s:.0f} s)")
    print(f"  pipeline          {result['pipeline_s']:>8.1f} s   {mb_per_s:.2f} MB/s   (goal >= {GOALS['mb_per_s']})")
    print(f"  1 vs 2 workers    {scaling[1]:.2f} -> {scaling[2]:.2f} MB/s   x{result['scaling_2_over_1']:.2f} "
          f"on {sub_mb:.0f} MB (read+clean alone: {clean[1]:.2f} -> {clean[2]:.2f} MB/s, "
          f"x{result['read_clean_scaling_2_over_1']:.2f})")
    print(f"  dup rate          {quality['dup_rate_before']:.2%} -> {quality['dup_rate_after']:.3%}   (goal < 1%)")
    print(f"  PII recall        {quality['pii_recall']:.3%} of {quality['pii_items']:,} planted items (goal >= 99%)")
    print(f"  language ID       {accuracy:.2%} accurate; non-English kept {quality['non_english_kept']}")
    print(f"  false removals    {quality['false_removals']:.3%} of clean unique English documents")
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result))
    return result
