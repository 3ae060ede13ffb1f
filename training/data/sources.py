"""Where documents come from, as read tasks that Ray Data can run in parallel.

`plan_reads` turns the config's sources into a list of small, JSON-able read tasks (a
file, a byte range of a big .txt/.jsonl file, the synthetic corpus, a Hugging Face
dataset) plus the inputs to fingerprint and the inputs it skipped with a reason.
`read_task` yields one row per document, or per unreadable piece of input:

    {"doc_id": int, "source": str, "ext_id": str, "text": str, "stage": "" | "read", "reason": "" | why}

(`ext_id`: the JSONL field named by `id_field`, carried into the output for provenance.)

Bad input never stops `playground data run`: a non-UTF-8 line, invalid JSON, a missing
text field or an enormous line becomes a row with stage "read" and its reason (counted
and shown in the statistics); binary, empty and unsupported files are skipped with their
reason. `playground data prepare` reads with `strict=True`: there, the first such piece
is a one-line `UserError` naming the file and line, since nothing would count it. A
source that does not exist at all is a `UserError` before anything runs.

This is the only reader of sources in the project: both drivers and therefore every
dataset (the tokenizer's, pretraining's) read through it.

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
from training.data.snapshot import SPLITS, sha256_file, snapshot_dir
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


def plan_reads(cfg: PipelineConfig, ws: Workspace,
               prefix: str = "") -> tuple[list[dict], list[dict], list[dict], list[str]]:
    """The read tasks of the config's sources.

    Args:
        cfg: the pipeline config.
        ws: the workspace (for planted:, upload: and snapshot: sources).
        prefix: where `cfg`'s keys sit in the user's config, for errors ("data." names `data.sources[0]`).

    Returns:
        (tasks, inputs, skipped, parents): tasks in source order, each with its `index`;
        inputs as {"source", "path", "sha256", "size"} (the fingerprint); skipped inputs
        as {"path", "reason"}; the snapshot ids read (the new snapshot's parents).

    Raises:
        UserError: naming `sources[i]` for a source that does not exist or cannot be read.
    """
    tasks: list[dict] = []
    inputs: list[dict] = []
    skipped: list[dict] = []
    parents: list[str] = []
    for i, spec in enumerate(cfg.sources):
        field = f"{prefix}sources[{i}]"
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
            name = parse_hf(spec, field)[0]
            tasks.append({"kind": "hf", "source": spec, "field": cfg.text_field, "max_docs": cfg.max_docs})
            local = Path(name).expanduser()
            if local.exists():  # a folder of data files: fingerprinted like any local input
                files = [local] if local.is_file() else sorted(
                    f for f in local.rglob("*") if f.is_file() and ".cache" not in f.relative_to(local).parts)
                inputs += [{"source": spec, "path": str(f), "sha256": sha256_file(f), "size": f.stat().st_size}
                           for f in files]
            else:  # a Hub dataset: known by its name only
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
#
# Each reader yields one piece per document or per unreadable piece of input:
# (text, reason, ext_id, at). `reason` is "" for a document; `at` says where the piece
# starts, for an error message: a byte offset in .txt/.jsonl files (turned into a line
# number only when needed), the line in a .csv file, the row in .parquet files and
# hf: datasets, or 0 for the whole file.


def parse_hf(spec: str, field: str = "source") -> tuple[str, str | None, str]:
    """Split "hf:NAME[:CONFIG][@SPLIT]" into (name, config, split); NAME may be a local folder."""
    rest, split, config = spec[3:], "train", None
    if "@" in rest and not Path(rest).exists():
        rest, split = rest.rsplit("@", 1)
    name = rest
    if ":" in rest and not Path(rest).exists():
        name, config = rest.split(":", 1)
    if not name or not split or config == "":
        raise UserError(f"{field}: bad source spec {spec!r}; expected hf:NAME, hf:NAME:CONFIG or hf:NAME@SPLIT")
    return name, config, split


def _lines(path: str, start: int, end: int, max_bytes: int) -> Iterator[tuple[int, bytes | None, bool]]:
    """(offset, line, too_long) for each line that starts in [start, end); too-long lines come as (offset, None, True).

    Byte ranges follow the usual rule: a range skips the partial line it starts in (the
    previous range reads it) and reads past `end` to finish its last line.
    """
    with open(path, "rb") as f:
        if start > 0:
            f.seek(start - 1)
            if f.read(1) != b"\n":
                f.readline()
        while (offset := f.tell()) < end:
            line = f.readline(max_bytes + 1)
            if not line:
                return
            if len(line) > max_bytes and not line.endswith(b"\n"):
                while True:  # skip the rest of an enormous line without holding it
                    rest = f.readline(1 << 20)
                    if not rest or rest.endswith(b"\n"):
                        break
                yield offset, None, True
                continue
            yield offset, line, False


def _line_number(path: str, offset: int) -> int:
    """The 1-based line that starts at byte `offset` (reads the file up to there: for error messages only)."""
    newlines = 0
    with open(path, "rb") as f:
        while offset > 0 and (block := f.read(min(offset, 1 << 20))):
            newlines += block.count(b"\n")
            offset -= len(block)
    return newlines + 1


def _read_jsonl(t: dict, field: str, max_bytes: int, id_field: str | None) -> Iterator[tuple]:
    for at, line, too_long in _lines(t["path"], t["start"], t["end"], max_bytes):
        if too_long:
            yield "", "line_too_long", "", at
            continue
        if not line.strip():
            continue
        try:
            s = line.decode("utf-8")
        except UnicodeDecodeError:
            yield line[:PREVIEW].decode("utf-8", "replace"), "non_utf8", "", at
            continue
        try:
            row = json.loads(s)
        except ValueError:
            yield s[:PREVIEW], "invalid_json", "", at
            continue
        if not isinstance(row, dict) or row.get(field) is None:
            yield s[:PREVIEW], "missing_field", "", at
            continue
        yield str(row[field]), "", str(row.get(id_field, "")) if id_field else "", at


def _read_txt(t: dict, max_bytes: int) -> Iterator[tuple]:
    """Documents separated by blank lines (one task per file); a non-UTF-8 document is one bad row."""
    lines: list[bytes] = []
    first = 0  # offset of the document's first line

    def flush():
        raw = b"".join(lines)
        try:
            return raw.decode("utf-8").rstrip("\n"), "", "", first
        except UnicodeDecodeError:
            return raw[:PREVIEW].decode("utf-8", "replace"), "non_utf8", "", first

    for at, line, too_long in _lines(t["path"], 0, os.path.getsize(t["path"]), max_bytes):
        if too_long:
            yield "", "line_too_long", "", at
            continue
        if line.strip():
            if not lines:
                first = at
            lines.append(line)
        elif lines:
            yield flush()
            lines = []
    if lines:
        yield flush()


def _read_csv(t: dict, field: str, max_bytes: int) -> Iterator[tuple]:
    csv.field_size_limit(max_bytes)
    with open(t["path"], "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        yield data[:PREVIEW].decode("utf-8", "replace"), "non_utf8", "", 0
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    if reader.fieldnames is None or field not in reader.fieldnames:
        yield f"columns: {', '.join(reader.fieldnames or [])}"[:PREVIEW], "missing_field", "", 0
        return
    try:
        for row in reader:
            value = row.get(field)
            yield (value, "", "", reader.line_num) if value is not None else ("", "missing_field", "", reader.line_num)
    except csv.Error:
        yield "", "line_too_long", "", reader.line_num


def _read_parquet(t: dict, field: str) -> Iterator[tuple]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(t["path"])
    except Exception as e:  # noqa: BLE001 - any unreadable parquet is one counted bad input
        yield f"{type(e).__name__}: {e}"[:PREVIEW], "bad_parquet", "", 0
        return
    if field not in pf.schema_arrow.names:
        yield f"columns: {', '.join(pf.schema_arrow.names)}"[:PREVIEW], "missing_field", "", 0
        return
    n = 0
    for batch in pf.iter_batches(columns=[field], batch_size=1024):
        for v in batch.column(0).to_pylist():
            n += 1
            yield (str(v), "", "", n) if v is not None else ("", "missing_field", "", n)


def hf_rows(spec: str, field: str = "source") -> Iterator[dict]:
    """The rows of the Hugging Face dataset "hf:NAME[:CONFIG][@SPLIT]", as plain dicts.

    The project's one `load_dataset` call: pretraining text (`_read_hf`) and SFT
    instruction data (training/posttrain/sft_data.py) both read Hugging Face datasets here.
    Offline, NAME may be a local folder of data files (.jsonl, .parquet, ...).

    Raises:
        UserError: `field: bad source spec ...`, or `cannot load <spec>: ...` (unknown
            name/config/split, or offline), when the first row is asked for.
    """
    import datasets  # imported here: slow to import, and only hf: sources need it

    name, config, split = parse_hf(spec, field)
    try:
        # Streaming: rows arrive as they download, so C4/OpenWebText never have to fit on disk.
        ds = datasets.load_dataset(name, config, split=split, streaming=True)
    except (OSError, ValueError, ConnectionError) as e:  # unknown name/config/split, offline
        raise UserError(f"cannot load {spec}: {type(e).__name__}: {(str(e) or '?').splitlines()[0]}") from e
    yield from ds


def _read_hf(t: dict) -> Iterator[tuple]:
    for n, row in enumerate(hf_rows(t["source"]), 1):
        if t.get("max_docs") is not None and n > t["max_docs"]:
            return
        v = row.get(t["field"])
        if v is None and n == 1 and t["field"] not in row:  # the whole dataset lacks the column
            yield f"columns: {', '.join(row)}"[:PREVIEW], "missing_field", "", 0
            return
        yield (str(v), "", "", n) if v is not None else ("", "missing_field", "", n)


_WHY = {"missing_field": "text field {field!r} missing or null", "invalid_json": "invalid JSON",
        "non_utf8": "not UTF-8 text", "line_too_long": "a line longer than max_line_bytes ({max_line_bytes:,})",
        "bad_parquet": "not a readable Parquet file"}


def _where(task: dict, at: int) -> str:
    """Where a piece is, for an error message: "file:line", "file, row n", or the whole file."""
    if task["kind"] == "hf":
        return f"{task['source']}, row {at}" if at else task["source"]
    path, fmt = task["path"], task["format"]
    if fmt in (".txt", ".jsonl"):
        return f"{path}:{_line_number(path, at)}"  # `at` is a byte offset here
    if not at:
        return path
    return f"{path}:{at}" if fmt == ".csv" else f"{path}, row {at}"


def read_task(task: dict, cfg: PipelineConfig, strict: bool = False) -> Iterator[dict]:
    """The rows of one read task (see the module docstring).

    Args:
        task: one of `plan_reads`' tasks.
        cfg: the pipeline config (text_field, id_field, max_line_bytes).
        strict: raise a `UserError` naming the file and line at the first piece that
            cannot be read, instead of yielding it as a row with stage "read".
    """
    kind, base, source = task["kind"], task["index"] << 32, task["source"]
    if kind == "synthetic":
        pieces: Iterator[tuple] = ((d, "", "", 0) for d in corpus.generate_documents(task["chars"], task["seed"]))
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
    for n, (text, reason, ext_id, at) in enumerate(pieces):
        if reason and strict:
            why = _WHY[reason].format(field=cfg.text_field, max_line_bytes=cfg.max_line_bytes)
            whole_file = not at and task.get("format") not in (".txt", ".jsonl")
            detail = f" ({text[:120]})" if whole_file and text else ""  # the columns there are, or the error
            raise UserError(f"{_where(task, at)}: {why}{detail}; fix the input, or clean it with "
                            "`playground data run`, which skips and counts such rows")
        yield _row(base | n, source, text, reason, ext_id)
