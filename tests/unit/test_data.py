"""Data prepare (the data pipeline's fast path into a snapshot), token shards and the
deterministic batch loader (offline, small)."""

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from training.config import DataConfig, load_config
from training.data import pipeline, prepare, snapshot, sources, uploads
from training.data.corpus import generate_documents
from training.data.shards import TokenData, tokenize_dataset
from training.data.snapshot import list_snapshots, load_manifest, sha256_file
from training.errors import UserError
from training.tokenizers.tokenizer import load_tokenizer, train_tokenizer
from training.workspace import Workspace

DOCS = ["First document.\nIt has two lines.", "Second: ünïcödé & emoji 🎉.", "Third one", "  fourth  ",
        "Fifth document here.", "Sixth.", "Seventh doc.", "Eighth and last."]


def _jsonl(path, docs, field="text"):
    path.write_text("".join(json.dumps({field: d, "id": i}) + "\n" for i, d in enumerate(docs)))
    return path


def _parquet(path, docs, field="text"):
    pq.write_table(pa.table({field: docs, "id": list(range(len(docs)))}), path)
    return path


def _read_split(ds, split):
    return [json.loads(line)["text"] for line in (ds / f"{split}.jsonl").read_text().splitlines()]


def _all_docs(ds):
    return sorted(_read_split(ds, "train") + _read_split(ds, "val"))


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws")


def _prepare(ws, srcs, name="ds", **data):
    """`playground data prepare` as pretraining runs it: a DataConfig through the pipeline's fast path."""
    d = DataConfig(sources=[str(s) for s in srcs], name=name, **data)
    return prepare.prepare(d.pipeline_config(), ws, snapshot_id=d.dataset_id(), prefix="data.")


def _read(spec, **cfg):
    """The documents the pipeline's reader gives for one source (strict, as data prepare reads)."""
    c = DataConfig(sources=[str(spec)], **cfg).pipeline_config()
    tasks, *_ = sources.plan_reads(c, Workspace(Path("unused")))  # only snapshot:/upload: sources look there
    return [r["text"] for t in tasks for r in sources.read_task(t, c, strict=True)]


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return train_tokenizer(generate_documents(100_000, seed=0), 400, tmp_path_factory.mktemp("tok") / "bpe")


def test_prepare_writes_a_snapshot(ws):
    m = _prepare(ws, ["synthetic"], synthetic_chars=60_000, val_fraction=0.1)
    ds, docs = ws.dataset("ds"), list(generate_documents(60_000, seed=0))
    assert m["reused"] is False and m["kind"] == "snapshot" and m["id"] == "ds" and m["driver"] == "prepare"
    assert _all_docs(ds) == sorted(docs)
    out = m["outputs"]
    assert out["train.jsonl"]["docs"] + out["val.jsonl"]["docs"] == len(docs) and out["test.jsonl"]["docs"] == 0
    assert out["train.jsonl"]["chars"] + out["val.jsonl"]["chars"] == sum(map(len, docs))
    assert 0.03 < out["val.jsonl"]["docs"] / len(docs) < 0.25
    for name in ("train.jsonl", "val.jsonl", "stats.json", "samples.jsonl"):
        assert out[name]["sha256"] == sha256_file(ds / name) and out[name]["size"] == (ds / name).stat().st_size
    assert m["split"] == {"train": 0.9, "val": 0.1, "test": 0.0, "seed": 1337} and m["created_at"]
    assert not any(stage["enabled"] for stage in m["config"]["stages"].values())  # cleaning off
    # The readers of snapshots read it: the CLI's `data list/show`, the data API, pretraining.
    saved = load_manifest(ws, "ds")
    assert saved == {k: v for k, v in m.items() if k not in ("reused", "timings")}
    listed = list_snapshots(ws)
    assert [(s["id"], s["driver"], s["docs_in"], s["docs_out"]) for s in listed] == [
        ("ds", "prepare", len(docs), len(docs))]
    stats = snapshot.load_stats(ws, "ds")
    assert all(row["removed"] == 0 for row in stats["stages"]) and stats["totals"]["docs"] == len(docs)
    assert list(snapshot.iter_split(ds, "val")) == _read_split(ds, "val")


def test_prepare_and_the_pipeline_split_alike(ws, tmp_path, monkeypatch):
    """The same sources through `data prepare` and through the pipeline's own row functions
    (what `data run` maps over Ray Data) give the same documents in the same splits."""
    monkeypatch.setenv("RAYON_NUM_THREADS", "1")  # read_and_clean sets it for its Ray task
    srcs = ["synthetic", str(_jsonl(tmp_path / "more.jsonl", [*DOCS, "  ", DOCS[0]]))]
    m = _prepare(ws, srcs, synthetic_chars=40_000)
    cfg = DataConfig(sources=srcs, name="ds", synthetic_chars=40_000).pipeline_config()
    tasks, *_ = sources.plan_reads(cfg, ws)
    sp, none = cfg.split, np.zeros(0, np.int64)
    want: dict = {"train": [], "val": [], "test": [], "": []}  # "": removed
    for b in pipeline.read_and_clean({"task": [json.dumps(t) for t in tasks]}, cfg):
        f = pipeline.finalize(b, none, none, sp.seed, (sp.train, sp.val), None)
        for text, split in zip(f["text"], f["split"]):
            want[split].append(text)
    assert want["train"] == _read_split(ws.dataset("ds"), "train") and want["test"] == []
    assert want["val"] == _read_split(ws.dataset("ds"), "val") and m["outputs"]["val.jsonl"]["docs"] > 0
    assert want["train"].count(DOCS[0]) + want["val"].count(DOCS[0]) == 2  # no dedup: cleaning is off
    assert want[""] == ["  "]  # the empty document, the only one removed


def test_txt_jsonl_parquet_csv_and_directory(ws, tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("\n\n".join(DOCS[:3]) + "\n\n   \n\n\n" + DOCS[3] + "\n")
    _jsonl(src / "b.jsonl", DOCS[4:6] + ["   "])
    _parquet(src / "sub" / "c.parquet", DOCS[6:])
    (src / "ignored.docx").write_bytes(b"PK\x03\x04")
    assert _read(src / "a.txt") == DOCS[:4]
    assert _read(src / "b.jsonl") == [*DOCS[4:6], "   "]  # read as is; data prepare drops it as empty
    assert _read(src / "sub" / "c.parquet") == DOCS[6:]
    assert _read(src) == [*DOCS[:6], "   ", *DOCS[6:]]  # sorted: a.txt, b.jsonl, sub/c.parquet

    m = _prepare(ws, [src / "a.txt", src / "b.jsonl", src / "sub"])
    assert _all_docs(ws.dataset("ds")) == sorted(DOCS)
    assert m["outputs"]["val.jsonl"]["docs"] >= 1 and m["outputs"]["train.jsonl"]["docs"] >= 1
    assert m["counts"]["normalize"] == {"in": 9, "out": 8}  # the whitespace-only document
    assert {i["path"]: i["sha256"] for i in m["inputs"]} == {
        str(p): sha256_file(p) for p in (src / "a.txt", src / "b.jsonl", src / "sub" / "c.parquet")}
    m = _prepare(ws, [src], name="folder")
    assert m["skipped_inputs"] == [{"path": str(src / "ignored.docx"), "reason": "unsupported format .docx"}]
    (tmp_path / "d.csv").write_text('id,text\n1,"one, with a comma"\n2,"two\nlines"\n')
    assert _read(tmp_path / "d.csv") == ["one, with a comma", "two\nlines"]


def test_custom_text_field(tmp_path):
    p = _jsonl(tmp_path / "x.jsonl", DOCS, field="content")
    assert _read(p, text_field="content") == DOCS
    with pytest.raises(UserError, match=r"x\.jsonl:1: text field 'text' missing"):
        _read(p)
    with pytest.raises(UserError, match=r"x\.parquet: text field 'body' missing or null \(columns: text, id\)"):
        _read(_parquet(tmp_path / "x.parquet", DOCS), text_field="body")


def test_hf_local_folder(ws, tmp_path):
    """hf:NAME loads with `datasets` (the project's one `load_dataset` call, in sources.py);
    offline, NAME is a local folder of data files in a Hub dataset's layout."""
    folder = tmp_path / "myds"
    folder.mkdir()
    _parquet(folder / "part-0.parquet", DOCS[:4])
    _parquet(folder / "part-1.parquet", DOCS[4:])
    assert sorted(_read(f"hf:{folder}")) == sorted(DOCS)
    assert sorted(_read(f"hf:{folder}@train")) == sorted(DOCS)
    m = _prepare(ws, [f"hf:{folder}"])
    assert _all_docs(ws.dataset("ds")) == sorted(DOCS)
    assert [i["path"] for i in m["inputs"]] == [str(folder / "part-0.parquet"), str(folder / "part-1.parquet")]
    assert _prepare(ws, [f"hf:{folder}"])["reused"] is True
    _parquet(folder / "part-1.parquet", DOCS[4:] + ["A new one."])  # the local files are fingerprinted
    assert _prepare(ws, [f"hf:{folder}"])["reused"] is False
    with pytest.raises(UserError, match=r"text field 'missing_col' missing or null \(columns: text, id\)"):
        _read(f"hf:{folder}", text_field="missing_col")
    with pytest.raises(UserError, match="cannot load hf:"):
        _read(f"hf:{folder}@nosuchsplit")
    with pytest.raises(UserError, match=r"sources\[0\]: bad source spec 'hf:'"):
        _read("hf:")


def test_reuse_and_rebuild(ws, tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", DOCS)
    ds = ws.dataset("ds")
    _prepare(ws, [src])
    mtimes = {p.name: p.stat().st_mtime_ns for p in ds.iterdir()}
    again = _prepare(ws, [src])
    assert again["reused"] is True
    assert {p.name: p.stat().st_mtime_ns for p in ds.iterdir()} == mtimes

    _jsonl(src, DOCS + ["A brand new document."])
    rebuilt = _prepare(ws, [src])
    assert rebuilt["reused"] is False and "A brand new document." in _all_docs(ds)
    assert _prepare(ws, [src], val_fraction=0.4)["reused"] is False  # split params count too

    (ds / "train.jsonl").write_text('{"text": "tampered"}\n')  # outputs are verified as well
    assert _prepare(ws, [src], val_fraction=0.4)["reused"] is False
    assert "tampered" not in _all_docs(ds)


def test_user_errors(ws, tmp_path):
    with pytest.raises(UserError, match="nope.txt"):
        _prepare(ws, [tmp_path / "nope.txt"])
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    with pytest.raises(UserError, match="no text found in sources"):
        _prepare(ws, [tmp_path / "empty.txt"])
    (tmp_path / "data.docx").write_text("text\nhello\n")
    with pytest.raises(UserError, match=r"^data\.sources\[0\]: unsupported format \.docx"):
        _prepare(ws, [tmp_path / "data.docx"])
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(UserError, match=r"bad\.jsonl:2: invalid JSON"):
        _prepare(ws, [tmp_path / "bad.jsonl"])
    with pytest.raises(UserError, match="data.val_fraction"):
        load_config(None, ["data.val_fraction=1.5"])
    (tmp_path / "one.txt").write_text("just one document")
    with pytest.raises(UserError, match="at least 2"):
        _prepare(ws, [tmp_path / "one.txt"])
    # Never wipe a folder that is not a dataset.
    ws.dataset("mine").mkdir(parents=True)
    (ws.dataset("mine") / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="data.name: refusing"):
        _prepare(ws, ["synthetic"], name="mine", synthetic_chars=5000)
    assert sorted(p.name for p in ws.datasets.iterdir()) == ["mine"]  # no dataset, no temp folders
    assert (ws.dataset("mine") / "keep.txt").read_text() == "precious"


def test_missing_text_field_names_file_and_line(ws, tmp_path, monkeypatch):
    """A row without its text is one line naming the file and line, also deep in a big file
    that is read as several byte ranges (`data run` instead skips and counts such rows)."""
    p = tmp_path / "docs.jsonl"
    p.write_text('{"text": "fine"}\n\n{"text": "also fine"}\n{"body": "no text here"}\n')
    with pytest.raises(UserError) as e:
        _prepare(ws, [p])
    assert str(e.value).startswith(f"{p}:4: text field 'text' missing or null;") and "\n" not in str(e.value)
    rows = [json.dumps({"text": f"document {i}"}) for i in range(300)]
    rows[271] = json.dumps({"txt": "typo"})
    p.write_text("\n".join(rows) + "\n")
    monkeypatch.setattr(sources, "RANGE_BYTES", 500)  # ranges end mid-line
    with pytest.raises(UserError, match=rf"^{p}:272: text field 'text' missing"):
        _prepare(ws, [p])
    assert not ws.datasets.exists() or not any(ws.datasets.iterdir())


def test_tiny_data_gets_both_splits(ws, tmp_path):
    """Two documents: the hash split might put both in train; one moves to val, as pretraining needs."""
    (tmp_path / "two.txt").write_text("alpha beta gamma\n\ndelta epsilon\n")
    for seed in range(6):
        m = _prepare(ws, [tmp_path / "two.txt"], name=f"s{seed}", split_seed=seed)
        assert (m["outputs"]["train.jsonl"]["docs"], m["outputs"]["val.jsonl"]["docs"]) == (1, 1)
        stats = snapshot.load_stats(ws, f"s{seed}")
        assert stats["splits"]["train"]["docs"] == stats["splits"]["val"]["docs"] == 1


def test_failure_mid_write_leaves_no_half_written_dir(ws, monkeypatch):
    ds = ws.dataset("ds")
    good = _prepare(ws, ["synthetic"], synthetic_chars=20_000)
    before = {p.name: p.read_bytes() for p in ds.iterdir()}
    real = sources.read_task

    def broken(task, cfg, strict=False):
        rows = real(task, cfg, strict)
        yield next(rows)
        yield next(rows)
        raise RuntimeError("simulated crash while reading")

    monkeypatch.setattr(sources, "read_task", broken)
    with pytest.raises(RuntimeError):
        _prepare(ws, ["synthetic"], synthetic_chars=30_000)  # new fingerprint: a rebuild
    assert {p.name: p.read_bytes() for p in ds.iterdir()} == before  # old version intact
    with pytest.raises(RuntimeError):
        _prepare(ws, ["synthetic"], name="fresh", synthetic_chars=30_000)
    assert sorted(p.name for p in ws.datasets.iterdir()) == ["ds"]  # no temp or partial folders
    assert good["outputs"]


def test_dataset_of_an_older_playground(ws, tmp_path):
    """A folder the old `prepare_text` wrote (manifest kind "text"): readers say what to run in one
    line; `data prepare` of the same config replaces it with a snapshot."""
    old = ws.dataset("ds")
    old.mkdir(parents=True)
    (old / "train.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS[:6]))
    (old / "val.jsonl").write_text("".join(json.dumps({"text": d}) + "\n" for d in DOCS[6:]))
    (old / "manifest.json").write_text(json.dumps({
        "kind": "text", "sources": ["synthetic"], "inputs": [], "split": {"seed": 1337, "val_fraction": 0.05},
        "counts": {"train": {"docs": 6, "chars": 80}, "val": {"docs": 2, "chars": 28}}, "outputs": {}}))
    fix = "made by an older playground; run `playground data prepare --config"
    for call in (lambda: tokenize_dataset(old, tmp_path, "bpe"), lambda: load_manifest(ws, "ds"),
                 lambda: uploads.read_dataset(ws, "ds")):
        with pytest.raises(UserError, match=fix) as e:
            call()
        assert "\n" not in str(e.value) and "'ds'" in str(e.value)
    from training.pretrain.inputs import prepare_text

    with pytest.raises(UserError, match=rf"^data.snapshot: no snapshot 'ds': .*{fix}"):
        prepare_text(load_config(None, ["data.snapshot=ds"]), ws)
    m = _prepare(ws, ["synthetic"], synthetic_chars=20_000)
    assert m["kind"] == "snapshot" and load_manifest(ws, "ds")["fingerprint"] == m["fingerprint"]


def test_tokenize_round_trip_and_reuse(ws, tok_dir):
    _prepare(ws, ["synthetic"], synthetic_chars=30_000)
    ds = ws.dataset("ds")
    m = tokenize_dataset(ds, tok_dir, "bpe400")
    out = ds / "tokens" / "bpe400"
    assert m["dtype"] == "uint16" and m["eos_token_id"] == 0 and m["vocab_size"] == 400 and m["dataset"] == "ds"
    assert m["inputs"]["tokenizer.json"]["sha256"] == sha256_file(tok_dir / "tokenizer.json")
    assert m["inputs"]["train.jsonl"]["sha256"] == sha256_file(ds / "train.jsonl")
    tok = load_tokenizer(tok_dir)
    for split in ("train", "val"):
        ids = np.fromfile(out / f"{split}.bin", dtype=np.uint16)
        assert len(ids) == m["tokens"][split]
        assert m["outputs"][f"{split}.bin"]["sha256"] == sha256_file(out / f"{split}.bin")
        assert ids[-1] == 0
        docs = tok.decode(ids.tolist()).split("<|endoftext|>")[:-1]
        assert docs == _read_split(ds, split)

    mtime = (out / "train.bin").stat().st_mtime_ns
    assert tokenize_dataset(ds, tok_dir, "bpe400")["reused"] is True
    assert (out / "train.bin").stat().st_mtime_ns == mtime

    # Rebuilding the text drops stale token shards along with it.
    _prepare(ws, ["synthetic"], synthetic_chars=40_000)
    assert not (ds / "tokens").exists()
    with pytest.raises(UserError, match="dataset: no snapshot 'nothing'"):
        tokenize_dataset(ws.dataset("nothing"), tok_dir, "bpe400")


def _fake_tokens(tmp_path, n_train, n_val=1000):
    """A tokens dir whose token at position i is i, so batches reveal their offsets."""
    d = tmp_path / "tokens"
    d.mkdir()
    np.arange(n_train, dtype=np.uint16).tofile(d / "train.bin")
    np.arange(n_val, dtype=np.uint16).tofile(d / "val.bin")
    (d / "manifest.json").write_text(json.dumps({"kind": "tokens", "dtype": "uint16", "vocab_size": 65535,
                                                 "eos_token_id": 0, "tokens": {"train": n_train, "val": n_val}}))
    return TokenData(d)


def test_batch_is_deterministic_and_shifted(tmp_path):
    td = _fake_tokens(tmp_path, 10_000)
    assert td.num_tokens("train") == 10_000 and td.num_tokens("val") == 1000 and td.eos_token_id == 0
    x, y = td.batch("train", 8, 32, seed=7, step=3)
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(y, x + 1)  # y is x shifted by one (tokens are positions here)
    x2, y2 = TokenData(tmp_path / "tokens").batch("train", 8, 32, seed=7, step=3)  # a "resumed" reader
    assert torch.equal(x, x2) and torch.equal(y, y2)
    assert not torch.equal(x, td.batch("train", 8, 32, seed=7, step=4)[0])
    assert not torch.equal(x, td.batch("train", 8, 32, seed=7, step=3, micro_step=1)[0])
    assert not torch.equal(x, td.batch("train", 8, 32, seed=8, step=3)[0])
    assert int(x.max()) + 1 < 10_000


def test_ranks_use_disjoint_train_shards_but_whole_val(tmp_path):
    td = _fake_tokens(tmp_path, 12_000, n_val=3000)
    world, seen = 3, []
    for rank in range(world):
        xs = torch.cat([td.batch("train", 16, 20, seed=0, step=s, rank=rank, world_size=world)[1]
                        for s in range(20)])
        assert rank * 4000 <= int(xs.min()) and int(xs.max()) < (rank + 1) * 4000
        seen.append(set(xs.flatten().tolist()))
    assert not (seen[0] & seen[1]) and not (seen[1] & seen[2])
    vals = torch.cat([td.batch("val", 16, 20, seed=0, step=s, rank=2, world_size=world)[0] for s in range(20)])
    assert int(vals.min()) < 1000 and int(vals.max()) > 2000


def test_too_small_split_and_eval_batches(tmp_path):
    td = _fake_tokens(tmp_path, 100, n_val=50)
    with pytest.raises(UserError, match="too small for block_size 64: it has 50 tokens"):
        td.batch("val", 2, 64, seed=0, step=0)
    with pytest.raises(UserError, match="train shard of rank 2/3 is too small for block_size 40: it has 34 tokens"):
        td.batch("train", 2, 40, seed=0, step=0, rank=2, world_size=3)
    td.batch("val", 2, 49, seed=0, step=0)  # exactly block_size + 1 tokens is enough
    a, b = td.eval_batches(4, 16, 3, seed=1), td.eval_batches(4, 16, 3, seed=1)
    assert len(a) == 3 and all(torch.equal(p[0], q[0]) and torch.equal(p[1], q[1]) for p, q in zip(a, b))
    assert not torch.equal(a[0][0], a[1][0])
