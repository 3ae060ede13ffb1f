"""The pipeline's row functions, run in-process on planted documents (no Ray here: the
integration tests run the same functions on Ray Data). The shuffle by band is replaced
by a plain numpy group-by, which is what Ray's groupby("band") computes."""

import random

import numpy as np
import pytest

from training.data import pipeline, synth
from training.data.config import PipelineConfig
from training.data.report import Report
from training.data.stages import band_columns, clean_batch


def _doc(seed: int) -> str:
    return synth.english_text(random.Random(seed), 150)


def _batch(texts: list[str]) -> dict:
    n = len(texts)
    return {"doc_id": list(range(n)), "source": ["t"] * n, "ext_id": [str(i) for i in range(n)], "text": texts,
            "stage": [""] * n, "reason": [""] * n}


@pytest.fixture(scope="module")
def flow():
    base = [_doc(i) for i in range(6)]
    near = base[1].split(" ")
    near[40] = "zebra"  # one word of about 150 changed
    texts = [*base, base[0], " ".join(near), base[2] + "   ", "", "Der Hund und die Katze sind im Garten. " * 12,
             "This is a short note about the weather and the sea in the summer."]
    cfg = PipelineConfig.model_validate({"stages": {"quality": {"min_words": 20}}})
    cleaned = clean_batch(_batch(texts), cfg)
    keys = pipeline.dedup_keys(cleaned, True, band_columns(cfg))
    found = [pipeline.buckets_of_band({k: v[keys["band"] == b] for k, v in keys.items()})
             for b in np.unique(keys["band"])]
    rows = {k: np.concatenate([f[k] for f in found]) for k in ("band", "key", "doc_id")}
    exact, near_dups = pipeline.resolve_duplicates(rows)
    final = pipeline.finalize(cleaned, np.array(list(exact)), np.array(list(near_dups)), seed=7,
                              ratios=(0.5, 0.25), tokenizer=None)
    return {"texts": texts, "cleaned": cleaned, "exact": exact, "near": near_dups, "final": final, "cfg": cfg}


def test_per_document_stages_mark_why(flow):
    c = flow["cleaned"]
    assert [(c["stage"][i], c["reason"][i]) for i in (9, 10)] == [("normalize", "empty"), ("language", "lang:de")]
    assert c["stage"][11] == "quality"
    assert c["text"][8] == flow["texts"][2] and c["normalized"][8]  # trailing spaces normalised away
    assert all(c["exact_key"][i] == 0 for i in (9, 10, 11)) and c["exact_key"][0] != 0


def test_exact_and_near_duplicates_keep_the_first(flow):
    assert flow["exact"] == {6: 0, 8: 2}  # doc 8 equals doc 2 only after normalisation
    assert flow["near"] == {7: 1}


def test_finalize_splits_by_text_hash(flow):
    f = flow["final"]
    assert [f["reason"][i] for i in (6, 7, 8)] == ["exact_dup", "near_dup", "exact_dup"]
    kept = [i for i in range(len(f["stage"])) if f["stage"][i] == ""]
    assert kept == [0, 1, 2, 3, 4, 5] and all(f["split"][i] in ("train", "val", "test") for i in kept)
    assert all(f["split"][i] == "" for i in range(6, 12))
    # The split depends on the text and seed only: the same text in another batch lands the same.
    again = pipeline.finalize(clean_batch(_batch(flow["texts"][:6][::-1]), flow["cfg"]), np.array([], np.int64),
                              np.array([], np.int64), seed=7, ratios=(0.5, 0.25), tokenizer=None)
    assert list(again["split"][::-1]) == list(f["split"][:6])


def test_report_counts_chain_and_samples(flow):
    r = Report(samples_per_reason=2, samples_kept=3, seed=0, cluster_members={0: 0, 6: 0})
    r.add(flow["final"])
    stats = r.stats(extra={}, clusters=[{"kind": "exact", "size": 2, "kept": 0, "number": 0}], skipped=[],
                    timings={}, tokenizer=None)
    rows = {row["stage"]: row for row in stats["stages"]}
    assert rows["read"]["in"] == 12 and rows["near_dedup"]["out"] == 6 == stats["totals"]["docs"]
    assert rows["exact_dedup"]["reasons"] == {"exact_dup": 2} and rows["normalize"]["reasons"] == {"empty": 1}
    assert stats["languages"]["de"] == 1 and stats["dup_clusters"][0]["examples"][1]["doc_id"] == 6
    assert sum(stats["histograms"]["chars"]["kept"]) == 6 and sum(stats["histograms"]["chars"]["removed"]) == 6
    kinds = [(s["status"], s["reason"]) for s in r.samples]
    assert kinds.count(("kept", None)) == 3 and ("removed", "near_dup") in kinds
