"""A workspace's SQLite stores (human votes, chat conversations): one connection per call, one transaction.

    with sqlite_store.connect(path, SCHEMA, SCHEMA_VERSION) as con:
        con.execute("INSERT ...")        # committed when the block ends, rolled back on an exception

A connection per call, rather than one kept open, because the API serves requests from a thread
pool and a SQLite connection must not be shared across threads; WAL lets readers go on while one
writer writes. The schema (CREATE ... IF NOT EXISTS) is applied when the file's `user_version` is
older than `version`, so two processes creating it at once is harmless; a newer file is refused.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from training.errors import UserError


@contextmanager
def connect(path: Path, schema: str, version: int) -> Iterator[sqlite3.Connection]:
    path.parent.mkdir(parents=True, exist_ok=True)
    con = sqlite3.connect(path, timeout=30)
    con.row_factory = sqlite3.Row
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA foreign_keys=ON")
        found = con.execute("PRAGMA user_version").fetchone()[0]
        if found > version:
            raise UserError(f"workspace: {path.name} has schema version {found}, newer than this playground's "
                            f"({version}); upgrade the playground")
        if found < version:
            con.executescript(schema)
            con.execute(f"PRAGMA user_version = {version}")
        with con:
            yield con
    finally:
        con.close()
