"""What a pipeline run removed and why: counts per stage, histograms, languages, samples.

`Report` sees every row once, in order, after the dedup decisions (plain Python, no
Ray): the pipeline feeds it the batches it writes. `Report.stats()` is the snapshot's
stats.json and `Report.samples` its samples.jsonl.
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict

import numpy as np

from training.data.config import PII_KINDS
from training.data.stages import STAGES

# Log-spaced length bins: a corpus spans from one-line fragments to whole books.
CHAR_EDGES = [0, 100, 300, 1_000, 3_000, 10_000, 30_000, 100_000, 1_000_000, 10**12]
WORD_EDGES = [0, 10, 50, 100, 300, 1_000, 3_000, 10_000, 100_000, 10**12]
SAMPLE_CHARS = 4000
EXAMPLE_CHARS = 300


class Report:
    def __init__(self, *, samples_per_reason: int, samples_kept: int, seed: int, cluster_members: dict[int, int]):
        """`cluster_members`: doc id -> cluster number, for the clusters whose examples are shown."""
        self.rng = random.Random(seed)
        self.per_reason, self.per_kept = samples_per_reason, samples_kept
        self.removed: Counter = Counter()  # (stage, reason) -> docs
        self.removed_chars: Counter = Counter()  # stage -> chars
        self.rows = 0
        self.input_chars = 0
        self.changed: Counter = Counter()  # stage -> docs it changed (normalize, pii)
        self.pii: Counter = Counter()
        self.langs: Counter = Counter()
        self.hist = {name: {"kept": np.zeros(len(e) - 1, np.int64), "removed": np.zeros(len(e) - 1, np.int64)}
                     for name, e in (("chars", CHAR_EDGES), ("words", WORD_EDGES))}
        self.splits: dict[str, Counter] = defaultdict(Counter)
        self.reservoirs: dict[tuple, list] = defaultdict(list)
        self.seen: Counter = Counter()
        self.cluster_members = cluster_members
        self.examples: dict[int, list] = defaultdict(list)

    def add(self, b: dict) -> None:
        """One batch: the columns of `stages.clean_batch` plus "split" and "tokens"."""
        n = len(b["doc_id"])
        self.rows += n
        self.input_chars += int(np.sum(b["chars_in"]))
        stage = np.asarray(b["stage"], dtype=object)
        kept = stage == ""
        for s, r, c in zip(stage[~kept], np.asarray(b["reason"], dtype=object)[~kept], b["chars_in"][~kept]):
            self.removed[(s, r)] += 1
            self.removed_chars[s] += int(c)
        reached = ~np.isin(stage, ["read", "normalize"])
        self.changed["normalize"] += int(np.sum(b["normalized"][stage != "read"]))
        passed_pii = ~np.isin(stage, ["read", "normalize", "language", "quality"])
        pii_any = np.zeros(n, bool)
        for k in PII_KINDS:
            col = b[f"pii_{k}"][passed_pii]
            self.pii[k] += int(np.sum(col))
            pii_any[passed_pii] |= col > 0
        self.changed["pii"] += int(np.sum(pii_any))
        self.langs.update(lang or "unknown" for lang in np.asarray(b["lang"], dtype=object)[reached])
        for name, edges, col_kept, col_removed in (("chars", CHAR_EDGES, b["chars"], b["chars_in"]),
                                                   ("words", WORD_EDGES, b["words"], b["words"])):
            self.hist[name]["kept"] += np.histogram(col_kept[kept], edges)[0]
            self.hist[name]["removed"] += np.histogram(col_removed[~kept], edges)[0]
        for split, ch, w, t in zip(np.asarray(b["split"], dtype=object)[kept], b["chars"][kept], b["words"][kept],
                                   b["tokens"][kept]):
            c = self.splits[split]
            c["docs"] += 1
            c["chars"] += int(ch)
            c["words"] += int(w)
            c["tokens"] += int(t)
        for i in range(n):
            doc_id = int(b["doc_id"][i])
            if doc_id in self.cluster_members and len(self.examples[self.cluster_members[doc_id]]) < 3:
                self.examples[self.cluster_members[doc_id]].append(
                    {"doc_id": doc_id, "text": b["text"][i][:EXAMPLE_CHARS]})
            key = ("kept",) if kept[i] else (stage[i], b["reason"][i])
            self._sample(key, b, i)

    def _sample(self, key: tuple, b: dict, i: int) -> None:
        """Reservoir sampling: each document of a kind has the same chance to be shown."""
        size = self.per_kept if key == ("kept",) else self.per_reason
        self.seen[key] += 1
        slot = len(self.reservoirs[key]) if len(self.reservoirs[key]) < size else self.rng.randrange(self.seen[key])
        if slot >= size:
            return
        kept = key == ("kept",)
        item = {"doc_id": int(b["doc_id"][i]), "source": b["source"][i], "status": "kept" if kept else "removed",
                "stage": None if kept else key[0], "reason": None if kept else key[1],
                "split": b["split"][i] or None, "text": b["text"][i][:SAMPLE_CHARS],
                "chars": int(b["chars_in"][i]), "lang": b["lang"][i] or None}
        if slot == len(self.reservoirs[key]):
            self.reservoirs[key].append(item)
        else:
            self.reservoirs[key][slot] = item

    @property
    def samples(self) -> list[dict]:
        return sorted((s for r in self.reservoirs.values() for s in r), key=lambda s: s["doc_id"])

    def stage_table(self, extra: dict[str, dict]) -> list[dict]:
        """Rows of the removed-by-stage table, in pipeline order; `extra` adds per-stage fields."""
        table, docs = [], self.rows
        for s in STAGES:
            reasons = {r: c for (st, r), c in sorted(self.removed.items()) if st == s}
            removed = sum(reasons.values())
            row = {"stage": s, "in": docs, "out": docs - removed, "removed": removed,
                   "chars_removed": self.removed_chars[s], "reasons": reasons, **extra.get(s, {})}
            if s in self.changed:
                row["changed"] = self.changed[s]
            table.append(row)
            docs -= removed
        return table

    def stats(self, *, extra: dict[str, dict], clusters: list[dict], skipped: list[dict], timings: dict,
              tokenizer: str | None) -> dict:
        splits = {s: {k: int(c[k]) for k in ("docs", "chars", "words")} | {"tokens": int(c["tokens"]) if tokenizer
                                                                             else None}
                  for s, c in sorted(self.splits.items())}
        totals = {k: sum(s[k] for s in splits.values()) for k in ("docs", "chars", "words")}
        totals["tokens"] = sum(s["tokens"] for s in splits.values()) if tokenizer else None
        for c in clusters:
            c["examples"] = self.examples.get(c.pop("number"), [])
        return {
            "totals": totals, "splits": splits, "input": {"docs": self.rows, "chars": self.input_chars},
            "stages": self.stage_table({**extra, "pii": {**extra.get("pii", {}),
                                                         "replaced": {k: self.pii[k] for k in PII_KINDS}}}),
            "histograms": {name: {"edges": edges[:-1] + [None], "kept": self.hist[name]["kept"].tolist(),
                                  "removed": self.hist[name]["removed"].tolist()}
                           for name, edges in (("chars", CHAR_EDGES), ("words", WORD_EDGES))},
            "languages": dict(self.langs.most_common()),
            "dup_clusters": clusters, "skipped_inputs": skipped, "timings_s": timings, "tokenizer": tokenizer,
        }
