"""The data pipeline on Ray Data: sources -> cleaning -> dedup -> split -> a snapshot.

    read + per-document stages   map_batches over read tasks, on every core/node  [1]
            |  (materialized: the cleaned text stays in Ray's object store)
    dedup keys, shuffled by band  groupby(band).map_groups: one task per LSH band   [2]
            |  buckets of doc ids sharing a key -> union-find on the driver
    split + token counts          map_batches                                       [3]
            |
    write train/val/test.jsonl, stats.json, samples.jsonl, manifest.json into a temp
    folder, renamed into workspace/datasets/<snapshot id>/ at the end                [4]

The exact-dedup key is treated as one more "band" (band -1), so exact and near
duplicates come out of the same shuffle; exact duplicates are settled first and only
their representatives take part in near-dedup. The driver holds only ids of
duplicates, never the text. Every Ray call is marked `# [n] Ray:`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from training.atomic import atomic_dir
from training.data import dedup, sources
from training.data.config import PipelineConfig
from training.data.report import Report
from training.data.shards import _read_json, sha256_file
from training.data.snapshot import KIND, SPLITS
from training.data.stages import band_columns, clean_batch
from training.errors import UserError
from training.workspace import Workspace

PIPELINE_VERSION = 1
MAX_CLUSTERS_SHOWN = 20
_SPLIT_CODES = np.array(SPLITS, dtype=object)


# ----------------------------------------------------------------------------- row functions (plain Python)


def read_and_clean(tasks: dict, cfg: PipelineConfig):
    """Read each task's documents and clean them, `cfg.block_docs` at a time (a generator of batches)."""
    # Ray gives this task one CPU: lingua's Rust thread pool must use one thread too, or
    # two tasks fight over the same cores (the pool reads this when it first starts).
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    for raw in tasks["task"]:
        rows, chunk = sources.read_task(json.loads(raw), cfg), []
        for row in rows:
            chunk.append(row)
            if len(chunk) >= cfg.block_docs:
                yield clean_batch({k: [r[k] for r in chunk] for k in chunk[0]}, cfg)
                chunk = []
        if chunk:
            yield clean_batch({k: [r[k] for r in chunk] for k in chunk[0]}, cfg)


def dedup_keys(batch: dict, exact: bool, bands: list[str]) -> dict:
    """Long format (band, key, doc_id) for the surviving documents; band -1 is the exact key."""
    alive = np.asarray(batch["stage"], dtype=object) == ""
    ids = batch["doc_id"][alive]
    parts = ([(-1, batch["exact_key"][alive])] if exact else []) + [(i, batch[c][alive]) for i, c in enumerate(bands)]
    if not parts:
        return {"band": np.zeros(0, np.int32), "key": np.zeros(0, np.uint64), "doc_id": np.zeros(0, np.int64)}
    return {"band": np.concatenate([np.full(len(ids), b, np.int32) for b, _ in parts]),
            "key": np.concatenate([k for _, k in parts]).astype(np.uint64),
            "doc_id": np.concatenate([ids] * len(parts))}


def buckets_of_band(group: dict) -> dict:
    """Within one band: the documents that share a key (groups of 2 or more), as (band, key, doc_id) rows."""
    order = np.lexsort((group["doc_id"], group["key"]))
    keys, ids = group["key"][order], group["doc_id"][order]
    if len(keys) < 2:
        return {"band": group["band"][:0], "key": keys[:0], "doc_id": ids[:0]}
    same_as_next = keys[1:] == keys[:-1]
    in_bucket = np.zeros(len(keys), bool)
    in_bucket[1:] |= same_as_next
    in_bucket[:-1] |= same_as_next
    return {"band": group["band"][order][in_bucket], "key": keys[in_bucket], "doc_id": ids[in_bucket]}


def resolve_duplicates(rows: dict) -> tuple[dict[int, int], dict[int, int]]:
    """Union-find over the buckets: (exact, near), each duplicate doc id -> the id kept for it."""
    band, key, ids = rows["band"], rows["key"], rows["doc_id"]

    def buckets(mask):
        order = np.lexsort((ids[mask], key[mask], band[mask]))
        b, k, d = band[mask][order], key[mask][order], ids[mask][order]
        cuts = np.flatnonzero((b[1:] != b[:-1]) | (k[1:] != k[:-1])) + 1
        return [g.tolist() for g in np.split(d, cuts) if len(g) > 1]

    exact_rep = dedup.clusters_from_buckets(buckets(band == -1)) if len(ids) else {}
    exact = {d: r for d, r in exact_rep.items() if d != r}
    near_buckets = [[d for d in g if d not in exact] for g in buckets(band >= 0)] if len(ids) else []
    near_rep = dedup.clusters_from_buckets(g for g in near_buckets if len(g) > 1)
    near = {d: r for d, r in near_rep.items() if d != r}
    return exact, near


def finalize(batch: dict, exact_ids: np.ndarray, near_ids: np.ndarray, seed: int, ratios: tuple[float, float],
             tokenizer: str | None) -> dict:
    """Mark the duplicates, draw each kept document's split, count its tokens."""
    stage = np.asarray(batch["stage"], dtype=object)
    reason = np.asarray(batch["reason"], dtype=object)
    alive = stage == ""
    for ids, name in ((exact_ids, "exact_dedup"), (near_ids, "near_dedup")):
        hit = alive & np.isin(batch["doc_id"], ids)
        stage[hit], reason[hit] = name, name.replace("_dedup", "_dup")
        alive &= ~hit
    split = np.full(len(stage), "", dtype=object)
    tokens = np.zeros(len(stage), np.int64)
    texts = batch["text"]
    if alive.any():
        idx = np.flatnonzero(alive)
        # The split is a hash of the text and the seed: reproducible, independent of order or workers.
        salt = str(seed).encode()
        u = np.array([int.from_bytes(hashlib.blake2b(texts[i].encode(), digest_size=8, key=salt).digest(), "big")
                      for i in idx], dtype=np.float64) / 2.0**64
        split[idx] = _SPLIT_CODES[(u >= ratios[0]).astype(int) + (u >= ratios[0] + ratios[1]).astype(int)]
        if tokenizer:
            tokens[idx] = [len(e.ids) for e in _tokenizer(tokenizer).encode_batch([texts[i] for i in idx])]
    return {**batch, "stage": stage, "reason": reason, "split": split, "tokens": tokens}


_TOKENIZERS: dict = {}


def _tokenizer(path: str):
    if path not in _TOKENIZERS:
        from tokenizers import Tokenizer

        _TOKENIZERS[path] = Tokenizer.from_file(str(Path(path) / "tokenizer.json"))
    return _TOKENIZERS[path]


# ----------------------------------------------------------------------------- the run


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


def _tokenizer_dir(cfg: PipelineConfig, ws: Workspace) -> str | None:
    name = cfg.stats.tokenizer
    if not name:
        return None
    for path in (Path(name).expanduser(), ws.tokenizer(name)):
        if (path / "tokenizer.json").is_file():
            return str(path.resolve())
    raise UserError(f"stats.tokenizer: no tokenizer {name!r} (a workspace tokenizer id or a folder "
                    "with tokenizer.json)")


def _init_ray(workers: int | None) -> None:
    import ray

    if not ray.is_initialized():
        # [0] Ray: join the cluster a job runs in (or RAY_ADDRESS); else start a local one.
        address = os.environ.get("RAY_ADDRESS")
        ray.init(address=address, num_cpus=None if address else max(os.cpu_count() or 1, workers or 1),
                 log_to_driver=False)


def _user_error_in(e: BaseException) -> UserError | None:
    """The user's mistake behind a Ray task failure (Ray wraps it; we want its one line)."""
    seen = set()
    while e is not None and id(e) not in seen:
        seen.add(id(e))
        cause = getattr(e, "cause", None)  # RayTaskError keeps the task's own exception here
        if isinstance(e, UserError) and cause is None:
            return e
        e = cause or e.__cause__ or e.__context__
    return None


def run(cfg: PipelineConfig, ws: Workspace, *, workers: int | None = None,
        progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Run the pipeline and write its snapshot; a user's mistake inside a Ray task is a one-line UserError."""
    try:
        return _run(cfg, ws, workers=workers, progress=progress)
    except UserError:
        raise
    except Exception as e:
        mistake = _user_error_in(e)
        if mistake is None:
            raise
        raise UserError(str(mistake)) from None


def _run(cfg: PipelineConfig, ws: Workspace, *, workers: int | None = None,
         progress: Callable[[int, int, str], None] | None = None) -> dict:
    """Run the pipeline and write its snapshot (reused when inputs and config are unchanged).

    Args:
        cfg: the pipeline config.
        ws: the workspace; the snapshot goes to `ws.datasets/<id>/`.
        workers: how many read/clean tasks run at once (None: as many as Ray has CPUs).
        progress: called with (step, steps, name) as each step starts.

    Returns:
        The manifest, plus "reused" (and the stats' "timings_s" under "timings").
    """
    say = progress or (lambda *_: None)
    t_start = time.perf_counter()
    tasks, inputs, skipped, parents = sources.plan_reads(cfg, ws)
    tokenizer = _tokenizer_dir(cfg, ws)
    config = cfg.model_dump(mode="json")
    fingerprint = hashlib.sha256(json.dumps(
        {"inputs": inputs, "skipped": skipped, "config": config, "pipeline": PIPELINE_VERSION},
        sort_keys=True).encode()).hexdigest()
    snapshot_id = f"{cfg.name}-{fingerprint[:8]}"
    out_dir = ws.dataset(snapshot_id)
    old = _read_json(out_dir / "manifest.json")
    if old and old.get("kind") == KIND and old.get("fingerprint") == fingerprint and all(
            (out_dir / f).is_file() and sha256_file(out_dir / f) == o["sha256"] for f, o in old["outputs"].items()):
        return {**old, "reused": True}
    if not tasks:
        raise UserError("sources: nothing to read (every input was skipped: "
                        + "; ".join(f"{s['path']}: {s['reason']}" for s in skipped[:3]) + ")")

    import ray
    import ray.data

    _init_ray(workers)
    ctx = ray.data.DataContext.get_current()
    ctx.execution_options.preserve_order = True  # same inputs -> the same output files, byte for byte
    ctx.enable_progress_bars = sys.stderr.isatty()
    if not ctx.enable_progress_bars:  # in a job's log, the stage lines say enough
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    timings: dict[str, float] = {}

    say(1, 4, "read_clean")
    t = time.perf_counter()
    # [1] Ray: one row per read task; each task reads and cleans its documents in parallel.
    cleaned = ray.data.from_items([{"task": json.dumps(task)} for task in tasks], override_num_blocks=len(tasks)) \
        .map_batches(read_and_clean, batch_size=1, fn_kwargs={"cfg": cfg}, concurrency=workers, num_cpus=1) \
        .materialize()
    timings["read_clean"] = time.perf_counter() - t

    say(2, 4, "dedup")
    t = time.perf_counter()
    bands = band_columns(cfg)
    exact_on = cfg.stages.exact_dedup.enabled
    exact: dict[int, int] = {}
    near: dict[int, int] = {}
    if exact_on or bands:
        # [2] Ray: every (band, key) pair, shuffled so that each band is one group; a task
        # per band finds the documents sharing a key there. Only duplicate ids come back.
        found = cleaned.select_columns(["doc_id", "stage", "exact_key", *bands]) \
            .map_batches(dedup_keys, batch_format="numpy", fn_kwargs={"exact": exact_on, "bands": bands}) \
            .groupby("band", num_partitions=len(bands) + 1).map_groups(buckets_of_band, batch_format="numpy")
        rows = {"band": [], "key": [], "doc_id": []}
        for b in found.iter_batches(batch_format="numpy", batch_size=None):
            for k, column in rows.items():
                column.append(b[k])
        rows = {k: np.concatenate(v) if v else np.zeros(0, np.int64) for k, v in rows.items()}
        exact, near = resolve_duplicates(rows)
    timings["dedup"] = time.perf_counter() - t

    clusters = _clusters(exact, "exact") + _clusters(near, "near")
    clusters.sort(key=lambda c: (-c["size"], c["kept"]))
    clusters = clusters[:MAX_CLUSTERS_SHOWN]
    for number, c in enumerate(clusters):
        c["number"] = number
    members = {d: c["number"] for c in clusters for d in [c["kept"], *c.pop("members")]}

    say(3, 4, "split_write")
    t = time.perf_counter()
    sp = cfg.split
    # [3] Ray: mark duplicates, draw splits and count tokens in parallel; stream to the driver in order.
    final = cleaned.map_batches(finalize, batch_format="numpy", fn_kwargs={
        # Only the ids of duplicates travel (8 bytes each), never the text.
        "exact_ids": np.fromiter(exact, np.int64, len(exact)), "near_ids": np.fromiter(near, np.int64, len(near)),
        "seed": sp.seed, "ratios": (sp.train, sp.val), "tokenizer": tokenizer})
    report = Report(samples_per_reason=cfg.stats.samples_per_reason, samples_kept=cfg.stats.samples_kept,
                    seed=sp.seed, cluster_members=members)
    with atomic_dir(_check_target(out_dir)) as tmp:
        outputs = _write(tmp, final, report)
        timings["write"] = time.perf_counter() - t
        say(4, 4, "stats")
        timings["total"] = time.perf_counter() - t_start
        nd = cfg.stages.near_dedup
        extra = {"exact_dedup": {"clusters": len(set(exact.values()))},
                 "near_dedup": {"clusters": len(set(near.values())),
                                **(dict(zip(("bands", "rows"), dedup.lsh_params(nd))) if nd.enabled else {})}}
        stats = report.stats(extra=extra, clusters=clusters, skipped=skipped,
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
        manifest = {
            "kind": KIND, "id": snapshot_id, "name": cfg.name, "created_at": _now(),
            "code_version": _code_version(), "parent": parents[0] if len(parents) == 1 else (parents or None),
            "sources": list(cfg.sources), "inputs": inputs, "skipped_inputs": skipped, "config": config,
            "counts": counts, "split": sp.model_dump(), "outputs": outputs, "fingerprint": fingerprint,
        }
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return {**manifest, "reused": False, "timings": stats["timings_s"]}


def _now() -> str:
    from datetime import datetime, timezone

    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _check_target(out_dir: Path) -> Path:
    m = _read_json(out_dir / "manifest.json")
    if out_dir.exists() and any(out_dir.iterdir()) and not (m and m.get("kind") == KIND):
        raise UserError(f"name: refusing to overwrite {out_dir}: it exists and is not a snapshot")
    return out_dir


def _clusters(dups: dict[int, int], kind: str) -> list[dict]:
    groups: dict[int, list[int]] = {}
    for d, r in dups.items():
        groups.setdefault(r, []).append(d)
    return [{"kind": kind, "size": len(m) + 1, "kept": r, "members": sorted(m)}
            for r, m in groups.items()]


def _write(tmp: Path, final, report: Report) -> dict:
    """Stream the kept documents into one JSONL file per split (hashing as it goes); feed the report."""
    shas = {s: hashlib.sha256() for s in SPLITS}
    counts = {s: [0, 0] for s in SPLITS}
    with contextlib.ExitStack() as stack:
        files = {s: stack.enter_context(open(tmp / f"{s}.jsonl", "wb")) for s in SPLITS}
        # [4] Ray: batches arrive in input order (preserve_order), so the files are reproducible.
        for b in final.iter_batches(batch_format="numpy", batch_size=4096):
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
