"""`playground data prepare`: the data pipeline's fast path, in this process, without Ray.

    sources.read_task (strict)  ->  pipeline.clean_task (every cleaning stage off)
        ->  pipeline.finalize (the split)  ->  snapshot.write (train/val.jsonl, stats, manifest)

The same reader, split and writer as `playground data run` (training/data/pipeline.py),
so both make the same kind of snapshot; only the cleaning stages and Ray are left out.
Starting Ray costs seconds, and reading and splitting the starter corpus takes about one,
so pretraining (`training/pretrain/inputs.py`), `make demo` and the tests come this way.

Two things differ, because nothing downstream would catch them otherwise:
- input that cannot be read is a one-line error naming its file and line (the pipeline
  skips such rows and counts them in its statistics);
- both splits get a document: the split hashes each text, so a handful of documents can
  leave val empty, and pretraining measures its loss there (see `_train_and_val`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import numpy as np

from training.data import pipeline, snapshot, sources
from training.data.config import PipelineConfig
from training.data.report import Report
from training.errors import UserError
from training.workspace import Workspace

_NO_IDS = np.zeros(0, np.int64)  # no duplicates: the dedup stages are off


def prepare(cfg: PipelineConfig, ws: Workspace, *, snapshot_id: str | None = None, prefix: str = "",
            progress: bool = False) -> dict:
    """Read, split and write `cfg`'s sources as a snapshot (reused when inputs and config are unchanged).

    Args:
        cfg: the pipeline config, its cleaning stages off (`DataConfig.pipeline_config()`); the
            per-document ones would run here too, but deduplication needs the whole corpus at
            once, which is what `data run` shuffles on Ray Data for.
        ws: the workspace; the snapshot goes to `ws.datasets/<snapshot_id>/`.
        snapshot_id: the folder name; None: `<cfg.name>-<8 hex>`, as `data run` names it.
        prefix: where `cfg`'s keys sit in the user's config, for error messages ("data.": `data.sources[0]`).
        progress: show a progress bar (on a terminal).

    Returns:
        The snapshot's manifest, plus "reused".
    """
    if cfg.stages.exact_dedup.enabled or cfg.stages.near_dedup.enabled:
        raise ValueError("data prepare does not deduplicate: turn the dedup stages off, or use pipeline.run")
    t_start = time.perf_counter()
    plan = snapshot.make_plan(cfg, ws, sources.plan_reads(cfg, ws, prefix), snapshot_id, prefix)
    old = plan.reusable()
    if old:
        return {**old, "reused": True}
    sp = cfg.split
    report = Report(samples_per_reason=cfg.stats.samples_per_reason, samples_kept=cfg.stats.samples_kept,
                    seed=sp.seed, cluster_members={})
    from tqdm import tqdm

    with tqdm(desc="prepare", unit=" docs", disable=None if progress else True) as bar:  # None: on a terminal
        batches = _train_and_val(_batches(plan, bar.update))
        return snapshot.write(plan, batches, report, driver="prepare", timings={}, t_start=t_start)


def _batches(plan: snapshot.Plan, tick: Callable[[int], None]) -> Iterator[dict]:
    """Each read task's documents through the per-document stages and the split, in reading order."""
    cfg, sp, kept = plan.cfg, plan.cfg.split, 0
    for task in plan.tasks:
        for batch in pipeline.clean_task(task, cfg, strict=True):
            final = pipeline.finalize(batch, _NO_IDS, _NO_IDS, sp.seed, (sp.train, sp.val), None)
            kept += int(np.sum(final["split"] != ""))
            tick(len(final["split"]))
            yield final
    # Raised while the snapshot is being written: its temp folder goes, nothing lands.
    if kept == 0:
        raise UserError(f"no text found in sources: {', '.join(cfg.sources)}")
    if kept == 1:
        raise UserError(f"only 1 document in sources {', '.join(cfg.sources)}; need at least 2 "
                        "(in .txt files, separate documents with a blank line)")


def _train_and_val(batches: Iterable[dict]) -> Iterator[dict]:
    """Pass the batches on; if train or val drew no document at all, the last document moves there.

    The split hashes each text (the same text always lands in the same split), so 10
    documents with val 0.05 leave val empty 60% of the time. Batches are held back from
    the last one with a kept document, so the one that may move is still at hand and
    the order never changes. Large data is never touched: both splits fill up at once.
    """
    held: list[dict] = []  # the last batch with a kept document, and the batches after it
    counts = {"train": 0, "val": 0}
    for b in batches:
        for s in counts:
            counts[s] += int(np.sum(b["split"] == s))
        if np.any(b["split"] != ""):
            yield from held
            held = [b]
        elif held:
            held.append(b)
        else:
            yield b
    if held and sum(counts.values()) >= 2:
        for empty, full in (("val", "train"), ("train", "val")):
            if counts[empty] == 0:
                split = held[0]["split"]
                split[np.flatnonzero(split == full)[-1]] = empty
    yield from held
