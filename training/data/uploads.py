"""Text that users hand the playground: checked strings, uploaded files, registered datasets.

Every tool that reads a user's text (the tokenizer lab, the data and tokenizer APIs,
`playground tokenizer train --upload/--dataset`) takes it through these functions, so
the limits and the one-line errors are the same everywhere. Each mistake is a
`UserError` that names the field the text came in.

Uploads live in `<workspace>/uploads/<id>.txt`; the id is the first 16 hex digits of
the file's SHA-256, so the same bytes always get the same id.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from training.data import snapshot
from training.errors import UserError
from training.workspace import Workspace

MAX_TEXT_BYTES = 5_000_000  # 5 MB of UTF-8, for one text or all texts of one call together
UPLOAD_ID = re.compile(r"[0-9a-f]{16}")


# ---- validation ------------------------------------------------------------


def check_text(text: Any, field: str = "text") -> str:
    """Return `text` if it is a non-empty string of at most `MAX_TEXT_BYTES` UTF-8 bytes.

    Raises:
        UserError: naming `field`, for a non-string, an empty string, a string
            over the limit, or one that cannot be UTF-8 (a lone surrogate).
    """
    if not isinstance(text, str):
        raise UserError(f"{field}: expected text, got {type(text).__name__}")
    if not text:
        raise UserError(f"{field}: the text is empty")
    if len(text) > MAX_TEXT_BYTES:  # a char is >= 1 byte: too long without encoding it
        raise UserError(f"{field}: more than {MAX_TEXT_BYTES:,} characters, the limit is {_mb(MAX_TEXT_BYTES)}")
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as e:
        raise UserError(f"{field}: not valid Unicode text (a lone surrogate at character {e.start})") from None
    if size > MAX_TEXT_BYTES:
        raise UserError(f"{field}: {_mb(size)} of text, the limit is {_mb(MAX_TEXT_BYTES)}")
    return text


def check_texts(texts: str | Iterable[str], field: str = "texts") -> list[str]:
    """`check_text` for a list of texts: each a string, not all empty, at most `MAX_TEXT_BYTES` together."""
    items = [texts] if isinstance(texts, str) else list(texts)
    for i, text in enumerate(items):
        if not isinstance(text, str):
            raise UserError(f"{field}[{i}]: expected text, got {type(text).__name__}")
    if not any(items):
        raise UserError(f"{field}: no text")
    check_text("".join(items), field)  # the size limit and valid Unicode, over all texts
    return items


def decode_upload(data: bytes, field: str = "file") -> str:
    """Decode an uploaded file as UTF-8 text (a leading byte-order mark is dropped).

    Args:
        data: the raw bytes.
        field: the form field's name, for the error message.

    Raises:
        UserError: naming `field`, for an empty file, one over `MAX_TEXT_BYTES`, or
            bytes that are not UTF-8 (with the offset of the first bad byte).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise UserError(f"{field}: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > MAX_TEXT_BYTES:
        raise UserError(f"{field}: the file is {_mb(len(data))}, the limit is {_mb(MAX_TEXT_BYTES)}")
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise UserError(f"{field}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset {e.start}); "
                        "save the file as UTF-8") from None
    return check_text(text, field)


def _mb(n_bytes: int) -> str:
    return f"{n_bytes / 1e6:.1f} MB"


# ---- uploads and registered datasets ---------------------------------------

def save_upload(ws: Workspace, data: bytes, field: str = "file") -> dict:
    """Keep an uploaded UTF-8 text in `ws.root/uploads/<id>.txt`; the id is its content hash.

    Returns:
        {"upload": id, "bytes", "chars"}. The same bytes always get the same id, and the
        file appears under its name only once complete (written aside, then renamed).

    Raises:
        UserError: naming `field`, as `decode_upload` does.
    """
    text = decode_upload(data, field)
    upload_id = hashlib.sha256(bytes(data)).hexdigest()[:16]
    target = ws.root / "uploads" / f"{upload_id}.txt"
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, target)
    return {"upload": upload_id, "bytes": len(data), "chars": len(text)}


def read_upload(ws: Workspace, upload_id: str, field: str = "upload") -> str:
    """The text of an upload made by `save_upload` (UserError naming `field` if there is none)."""
    path = ws.root / "uploads" / f"{upload_id}.txt"
    if not isinstance(upload_id, str) or not UPLOAD_ID.fullmatch(upload_id) or not path.is_file():
        raise UserError(f"{field}: no upload {upload_id!r} (POST the file to /api/uploads first)")
    return path.read_text(encoding="utf-8")


def dataset_path(ws: Workspace, dataset_id: str, field: str = "dataset") -> Path:
    """The folder of a registered dataset, a snapshot (UserError naming `field` if there is none)."""
    path = ws.dataset(dataset_id) if isinstance(dataset_id, str) else None
    if path is None or "/" in dataset_id or ".." in dataset_id or not (path / "manifest.json").is_file():
        raise UserError(f"{field}: no dataset {dataset_id!r} in {ws.datasets}")
    snapshot.manifest_at(path, field)  # a dataset of an older playground: what to run instead
    return path


def read_dataset(ws: Workspace, dataset_id: str, field: str = "dataset") -> list[str]:
    """The documents of a registered dataset's train split (UserError naming `field` if unknown)."""
    return check_texts(list(snapshot.iter_split(dataset_path(ws, dataset_id, field))), field)
