"""The data pipeline on Ray Data: sources -> cleaning -> dedup -> split -> a snapshot.

    read + per-document stages   map_batches over read tasks, on every core/node  [1]
            |  (materialized: the cleaned text stays in Ray's object store)
    dedup keys, shuffled by band  groupby(band).map_groups: one task per LSH band   [2]
            |  buckets of doc ids sharing a key -> union-find on the driver
    split + token counts          map_batches                                       [3]
            |
    write train/val/test.jsonl, stats.json, samples.jsonl, manifest.json into a temp
    folder, renamed into workspace/datasets/<snapshot id>/ at the end                [4]

The reader (`sources.py`), the row functions below and the writer (`snapshot.write`) are
plain Python; `playground data prepare` (training/data/prepare.py) runs the same ones in
its own process, with the cleaning stages off and without Ray.

The exact-dedup key is treated as one more "band" (band -1), so exact and near
duplicates come out of the same shuffle; exact duplicates are settled first and only
their representatives take part in near-dedup. The driver holds only ids of
duplicates, never the text. Every Ray call is marked `# [n] Ray:`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from training.data import dedup, snapshot, sources
from training.data.config import PipelineConfig
from training.data.report import Report
from training.data.snapshot import SPLITS
from training.data.stages import band_columns, clean_batch
from training.errors import UserError
from training.workspace import Workspace

MAX_CLUSTERS_SHOWN = 20
_SPLIT_CODES = np.array(SPLITS, dtype=object)


# ----------------------------------------------------------------------------- row functions (plain Python)


def clean_task(task: dict, cfg: PipelineConfig, strict: bool = False) -> Iterator[dict]:
    """Read one task's documents and clean them, `cfg.block_docs` at a time (a generator of batches).

    `strict`: unreadable input is a UserError naming its file and line (see `sources.read_task`).
    """
    chunk: list[dict] = []
    for row in sources.read_task(task, cfg, strict=strict):
        chunk.append(row)
        if len(chunk) >= cfg.block_docs:
            yield clean_batch({k: [r[k] for r in chunk] for k in chunk[0]}, cfg)
            chunk = []
    if chunk:
        yield clean_batch({k: [r[k] for r in chunk] for k in chunk[0]}, cfg)


def read_and_clean(tasks: dict, cfg: PipelineConfig):
    """`clean_task` for each task of a Ray Data batch (the tasks travel as JSON strings)."""
    # Ray gives this task one CPU: lingua's Rust thread pool must use one thread too, or
    # two tasks fight over the same cores (the pool reads this when it first starts).
    os.environ.setdefault("RAYON_NUM_THREADS", "1")
    for raw in tasks["task"]:
        yield from clean_task(json.loads(raw), cfg)


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
    plan = snapshot.make_plan(cfg, ws, sources.plan_reads(cfg, ws))
    tokenizer = _tokenizer_dir(cfg, ws)
    old = plan.reusable()
    if old:
        return {**old, "reused": True}

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
    cleaned = ray.data.from_items([{"task": json.dumps(task)} for task in plan.tasks],
                                  override_num_blocks=len(plan.tasks)) \
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
    nd = cfg.stages.near_dedup
    extra = {"exact_dedup": {"clusters": len(set(exact.values()))},
             "near_dedup": {"clusters": len(set(near.values())),
                            **(dict(zip(("bands", "rows"), dedup.lsh_params(nd))) if nd.enabled else {})}}
    # [4] Ray: batches arrive in input order (preserve_order), so the files are reproducible.
    return snapshot.write(plan, final.iter_batches(batch_format="numpy", batch_size=4096), report, driver="ray",
                          timings=timings, t_start=t_start, tokenizer=tokenizer, stage_extra=extra,
                          clusters=clusters, before_stats=lambda: say(4, 4, "stats"))


def _clusters(dups: dict[int, int], kind: str) -> list[dict]:
    groups: dict[int, list[int]] = {}
    for d, r in dups.items():
        groups.setdefault(r, []).append(d)
    return [{"kind": kind, "size": len(m) + 1, "kept": r, "members": sorted(m)}
            for r, m in groups.items()]
