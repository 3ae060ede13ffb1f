"""The data pipeline on real Ray Data (the session's local cluster), on planted data.

A small corpus from `synth.write_bench_corpus` (exact and near duplicates, PII, other
languages, low-quality documents, with their truth) plus bad inputs goes through the
default stages; the snapshot must remove what was planted, count why, be reproducible
whatever the worker count, feed the tokenizer and pretraining, and leave nothing behind
when a run fails.
"""

import itertools
import json

import pytest

from benchmarks import data as bench
from cluster.cli import main
from training.config import load_config
from training.data import pipeline, synth
from training.data.config import PipelineConfig
from training.data.snapshot import list_snapshots, load_stats, samples
from training.errors import UserError
from training.pretrain import inputs as prepare
from training.workspace import Workspace

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    truth = synth.write_bench_corpus(root / "corpus", target_bytes=1_500_000, seed=3, shards=3)
    bad = root / "bad"
    bad.mkdir()
    (bad / "blob.jsonl").write_bytes(b"\x00\x01binary")
    (bad / "empty.jsonl").write_bytes(b"")
    (bad / "notes.docx").write_bytes(b"PK")
    (bad / "lines.jsonl").write_bytes(b'{"text": "caf\xe9"}\n' + json.dumps({"text": "y" * 30_000}).encode() + b"\n")
    parts = sorted((root / "corpus").glob("part-*.jsonl"))
    return {"truth": truth, "sources": [*map(str, parts), str(bad)], "root": root}


@pytest.fixture(scope="module")
def ws(tmp_path_factory):
    return Workspace(tmp_path_factory.mktemp("dataws"))


def _cfg(planted, **kw) -> PipelineConfig:
    return PipelineConfig.model_validate({"sources": planted["sources"], "id_field": "id", "max_line_bytes": 20_000,
                                          "name": "planted", **kw})


@pytest.fixture(scope="module")
def snapshot(ray_cluster, planted, ws):
    return pipeline.run(_cfg(planted), ws)


def test_planted_problems_are_removed_and_counted(snapshot, planted, ws):
    kept = bench._kept(ws, snapshot["id"])
    s = bench.score(planted["truth"], kept)
    assert s["dup_rate_before"] > 0.04 and s["dup_rate_after"] < 0.01, s
    assert s["pii_items"] > 20 and s["pii_recall"] >= 0.99, s
    assert s["non_english_kept"] == 0 and s["false_removals"] < 0.02, s
    stats = load_stats(ws, snapshot["id"])
    by_stage = {row["stage"]: row for row in stats["stages"]}
    assert by_stage["read"]["reasons"] == {"non_utf8": 1, "line_too_long": 1}
    assert by_stage["exact_dedup"]["removed"] >= 0.8 * len(planted["truth"]["exact_dup_of"])
    assert by_stage["near_dedup"]["removed"] > 0 and by_stage["near_dedup"]["bands"] > 1
    assert any(r.startswith("lang:") for r in by_stage["language"]["reasons"])
    assert by_stage["quality"]["removed"] > 0 and sum(by_stage["pii"]["replaced"].values()) >= s["pii_items"]
    # The table chains: each stage's input is the previous stage's output; the split keeps them all.
    rows = stats["stages"]
    assert all(a["out"] == b["in"] for a, b in itertools.pairwise(rows))
    assert rows[-1]["out"] == stats["totals"]["docs"] == len(kept)
    assert {s["reason"] for s in snapshot["skipped_inputs"]} == {"binary file", "empty file", "unsupported format .docx"}
    assert stats["dup_clusters"] and stats["dup_clusters"][0]["examples"]
    assert stats["languages"]["en"] > 0 and len(stats["languages"]) > 2
    removed = samples(ws, snapshot["id"], status="removed", stage="near_dedup")
    assert removed["total"] > 0 and removed["items"][0]["reason"] == "near_dup"


def test_manifest_lineage_and_reproducibility(snapshot, planted, ws):
    m = snapshot
    assert m["kind"] == "snapshot" and m["parent"] is None and m["code_version"]["pipeline"] == 1
    assert all(len(i["sha256"]) == 64 for i in m["inputs"]) and m["config"]["stages"]["near_dedup"]["threshold"] == 0.8
    again = pipeline.run(_cfg(planted), ws)
    assert again["reused"] and again["id"] == m["id"]
    # One worker instead of all: other id (other name), byte-identical outputs.
    one = pipeline.run(_cfg(planted, name="planted1"), ws, workers=1)
    assert {k: v["sha256"] for k, v in one["outputs"].items() if k.endswith(".jsonl") and k != "samples.jsonl"} == \
        {k: v["sha256"] for k, v in m["outputs"].items() if k.endswith(".jsonl") and k != "samples.jsonl"}
    # A child snapshot of the parent: near-dedup off, stricter quality.
    child = pipeline.run(PipelineConfig.model_validate(
        {"name": "child", "sources": [f"snapshot:{m['id']}"], "stages": {"quality": {"min_words": 200}}}), ws)
    assert child["parent"] == m["id"] and child["counts"]["quality"]["out"] < child["counts"]["quality"]["in"]
    assert {s["id"] for s in list_snapshots(ws)} >= {m["id"], one["id"], child["id"]}


def test_cli_list_show_diff(snapshot, ws, capsys):
    assert main(["--workspace", str(ws.root), "data", "list"]) == 0
    assert snapshot["id"] in capsys.readouterr().out
    assert main(["--workspace", str(ws.root), "data", "show", snapshot["id"]]) == 0
    out = capsys.readouterr().out
    assert "near_dedup" in out and "non_utf8" in out and "train.jsonl" in out
    child = next(s["id"] for s in list_snapshots(ws) if s["name"] == "child")
    assert main(["--workspace", str(ws.root), "data", "diff", snapshot["id"], child]) == 0
    out = capsys.readouterr().out
    assert "(parent -> child)" in out and "stages.quality.min_words: 50 -> 200" in out
    assert main(["--workspace", str(ws.root), "data", "show", "nosuch"]) == 2
    assert capsys.readouterr().err.startswith("error: snapshot: no snapshot 'nosuch'")


def test_snapshot_feeds_tokenizer_and_pretraining(ray_cluster, snapshot, ws):
    from training.pretrain import pretrain

    cfg = load_config(None, [f"data.snapshot={snapshot['id']}", "tokenizer.vocab_size=512", "model.vocab_size=512",
                             "model.block_size=32", "model.n_layer=1", "model.n_head=2", "model.n_embd=32",
                             "train.batch_size=4", "train.max_steps=2", "train.eval_interval=2", "train.eval_iters=1",
                             "train.precision=fp32", "train.sample_tokens=0", "scale.num_workers=1",
                             "tracking.mlflow=false"])
    inputs = prepare.ensure_inputs(cfg, ws)  # trains the tokenizer on the snapshot's train split
    assert inputs.dataset_dir.name == snapshot["id"] and inputs.tokenizer_dir.name.endswith(snapshot["id"])
    tokens = json.loads((inputs.tokens_dir / "manifest.json").read_text())
    assert tokens["dataset"] == snapshot["id"] and tokens["tokens"]["train"] > 1000
    result = pretrain.run(cfg, ws, run_id="from-snapshot")
    assert result.error is None
    saved = (ws.run("from-snapshot") / "config.yaml").read_text()
    assert f"snapshot: {snapshot['id']}" in saved  # the run records its data


def test_failed_run_leaves_no_snapshot(ray_cluster, planted, ws, tmp_path):
    before = sorted(p.name for p in ws.datasets.iterdir())
    cfg = PipelineConfig.model_validate({"name": "broken", "sources": [planted["sources"][0],
                                                                        f"hf:{tmp_path}/no-such-dataset"]})
    with pytest.raises(UserError, match="cannot load hf:"):
        pipeline.run(cfg, ws)
    assert sorted(p.name for p in ws.datasets.iterdir()) == before  # no snapshot, no temp folder
