"""Data prepare, tokenized shards and the deterministic batch loader (offline, small)."""

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from training.data import shards as data
from training.data.corpus import generate_documents
from training.data.shards import TokenData, iter_source, prepare_text, sha256_file, tokenize_dataset
from training.errors import UserError
from training.tokenizers.tokenizer import load_tokenizer, train_tokenizer

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


@pytest.fixture(scope="module")
def tok_dir(tmp_path_factory):
    return train_tokenizer(generate_documents(100_000, seed=0), 400, tmp_path_factory.mktemp("tok") / "bpe")


def test_synthetic_manifest_and_counts(tmp_path):
    ds = tmp_path / "ds"
    m = prepare_text(["synthetic"], ds, synthetic_chars=60_000, val_fraction=0.1)
    docs = list(generate_documents(60_000, seed=0))
    assert m["reused"] is False and m["kind"] == "text"
    assert _all_docs(ds) == sorted(docs)
    c = m["counts"]
    assert c["train"]["docs"] + c["val"]["docs"] == len(docs)
    assert c["train"]["chars"] + c["val"]["chars"] == sum(map(len, docs))
    assert 0.03 < c["val"]["docs"] / len(docs) < 0.25
    for name in ("train.jsonl", "val.jsonl"):
        assert m["outputs"][name] == {"sha256": sha256_file(ds / name), "size": (ds / name).stat().st_size}
    assert json.loads((ds / "manifest.json").read_text())["outputs"] == m["outputs"]
    assert m["split"] == {"seed": 1337, "val_fraction": 0.1} and m["created_at"]


def test_txt_jsonl_parquet_and_directory(tmp_path):
    src = tmp_path / "src"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("\n\n".join(DOCS[:3]) + "\n\n   \n\n\n" + DOCS[3] + "\n")
    _jsonl(src / "b.jsonl", DOCS[4:6] + ["   "])
    _parquet(src / "sub" / "c.parquet", DOCS[6:])
    (src / "ignored.csv").write_text("x,y\n")
    assert list(iter_source(str(src / "a.txt"))) == DOCS[:4]
    assert list(iter_source(str(src / "b.jsonl"))) == DOCS[4:6]  # whitespace-only doc skipped
    assert list(iter_source(str(src / "sub" / "c.parquet"))) == DOCS[6:]
    assert list(iter_source(str(src))) == DOCS  # sorted: a.txt, b.jsonl, sub/c.parquet

    m = prepare_text([str(src / "a.txt"), str(src / "b.jsonl"), str(src / "sub")], tmp_path / "ds")
    assert _all_docs(tmp_path / "ds") == sorted(DOCS)
    assert m["counts"]["val"]["docs"] >= 1 and m["counts"]["train"]["docs"] >= 1
    assert {i["path"]: i["sha256"] for i in m["inputs"]} == {
        str(p): sha256_file(p) for p in (src / "a.txt", src / "b.jsonl", src / "sub" / "c.parquet")}


def test_custom_text_field(tmp_path):
    p = _jsonl(tmp_path / "x.jsonl", DOCS, field="content")
    assert list(iter_source(str(p), text_field="content")) == DOCS
    with pytest.raises(UserError, match="'text'"):
        list(iter_source(str(p)))
    with pytest.raises(UserError, match="'body'"):
        list(iter_source(str(_parquet(tmp_path / "x.parquet", DOCS)), text_field="body"))


def test_hf_local_folder(tmp_path, monkeypatch):
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf_cache")
    folder = tmp_path / "myds"
    folder.mkdir()
    _parquet(folder / "part-0.parquet", DOCS[:4])
    _parquet(folder / "part-1.parquet", DOCS[4:])
    assert sorted(iter_source("hf:" + str(folder))) == sorted(d for d in DOCS)
    assert sorted(iter_source(f"hf:{folder}@train")) == sorted(DOCS)
    m = prepare_text(["hf:" + str(folder)], tmp_path / "ds")
    assert _all_docs(tmp_path / "ds") == sorted(DOCS)
    assert len(m["inputs"]) == 2  # the local data files are fingerprinted
    with pytest.raises(UserError, match="missing_col"):
        list(iter_source("hf:" + str(folder), text_field="missing_col"))
    with pytest.raises(UserError):
        list(iter_source(f"hf:{folder}@nosuchsplit"))
    with pytest.raises(UserError, match="bad source spec"):
        list(iter_source("hf:"))


def test_reuse_and_rebuild(tmp_path):
    src = _jsonl(tmp_path / "in.jsonl", DOCS)
    ds = tmp_path / "ds"
    prepare_text([str(src)], ds)
    mtimes = {p.name: p.stat().st_mtime_ns for p in ds.iterdir()}
    again = prepare_text([str(src)], ds)
    assert again["reused"] is True
    assert {p.name: p.stat().st_mtime_ns for p in ds.iterdir()} == mtimes

    _jsonl(src, DOCS + ["A brand new document."])
    rebuilt = prepare_text([str(src)], ds)
    assert rebuilt["reused"] is False and "A brand new document." in _all_docs(ds)
    assert prepare_text([str(src)], ds, val_fraction=0.5)["reused"] is False  # split params count too

    (ds / "train.jsonl").write_text('{"text": "tampered"}\n')  # outputs are verified as well
    assert prepare_text([str(src)], ds, val_fraction=0.5)["reused"] is False
    assert "tampered" not in _all_docs(ds)


def test_user_errors(tmp_path):
    with pytest.raises(UserError, match="nope.txt"):
        prepare_text([str(tmp_path / "nope.txt")], tmp_path / "ds")
    (tmp_path / "empty.txt").write_text("\n\n  \n")
    with pytest.raises(UserError, match="no text found in sources"):
        prepare_text([str(tmp_path / "empty.txt")], tmp_path / "ds")
    (tmp_path / "data.csv").write_text("text\nhello\n")
    with pytest.raises(UserError, match="data.csv"):
        prepare_text([str(tmp_path / "data.csv")], tmp_path / "ds")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\nnot json\n')
    with pytest.raises(UserError, match="bad.jsonl:2"):
        prepare_text([str(tmp_path / "bad.jsonl")], tmp_path / "ds")
    with pytest.raises(UserError, match="val_fraction"):
        prepare_text(["synthetic"], tmp_path / "ds", val_fraction=1.5)
    (tmp_path / "one.txt").write_text("just one document")
    with pytest.raises(UserError, match="at least 2"):
        prepare_text([str(tmp_path / "one.txt")], tmp_path / "ds")
    # Never wipe a folder that is not a prepared dataset.
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "keep.txt").write_text("precious")
    with pytest.raises(UserError, match="refusing"):
        prepare_text(["synthetic"], tmp_path / "mine", synthetic_chars=5000)
    assert not (tmp_path / "ds").exists()
    assert (tmp_path / "mine" / "keep.txt").read_text() == "precious"


def test_failure_mid_write_leaves_no_half_written_dir(tmp_path, monkeypatch):
    ds = tmp_path / "ds"
    good = prepare_text(["synthetic"], ds, synthetic_chars=20_000)
    before = {p.name: p.read_bytes() for p in ds.iterdir()}

    def broken(spec, **kwargs):
        yield "one document"
        yield "another one"
        raise RuntimeError("simulated crash while reading")

    monkeypatch.setattr(data, "iter_source", broken)
    with pytest.raises(RuntimeError):
        prepare_text(["synthetic"], ds, synthetic_chars=30_000)  # new fingerprint: a rebuild
    assert {p.name: p.read_bytes() for p in ds.iterdir()} == before  # old version intact
    with pytest.raises(RuntimeError):
        prepare_text(["synthetic"], tmp_path / "fresh", synthetic_chars=30_000)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ds"]  # no temp or partial folders
    assert good["counts"]


def test_tokenize_round_trip_and_reuse(tmp_path, tok_dir):
    ds = tmp_path / "ds"
    prepare_text(["synthetic"], ds, synthetic_chars=30_000)
    m = tokenize_dataset(ds, tok_dir, "bpe400")
    out = ds / "tokens" / "bpe400"
    assert m["dtype"] == "uint16" and m["eos_token_id"] == 0 and m["vocab_size"] == 400
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
    prepare_text(["synthetic"], ds, synthetic_chars=40_000)
    assert not (ds / "tokens").exists()
    with pytest.raises(UserError, match="no prepared text dataset"):
        tokenize_dataset(tmp_path / "nothing", tok_dir, "bpe400")


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
