"""Write a folder all at once: readers see the old folder or the complete new one.

    with atomic_dir(out_dir) as tmp:
        write_everything_into(tmp)
    # out_dir now holds exactly what was written; on an exception nothing changed.

Every stage that produces a folder (datasets, token shards, tokenizers, exports) goes
through this, so a crash or a user error never leaves a half-written one behind.
"""

from __future__ import annotations

import contextlib
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path


def temp_sibling(final_dir: Path) -> Path:
    """A fresh, empty hidden folder next to `final_dir` (same filesystem, so renames are atomic)."""
    final_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = final_dir.with_name(f".{final_dir.name}.tmp-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    return tmp


def replace_dir(tmp_dir: Path, final_dir: Path) -> None:
    """Move the finished `tmp_dir` to `final_dir`, replacing what was there.

    A folder cannot be renamed over a non-empty one, so an existing `final_dir` is
    renamed aside first, and deleted only once the new one is in place (or put back
    if the second rename fails).
    """
    old = None
    if final_dir.exists():
        old = final_dir.with_name(f".{final_dir.name}.old-{uuid.uuid4().hex[:8]}")
        final_dir.rename(old)
    try:
        tmp_dir.rename(final_dir)
    except BaseException:
        if old is not None:
            old.rename(final_dir)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final_dir: Path) -> Iterator[Path]:
    """Yield a temp folder; on success it replaces `final_dir`, on error it is deleted."""
    final_dir = Path(final_dir)
    tmp = temp_sibling(final_dir)
    try:
        yield tmp
        replace_dir(tmp, final_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
