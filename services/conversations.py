"""Saved chat conversations: a tree of messages per conversation, kept in the workspace.

A conversation is a tree, not a list. Editing an earlier user message, or regenerating an answer,
adds a *sibling* under the same parent: a branch. Nothing is overwritten, so every version can be
revisited. What the Chat page shows and sends is one path through the tree, from a first message
down to the conversation's *active leaf*; switching branches moves the active leaf. Compare mode
is the same thing side by side: each model's answer to one message is a sibling.

```
workspace/chat/conversations.sqlite    SQLite (WAL: the API, the CLI and a notebook can read and write at once)
  conversations (id, title, settings, active_leaf, created_at, updated_at)
  messages      (id, conversation_id, parent_id, role, content, model, settings, created_at)
                parent_id NULL: a first message (an edited first message is a sibling root)
```

Why SQLite rather than one JSON file per conversation: each change (a message together with the
new active leaf; a deletion of a conversation and all its messages) is one transaction, so a
failure half-way leaves exactly what was stored before; two browser tabs writing to the same
conversation are serialised by SQLite's lock, where a read-modify-write of a JSON file would let
one tab's write silently replace the other's; and the sidebar's list is one query, not a read of
every file. The human-evaluation store (evaluation/human.py) works the same way.

No FastAPI here: services/conversations_api.py serves these functions at /api/conversations. A
mistake the caller can fix is a `UserError` whose message starts with the field it is about
(`conversation_id: no conversation ...`), which the API turns into a 404 or a 400 naming it.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from datetime import datetime, timezone
from pathlib import Path

from training import sqlite_store
from training.errors import UserError
from training.workspace import Workspace

SCHEMA_VERSION = 1  # PRAGMA user_version: a later schema migrates from the number it finds
ROLES = ("system", "user", "assistant")
TITLE_CHARS, CONTENT_CHARS, SETTINGS_CHARS = 200, 1_000_000, 100_000
DEFAULT_TITLE = "New conversation"

SCHEMA = """
CREATE TABLE IF NOT EXISTS conversations (
    id TEXT PRIMARY KEY, title TEXT NOT NULL, settings TEXT NOT NULL, active_leaf TEXT,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    id TEXT PRIMARY KEY,
    conversation_id TEXT NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
    parent_id TEXT REFERENCES messages(id) ON DELETE CASCADE,
    role TEXT NOT NULL CHECK (role IN ('system', 'user', 'assistant')), content TEXT NOT NULL,
    model TEXT, settings TEXT NOT NULL, created_at TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS messages_by_conversation ON messages (conversation_id);
CREATE INDEX IF NOT EXISTS messages_by_parent ON messages (parent_id);
"""


def db_path(ws: Workspace) -> Path:
    return ws.root / "chat" / "conversations.sqlite"


def connect(ws: Workspace):
    """One connection for one call, in one transaction (training/sqlite_store.py)."""
    return sqlite_store.connect(db_path(ws), SCHEMA, SCHEMA_VERSION)


# ---------------------------------------------------------------------------- checks


def _now() -> str:
    # Milliseconds: a compare turn stores 2-4 answers within the same second.
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _new_id() -> str:
    return uuid.uuid4().hex[:12]


def _title(value) -> str:
    if not isinstance(value, str) or not value.strip():
        raise UserError(f"title: a non-empty string is needed, got {value!r}")
    if len(value.strip()) > TITLE_CHARS:
        raise UserError(f"title: at most {TITLE_CHARS} characters, got {len(value.strip())}")
    return value.strip()


def _settings(value) -> str:
    """Settings as stored: a JSON object (the model, system prompt, sampling, ... used)."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise UserError(f"settings: a JSON object is needed, got {type(value).__name__}")
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise UserError(f"settings: not storable as JSON ({e})") from None
    if len(text) > SETTINGS_CHARS:
        raise UserError(f"settings: at most {SETTINGS_CHARS} characters of JSON, got {len(text)}")
    return text


def _conversation(con: sqlite3.Connection, conversation_id) -> sqlite3.Row:
    row = con.execute("SELECT * FROM conversations WHERE id = ?", (str(conversation_id),)).fetchone()
    if row is None:
        raise UserError(f"conversation_id: no conversation {conversation_id!r} (GET /api/conversations lists them)")
    return row


def _message(con: sqlite3.Connection, conversation_id: str, message_id, field: str) -> sqlite3.Row:
    row = con.execute("SELECT * FROM messages WHERE id = ? AND conversation_id = ?",
                      (str(message_id), conversation_id)).fetchone()
    if row is None:
        raise UserError(f"{field}: no message {message_id!r} in conversation {conversation_id!r}")
    return row


# ---------------------------------------------------------------------------- the tree


def _message_dict(row: sqlite3.Row) -> dict:
    return {"id": row["id"], "parent_id": row["parent_id"], "role": row["role"], "content": row["content"],
            "model": row["model"], "settings": json.loads(row["settings"]), "created": row["created_at"]}


def _messages(con: sqlite3.Connection, conversation_id: str) -> list[dict]:
    """Every message of a conversation, oldest first (rowid: the order they were stored in)."""
    rows = con.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY rowid", (conversation_id,))
    return [_message_dict(r) for r in rows]


def path_to(messages: list[dict], leaf: str | None) -> list[dict]:
    """The messages from a first message down to `leaf`, in order; [] for no leaf.

    >>> ms = [{"id": "a", "parent_id": None}, {"id": "b", "parent_id": "a"}, {"id": "c", "parent_id": "a"}]
    >>> [m["id"] for m in path_to(ms, "c")]
    ['a', 'c']
    """
    by_id = {m["id"]: m for m in messages}
    path = []
    while leaf is not None and leaf in by_id:
        path.append(by_id[leaf])
        leaf = by_id[leaf]["parent_id"]
    return path[::-1]


def newest_leaf(messages: list[dict], message_id: str) -> str:
    """The leaf reached from `message_id` by always taking the newest reply: where switching to a
    branch lands (the message itself when nothing answers it yet).

    >>> ms = [{"id": "a", "parent_id": None}, {"id": "b", "parent_id": "a"}, {"id": "c", "parent_id": "a"}]
    >>> newest_leaf(ms, "a"), newest_leaf(ms, "b")
    ('c', 'b')
    """
    children: dict[str, list[str]] = {}
    for m in messages:  # oldest first, so each list's last child is the newest
        children.setdefault(m["parent_id"], []).append(m["id"])
    while children.get(message_id):
        message_id = children[message_id][-1]
    return message_id


def _full(con: sqlite3.Connection, row: sqlite3.Row) -> dict:
    messages = _messages(con, row["id"])
    return {"id": row["id"], "title": row["title"], "created": row["created_at"], "updated": row["updated_at"],
            "settings": json.loads(row["settings"]), "active_leaf": row["active_leaf"],
            "active_path": [m["id"] for m in path_to(messages, row["active_leaf"])], "messages": messages}


def _touch(con: sqlite3.Connection, conversation_id: str, **columns) -> None:
    """Set `columns` (e.g. active_leaf) and the conversation's `updated_at`."""
    columns["updated_at"] = _now()
    assignments = ", ".join(f"{name} = ?" for name in columns)
    con.execute(f"UPDATE conversations SET {assignments} WHERE id = ?", (*columns.values(), conversation_id))


# ---------------------------------------------------------------------------- conversations


def create(ws: Workspace, title: str | None = None, settings: dict | None = None) -> dict:
    """A new, empty conversation.

    Args:
        title: what the list shows; None: "New conversation" (the Chat page passes the start of
            the first message).
        settings: the settings it was started with (model, system prompt, sampling), any JSON object.

    Returns:
        the conversation as `get` returns it (no messages yet, `active_leaf` None).
    """
    title = DEFAULT_TITLE if title is None else _title(title)
    stored, now, conversation_id = _settings(settings), _now(), _new_id()
    with connect(ws) as con:
        con.execute("INSERT INTO conversations (id, title, settings, active_leaf, created_at, updated_at) "
                    "VALUES (?, ?, ?, NULL, ?, ?)", (conversation_id, title, stored, now, now))
        return _full(con, _conversation(con, conversation_id))


def list_conversations(ws: Workspace) -> list[dict]:
    """Every conversation, most recently changed first: id, title, created, updated, messages (a count)."""
    with connect(ws) as con:
        rows = con.execute(
            "SELECT c.id, c.title, c.created_at, c.updated_at, COUNT(m.id) AS n FROM conversations c "
            "LEFT JOIN messages m ON m.conversation_id = c.id GROUP BY c.id "
            "ORDER BY c.updated_at DESC, c.rowid DESC").fetchall()
    return [{"id": r["id"], "title": r["title"], "created": r["created_at"], "updated": r["updated_at"],
             "messages": r["n"]} for r in rows]


def get(ws: Workspace, conversation_id: str) -> dict:
    """One conversation in full.

    Returns:
        `{"id", "title", "created", "updated", "settings", "active_leaf", "active_path", "messages"}`:
        `messages` is the whole tree, oldest first, each `{"id", "parent_id", "role", "content",
        "model", "settings", "created"}`; `active_path` the ids from a first message to the active leaf.
    """
    with connect(ws) as con:
        return _full(con, _conversation(con, conversation_id))


def update(ws: Workspace, conversation_id: str, *, title: str | None = None, active_leaf: str | None = None,
           settings: dict | None = None) -> dict:
    """Rename, switch branch and/or replace the settings, in one transaction.

    Args:
        active_leaf: any message of the conversation; one that has replies stands for its newest
            leaf (`newest_leaf`), so the id of a sibling is enough to switch to that branch.

    Returns:
        the conversation as `get` returns it.
    """
    if title is None and active_leaf is None and settings is None:
        raise UserError("body: nothing to change; give title, active_leaf or settings")
    changes = {}
    if title is not None:
        changes["title"] = _title(title)
    if settings is not None:
        changes["settings"] = _settings(settings)
    with connect(ws) as con:
        _conversation(con, conversation_id)
        if active_leaf is not None:
            _message(con, conversation_id, active_leaf, "active_leaf")
            changes["active_leaf"] = newest_leaf(_messages(con, conversation_id), str(active_leaf))
        _touch(con, conversation_id, **changes)
        return _full(con, _conversation(con, conversation_id))


def rename(ws: Workspace, conversation_id: str, title: str) -> dict:
    """`update` with a new title only."""
    return update(ws, conversation_id, title=title)


def switch(ws: Workspace, conversation_id: str, message_id: str) -> dict:
    """`update` with a new active leaf only: follow the branch through `message_id`."""
    return update(ws, conversation_id, active_leaf=message_id)


def delete(ws: Workspace, conversation_id: str) -> dict:
    """Delete a conversation and all its messages (one transaction). Returns `{"id", "deleted": True}`."""
    with connect(ws) as con:
        _conversation(con, conversation_id)
        con.execute("DELETE FROM messages WHERE conversation_id = ?", (str(conversation_id),))
        con.execute("DELETE FROM conversations WHERE id = ?", (str(conversation_id),))
    return {"id": str(conversation_id), "deleted": True}


# ---------------------------------------------------------------------------- messages


def add_message(ws: Workspace, conversation_id: str, *, parent_id: str | None, role: str, content: str,
                model: str | None = None, settings: dict | None = None, activate: bool = True) -> dict:
    """Append a message under `parent_id` (None: a first message). If the parent already has a
    reply, this one is a new branch beside it.

    Args:
        role: "user", "assistant" or "system".
        content: the text; a user message may not be blank (an answer may: models do that).
        model, settings: for an answer, the model and the settings that produced it.
        activate: make the new message the active leaf (compare mode stores its other columns'
            answers with False, so the first column's stays the one the conversation follows).

    Returns:
        the message (`{"id", "parent_id", "role", "content", "model", "settings", "created"}`)
        plus the conversation's `active_leaf` after it.

    Example:
        >>> import tempfile; ws = Workspace(Path(tempfile.mkdtemp()))
        >>> c = create(ws, "Greetings")
        >>> hi = add_message(ws, c["id"], parent_id=None, role="user", content="Hi")
        >>> a = add_message(ws, c["id"], parent_id=hi["id"], role="assistant", content="Hello!", model="m1")
        >>> b = add_message(ws, c["id"], parent_id=hi["id"], role="assistant", content="Hey", model="m2")
        >>> [m["content"] for m in branches(ws, c["id"], a["id"])["siblings"]]
        ['Hello!', 'Hey']
        >>> [m["content"] for m in active_messages(get(ws, c["id"]))]
        ['Hi', 'Hey']
    """
    if role not in ROLES:
        raise UserError(f"role: one of {', '.join(ROLES)}, got {role!r}")
    if not isinstance(content, str):
        raise UserError(f"content: a string is needed, got {type(content).__name__}")
    if role == "user" and not content.strip():
        raise UserError("content: a user message may not be blank")
    if len(content) > CONTENT_CHARS:
        raise UserError(f"content: at most {CONTENT_CHARS:,} characters, got {len(content):,}")
    if model is not None and (not isinstance(model, str) or len(model) > TITLE_CHARS):
        raise UserError(f"model: a model id of at most {TITLE_CHARS} characters, got {model!r}")
    stored, message_id = _settings(settings), _new_id()
    with connect(ws) as con:
        conversation = _conversation(con, conversation_id)
        if parent_id is not None:
            parent_id = _message(con, conversation["id"], parent_id, "parent_id")["id"]
        con.execute("INSERT INTO messages (id, conversation_id, parent_id, role, content, model, settings, "
                    "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (message_id, conversation["id"], parent_id, role, content, model, stored, _now()))
        leaf = message_id if activate else conversation["active_leaf"]
        _touch(con, conversation["id"], active_leaf=leaf)
        row = _message(con, conversation["id"], message_id, "message_id")
    return _message_dict(row) | {"active_leaf": leaf}


def branches(ws: Workspace, conversation_id: str, message_id: str) -> dict:
    """The branches at a message: it and its siblings (the same parent), oldest first.

    Returns:
        `{"message_id", "parent_id", "index", "siblings"}`: `index` is the message's place among
        `siblings` (0-based; the page shows "branch index+1 of len(siblings)").
    """
    with connect(ws) as con:
        _conversation(con, conversation_id)
        message = _message(con, str(conversation_id), message_id, "message_id")
        rows = con.execute("SELECT * FROM messages WHERE conversation_id = ? AND parent_id IS ? ORDER BY rowid",
                           (str(conversation_id), message["parent_id"])).fetchall()
    siblings = [_message_dict(r) for r in rows]
    return {"message_id": message["id"], "parent_id": message["parent_id"],
            "index": [s["id"] for s in siblings].index(message["id"]), "siblings": siblings}


# ---------------------------------------------------------------------------- export


def active_messages(conversation: dict) -> list[dict]:
    """The messages of a conversation (as `get` returns it) on its active path, in order."""
    by_id = {m["id"]: m for m in conversation["messages"]}
    return [by_id[i] for i in conversation["active_path"]]


def export_json(ws: Workspace, conversation_id: str) -> dict:
    """The active path as JSON: the conversation's id, title, times and settings, and its
    messages (role, content, model, settings, created)."""
    c = get(ws, conversation_id)
    keep = ("role", "content", "model", "settings", "created")
    return {k: c[k] for k in ("id", "title", "created", "updated", "settings")} | {
        "messages": [{k: m[k] for k in keep} for m in active_messages(c)]}


def export_markdown(ws: Workspace, conversation_id: str) -> str:
    """The active path as a readable Markdown document: the title, then each message under its
    role (an answer's heading names its model)."""
    c = get(ws, conversation_id)
    lines = [f"# {c['title']}", "", f"- **created**: {c['created']}", f"- **updated**: {c['updated']}"]
    for m in active_messages(c):
        heading = m["role"].capitalize() + (f" ({m['model']})" if m["model"] else "")
        lines += ["", f"## {heading}", "", m["content"]]
    return "\n".join(lines) + "\n"
