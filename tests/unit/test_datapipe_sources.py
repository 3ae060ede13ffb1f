"""Reading sources for the data pipeline: every kind of bad input is skipped with a counted
reason or is a one-line error naming the source; big JSONL files split into byte ranges
read every line exactly once."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.data import sources
from training.data.config import PipelineConfig
from training.errors import UserError
from training.workspace import Workspace


def _cfg(*srcs, **kw) -> PipelineConfig:
    return PipelineConfig.model_validate({"sources": [str(s) for s in srcs], **kw})


def _rows(cfg, ws) -> list[dict]:
    tasks, *_ = sources.plan_reads(cfg, ws)
    return [r for t in tasks for r in sources.read_task(t, cfg)]


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path / "ws")


def test_missing_and_unsupported_sources_are_errors_naming_the_source(tmp_path, ws):
    with pytest.raises(UserError, match=r"^sources\[1\]: not found: .*nope"):
        sources.plan_reads(_cfg("synthetic", tmp_path / "nope.txt"), ws)
    (tmp_path / "a.docx").write_bytes(b"PK\x03\x04")
    with pytest.raises(UserError, match=r"^sources\[0\]: unsupported format \.docx"):
        sources.plan_reads(_cfg(tmp_path / "a.docx"), ws)
    with pytest.raises(UserError, match=r"^sources\[0\]: no upload 'zz'"):
        sources.plan_reads(_cfg("upload:zz"), ws)
    with pytest.raises(UserError, match=r"^sources\[0\]: no snapshot 'nosuch'"):
        sources.plan_reads(_cfg("snapshot:nosuch"), ws)


def test_folder_skips_binary_empty_and_unsupported_files_with_reasons(tmp_path, ws):
    d = tmp_path / "corpus"
    d.mkdir()
    (d / "good.txt").write_text("one document here.\n\nand another one.\n")
    (d / "empty.txt").write_bytes(b"")
    (d / "blob.jsonl").write_bytes(b"\x00\x01\x02binary")
    (d / "image.png").write_bytes(b"\x89PNG")
    (d / ".hidden.txt").write_text("ignored")
    tasks, inputs, skipped, parents = sources.plan_reads(_cfg(d), ws)
    assert [i["path"] for i in inputs] == [str(d / "good.txt")] and len(inputs[0]["sha256"]) == 64
    assert {s["path"].rsplit("/", 1)[1]: s["reason"] for s in skipped} == {
        "blob.jsonl": "binary file", "empty.txt": "empty file", "image.png": "unsupported format .png"}
    assert parents == [] and [t["index"] for t in tasks] == [0]
    assert [r["text"] for r in _rows(_cfg(d), ws)] == ["one document here.", "and another one."]


def test_bad_lines_become_counted_rows(tmp_path, ws):
    f = tmp_path / "docs.jsonl"
    lines = [
        json.dumps({"text": "fine", "id": "a"}).encode(),
        b'{"text": "caf\xe9 in latin-1"}',  # not UTF-8
        b"{not json",
        json.dumps({"body": "no text field"}).encode(),
        json.dumps({"text": "x" * 5000}).encode(),  # longer than max_line_bytes below
        json.dumps({"text": "last", "id": "b"}).encode(),
    ]
    f.write_bytes(b"\n".join(lines) + b"\n")
    rows = _rows(_cfg(f, max_line_bytes=1000, id_field="id"), ws)
    assert [(r["stage"], r["reason"]) for r in rows] == [
        ("", ""), ("read", "non_utf8"), ("read", "invalid_json"), ("read", "missing_field"),
        ("read", "line_too_long"), ("", "")]
    assert rows[0]["text"] == "fine" and rows[0]["ext_id"] == "a" and rows[5]["ext_id"] == "b"
    assert "caf" in rows[1]["text"] and rows[4]["text"] == ""  # a preview, never the enormous line
    assert len({r["doc_id"] for r in rows}) == len(rows)


def test_txt_csv_parquet_and_uploads(tmp_path, ws):
    (tmp_path / "t.txt").write_bytes(b"first doc\nstill first\n\n\nsecond \xff doc\n\nthird")
    assert [(r["text"], r["reason"]) for r in _rows(_cfg(tmp_path / "t.txt"), ws)] == [
        ("first doc\nstill first", ""), ("second \ufffd doc\n", "non_utf8"), ("third", "")]
    (tmp_path / "c.csv").write_text('id,text\n1,"hello, world"\n2,"multi\nline"\n')
    assert [r["text"] for r in _rows(_cfg(tmp_path / "c.csv"), ws)] == ["hello, world", "multi\nline"]
    (tmp_path / "nocol.csv").write_text("a,b\n1,2\n")
    assert [r["reason"] for r in _rows(_cfg(tmp_path / "nocol.csv"), ws)] == ["missing_field"]
    pq.write_table(pa.table({"text": ["p1", None, "p3"]}), tmp_path / "p.parquet")
    assert [(r["text"], r["reason"]) for r in _rows(_cfg(tmp_path / "p.parquet"), ws)] == [
        ("p1", ""), ("", "missing_field"), ("p3", "")]
    up = ws.root / "uploads" / "0123456789abcdef.txt"
    up.parent.mkdir(parents=True)
    up.write_text("uploaded doc")
    assert [r["text"] for r in _rows(_cfg("upload:0123456789abcdef"), ws)] == ["uploaded doc"]


def test_byte_ranges_read_every_line_once(tmp_path, ws, monkeypatch):
    f = tmp_path / "big.jsonl"
    texts = [f"document {i} " + "word " * (i % 37) for i in range(500)]
    f.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    monkeypatch.setattr(sources, "RANGE_BYTES", 997)  # ranges end mid-line
    tasks, *_ = sources.plan_reads(_cfg(f), ws)
    assert len(tasks) > 10
    assert [r["text"] for t in tasks for r in sources.read_task(t, _cfg(f))] == texts


def test_synthetic_source_and_doc_ids(ws):
    cfg = _cfg("synthetic", synthetic_chars=20_000)
    rows = _rows(cfg, ws)
    assert rows and all(r["source"] == "synthetic" and not r["reason"] for r in rows)
    assert [r["doc_id"] for r in rows] == list(range(len(rows)))  # task 0: ids 0, 1, 2, ...


def test_hf_source_streams_a_local_dataset_folder(tmp_path, ws):
    """`hf:NAME` streams with `datasets` (C4 and OpenWebText need not fit on disk); offline, a
    local folder of data files stands in for a Hub name. `max_docs` stops the stream."""
    folder = tmp_path / "hfdata"
    folder.mkdir()
    (folder / "train.jsonl").write_text("".join(json.dumps({"text": f"doc {i}"}) + "\n" for i in range(7)))
    assert [r["text"] for r in _rows(_cfg(f"hf:{folder}"), ws)] == [f"doc {i}" for i in range(7)]
    assert len(_rows(_cfg(f"hf:{folder}", max_docs=3), ws)) == 3
    with pytest.raises(UserError, match=r"^cannot load hf:"):
        _rows(_cfg(f"hf:{tmp_path}/missing"), ws)


def test_strict_reading_stops_at_the_first_bad_piece_naming_where(tmp_path, ws):
    """`data prepare` reads with strict=True: nothing would count a skipped row, so the first
    one is a one-line error naming the file and line (or row), and what to do about it."""
    def first_error(path, **kw):
        cfg = _cfg(path, **kw)
        tasks, *_ = sources.plan_reads(cfg, ws)
        with pytest.raises(UserError) as e:
            for t in tasks:
                list(sources.read_task(t, cfg, strict=True))
        assert "\n" not in str(e.value) and "playground data run" in str(e.value)
        return str(e.value)

    f = tmp_path / "docs.jsonl"
    f.write_bytes(b'{"text": "ok"}\n\n{"text": "caf\xe9"}\n')
    assert first_error(f).startswith(f"{f}:3: not UTF-8 text;")
    f.write_bytes(b'{"text": "ok"}\n{"text": null}\n')
    assert first_error(f).startswith(f"{f}:2: text field 'text' missing or null;")
    f.write_text(json.dumps({"text": "x" * 5000}) + "\n")
    assert first_error(f, max_line_bytes=1000).startswith(f"{f}:1: a line longer than max_line_bytes (1,000);")
    t = tmp_path / "t.txt"
    t.write_bytes(b"first doc\n\nsecond\nbad \xff doc\n")
    assert first_error(t).startswith(f"{t}:3: not UTF-8 text")  # where the document starts
    c = tmp_path / "c.csv"
    c.write_text('text,id\n"one\ntwo",1\n')
    assert [r["text"] for r in sources.read_task(sources.plan_reads(_cfg(c), ws)[0][0], _cfg(c), strict=True)] == [
        "one\ntwo"]
    c.write_text("body,id\nx,1\n")
    assert first_error(c).startswith(f"{c}: text field 'text' missing or null (columns: body, id);")
    pq.write_table(pa.table({"text": ["p1", None]}), tmp_path / "p.parquet")
    assert first_error(tmp_path / "p.parquet").startswith(f"{tmp_path / 'p.parquet'}, row 2: text field")
    (tmp_path / "bad.parquet").write_bytes(b"PAR1 not really")
    assert first_error(tmp_path / "bad.parquet").startswith(f"{tmp_path / 'bad.parquet'}: not a readable Parquet")


def test_hf_specs_and_local_inputs(tmp_path, ws):
    assert sources.parse_hf("hf:roneneldan/TinyStories") == ("roneneldan/TinyStories", None, "train")
    assert sources.parse_hf("hf:allenai/c4:en@validation") == ("allenai/c4", "en", "validation")
    for bad in ("hf:", "hf:name@", "hf:name:"):
        with pytest.raises(UserError, match=r"^sources\[0\]: bad source spec"):
            sources.plan_reads(_cfg(bad), ws)
    folder = tmp_path / "hfdata"
    folder.mkdir()
    (folder / "train.jsonl").write_text('{"text": "a"}\n')
    _, inputs, _, _ = sources.plan_reads(_cfg("synthetic", f"hf:{folder}", "hf:someone/remote"), ws)
    assert [(i["path"], i["sha256"] is not None) for i in inputs[1:]] == [
        (str(folder / "train.jsonl"), True), ("hf:someone/remote", False)]  # local files are fingerprinted
