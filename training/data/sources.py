"""Where documents come from, as read tasks that Ray Data can run in parallel.

`plan_reads` turns the config's sources into a list of small, JSON-able read tasks (a
file, a byte range of a big .txt/.jsonl file, the synthetic corpus, a Hugging Face
dataset) plus the inputs to fingerprint and the inputs it skipped with a reason.
`read_task` yields one row per document, or per unreadable piece of input:

    {"doc_id": int, "source": str, "ext_id": str, "text": str, "stage": "" | "read", "reason": "" | why}

(`ext_id`: the JSONL field named by `id_field`, carried into the output for provenance.)

Bad input never stops the run: a non-UTF-8 line, invalid JSON, a missing text field or
an enormous line becomes a row with stage "read" and its reason (counted and shown in
the statistics); binary, empty and unsupported files are skipped with their reason.
A source that does not exist at all is a `UserError` before anything runs.

Document ids are `(task index << 32) | ordinal`, so they are unique, and the same
inputs give the same ids however many workers read them: "keep the first duplicate"
means "keep the smallest id".
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

from training.data import corpus
from training.data.config import PipelineConfig
from training.data.shards import sha256_file
from training.errors import UserError
from training.workspace import Workspace

FORMATS = (".txt", ".jsonl", ".parquet", ".csv")
TEXT_FORMATS = (".txt", ".jsonl", ".csv")
RANGE_BYTES = 32 << 20  # .jsonl files bigger than this are read as several byte ranges, in parallel
PREVIEW = 300  # characters of an unreadable piece kept for the sample browser
_UPLOAD = re.compile(r"^[0-9a-f]{16}$")


def _row(doc_id: int, source: str, text: str, reason: str = "", ext_id: str = "") -> dict:
    return {"doc_id": doc_id, "source": source, "ext_id": ext_id, "text": text, "stage": "read" if reason else "",
            "reason": reason}


def _sniff(path: Path) -> str | None:
    """Why a file cannot be read as text, or None."""
    size = path.stat().st_size
    if size == 0:
        return "empty file"
    if path.suffix.lower() in TEXT_FORMATS:
        with open(path, "rb") as f:
            if b"\x00" in f.read(8192):
                return "binary file"
    return None


def _folder_files(folder: Path) -> tuple[list[Path], list[dict]]:
    files, skipped = [], []
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(folder).parts):
            continue
        if p.suffix.lower() not in FORMATS:
            skipped.append({"path": str(p), "reason": f"unsupported format {p.suffix or '(none)'}"})
        else:
            files.append(p)
    return files, skipped


def _file_tasks(path: Path, source: str) -> list[dict]:
    fmt = path.suffix.lower()
    size = path.stat().st_size
    if fmt == ".jsonl" and size > RANGE_BYTES:
        return [{"kind": "file", "path": str(path), "format": fmt, "source": source,
                 "start": s, "end": min(s + RANGE_BYTES, size)} for s in range(0, size, RANGE_BYTES)]
    return [{"kind": "file", "path": str(path), "format": fmt, "source": source, "start": 0, "end": size}]


def plan_reads(cfg: PipelineConfig, ws: Workspace) -> tuple[list[dict], list[dict], list[dict], list[str]]:
    """The read tasks of the config's sources.

    Returns:
        (tasks, inputs, skipped, parents): tasks in source order, each with its `index`;
        inputs as {"source", "path", "sha256", "size"} (the fingerprint); skipped inputs
        as {"path", "reason"}; the snapshot ids read (the new snapshot's parents).

    Raises:
        UserError: naming `sources[i]` for a source that does not exist or cannot be read.
    """
    from training.data.snapshot import SPLITS, snapshot_dir

    tasks: list[dict] = []
    inputs: list[dict] = []
    skipped: list[dict] = []
    parents: list[str] = []
    for i, spec in enumerate(cfg.sources):
        field = f"sources[{i}]"
        if spec == "synthetic":
            tasks.append({"kind": "synthetic", "source": spec, "chars": cfg.synthetic_chars,
                          "seed": cfg.synthetic_seed})
            inputs.append({"source": spec, "path": spec, "sha256": f"corpus-v{corpus.VERSION}-seed{cfg.synthetic_seed}"
                           f"-chars{cfg.synthetic_chars}", "size": cfg.synthetic_chars})
            continue
        if spec == "planted" or spec.startswith("planted:"):
            # The bench's generator at a small size: planted duplicates, PII, languages, junk.
            from training.data import synth

            mb = spec.partition(":")[2] or "2"
            if not mb.isdigit() or not 1 <= int(mb) <= 10_000:
                raise UserError(f"{field}: use planted or planted:MB (1 to 10000), got {spec!r}")
            folder = ws.root / "corpora" / f"planted-{mb}mb-s{cfg.synthetic_seed}"
            synth.write_bench_corpus(folder, target_bytes=int(mb) * 1_000_000, seed=cfg.synthetic_seed, shards=1)
            spec_files = sorted(folder.glob("part-*.jsonl"))
            for f in spec_files:
                inputs.append({"source": spec, "path": str(f), "sha256": sha256_file(f), "size": f.stat().st_size})
                tasks += [{**t, "id_field": "id"} for t in _file_tasks(f, spec)]
            continue
        if spec.startswith("hf:"):
            tasks.append({"kind": "hf", "source": spec, "field": cfg.text_field, "max_docs": cfg.max_docs})
            inputs.append({"source": spec, "path": spec, "sha256": None, "size": None})
            continue
        if spec.startswith("snapshot:"):
            folder = snapshot_dir(ws, spec.split(":", 1)[1], field)
            parents.append(folder.name)
            files = [folder / f"{s}.jsonl" for s in SPLITS if (folder / f"{s}.jsonl").is_file()]
        elif spec.startswith("upload:"):
            upload_id = spec.split(":", 1)[1]
            path = ws.root / "uploads" / f"{upload_id}.txt"
            if not _UPLOAD.fullmatch(upload_id) or not path.is_file():
                raise UserError(f"{field}: no upload {upload_id!r} (POST the file to /api/uploads first)")
            files = [path]
        else:
            path = Path(spec).expanduser()
            if not path.exists():
                raise UserError(f"{field}: not found: {spec}")
            if path.is_dir():
                files, skip = _folder_files(path)
                skipped += skip
                if not files and not skip:
                    raise UserError(f"{field}: no files in folder {spec}")
            elif path.suffix.lower() not in FORMATS:
                raise UserError(f"{field}: unsupported format {path.suffix or '(none)'} in {spec}; "
                                f"use {', '.join(FORMATS)}")
            else:
                files = [path]
        for f in files:
            why = _sniff(f)
            if why:
                skipped.append({"path": str(f), "reason": why})
                continue
            inputs.append({"source": spec, "path": str(f), "sha256": sha256_file(f), "size": f.stat().st_size})
            tasks += _file_tasks(f, spec)
    for n, t in enumerate(tasks):
        t["index"] = n
    return tasks, inputs, skipped, parents


# ----------------------------------------------------------------------------- readers


def _lines(path: str, start: int, end: int, max_bytes: int) -> Iterator[tuple[bytes | None, bool]]:
    """(line, too_long) for each line that starts in [start, end); too-long lines come as (None, True).

    Byte ranges follow the usual rule: a range skips the partial line it starts in (the
    previous range reads it) and reads past `end` to finish its last line.
    """
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()
        while f.tell() < end:
            line = f.readline(max_bytes + 1)
            if not line:
                return
            if len(line) > max_bytes and not line.endswith(b"\n"):
                while True:  # skip the rest of an enormous line without holding it
                    rest = f.readline(1 << 20)
                    if not rest or rest.endswith(b"\n"):
                        break
                yield None, True
                continue
            yield line, False


def _read_jsonl(t: dict, field: str, max_bytes: int, id_field: str | None) -> Iterator[tuple]:
    """(text, reason[, id]) per line."""
    for line, too_long in _lines(t["path"], t["start"], t["end"], max_bytes):
        if too_long:
            yield "", "line_too_long"
            continue
        if not line.strip():
            continue
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError:
            yield line[:PREVIEW].decode("utf-8", "replace"), "non_utf8"
            continue
        try:
            row = json.loads(s)
        except ValueError:
            yield s[:PREVIEW], "invalid_json"
            continue
        if not isinstance(row, dict) or row.get(field) is None:
            yield s[:PREVIEW], "missing_field"
            continue
        yield (str(row[field]), "", str(row.get(id_field, ""))) if id_field else (str(row[field]), "")


def _read_txt(t: dict, max_bytes: int) -> Iterator[tuple[str, str]]:
    """Documents separated by blank lines (one task per file); a non-UTF-8 document is one bad row."""
    lines: list[bytes] = []

    def flush():
        raw = b"".join(lines)
        try:
            return raw.decode("utf-8").rstrip("\n"), ""
        except UnicodeDecodeError:
            return raw[:PREVIEW].decode("utf-8", "replace"), "non_utf8"

    for line, too_long in _lines(t["path"], 0, os.path.getsize(t["path"]), max_bytes):
        if too_long:
            yield "", "line_too_long"
            continue
        if line.strip():
            lines.append(line)
        elif lines:
            yield flush()
            lines = []
    if lines:
        yield flush()


def _read_csv(t: dict, field: str, max_bytes: int) -> Iterator[tuple[str, str]]:
    csv.field_size_limit(max_bytes)
    with open(t["path"], "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        yield data[:PREVIEW].decode("utf-8", "replace"), "non_utf8"
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or field not in reader.fieldnames:
        yield text[:PREVIEW], "missing_field"
        return
    try:
        for row in reader:
            value = row.get(field)
            yield (value, "") if value is not None else ("", "missing_field")
    except csv.Error:
        yield "", "line_too_long"


def _read_parquet(t: dict, field: str) -> Iterator[tuple[str, str]]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(t["path"])
    except Exception as e:  # noqa: BLE001 - any unreadable parquet is one counted bad input
        yield f"{type(e).__name__}: {e}"[:PREVIEW], "bad_parquet"
        return
    if field not in pf.schema_arrow.names:
        yield f"columns: {', '.join(pf.schema_arrow.names)}"[:PREVIEW], "missing_field"
        return
    for batch in pf.iter_batches(columns=[field], batch_size=1024):
        for v in batch.column(0).to_pylist():
            yield (str(v), "") if v is not None else ("", "missing_field")


def _read_hf(t: dict) -> Iterator[tuple[str, str]]:
    import datasets

    from training.data.shards import _parse_hf

    name, config, split = _parse_hf(t["source"])
    try:
        # Streaming: rows arrive as they download, so C4/OpenWebText never have to fit on disk.
        ds = datasets.load_dataset(name, config, split=split, streaming=True)
    except (OSError, ValueError, ConnectionError) as e:
        raise UserError(f"cannot load {t['source']}: {type(e).__name__}: {(str(e) or '?').splitlines()[0]}") from e
    for n, row in enumerate(ds):
        if t.get("max_docs") is not None and n >= t["max_docs"]:
            return
        v = row.get(t["field"])
        yield (str(v), "") if v is not None else ("", "missing_field")


def read_task(task: dict, cfg: PipelineConfig) -> Iterator[dict]:
    """The rows of one read task (see the module docstring)."""
    kind, base, source = task["kind"], task["index"] << 32, task["source"]
    if kind == "synthetic":
        pieces: Iterator[tuple[str, str]] = ((d, "") for d in corpus.generate_documents(task["chars"], task["seed"]))
    elif kind == "hf":
        pieces = _read_hf(task)
    else:
        fmt = task["format"]
        if fmt == ".jsonl":
            pieces = _read_jsonl(task, cfg.text_field, cfg.max_line_bytes, task.get("id_field", cfg.id_field))
        elif fmt == ".txt":
            pieces = _read_txt(task, cfg.max_line_bytes)
        elif fmt == ".csv":
            pieces = _read_csv(task, cfg.text_field, cfg.max_line_bytes)
        else:
            pieces = _read_parquet(task, cfg.text_field)
    for n, piece in enumerate(pieces):
        yield _row(base | n, source, *piece)
