"""Saved chat conversations: the store (services/conversations.py) and its routes (services/conversations_api.py)."""

from __future__ import annotations

import sqlite3

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from services import conversations as store
from services.conversations_api import router
from services.llm import harden
from training.errors import UserError
from training.workspace import Workspace


@pytest.fixture
def ws(tmp_path):
    return Workspace(tmp_path)


def _turn(ws, cid, parent, question, *answers, **kw):
    """A user message under `parent` and each answer under it; returns (question, [answers])."""
    q = store.add_message(ws, cid, parent_id=parent, role="user", content=question)
    out = [store.add_message(ws, cid, parent_id=q["id"], role="assistant", content=a, model=f"m{i}",
                             settings={"sampling": {"temperature": 0.1 * i}}, activate=i == 0, **kw)
           for i, a in enumerate(answers)]
    return q, out


def _contents(conversation):
    return [m["content"] for m in store.active_messages(conversation)]


# ---------------------------------------------------------------------------- the store


def test_a_conversation_is_a_tree_and_the_active_path_follows_its_leaf(ws):
    c = store.create(ws, "Greetings", {"model": "m0"})
    assert (c["title"], c["settings"], c["messages"], c["active_leaf"], c["active_path"]) == (
        "Greetings", {"model": "m0"}, [], None, [])
    assert store.db_path(ws) == ws.root / "chat" / "conversations.sqlite"
    q1, (a1,) = _turn(ws, c["id"], None, "Hi", "Hello!")
    q2, (a2,) = _turn(ws, c["id"], a1["id"], "How are you?", "Fine.")
    got = store.get(ws, c["id"])
    assert got["active_leaf"] == a2["id"] and got["active_path"] == [q1["id"], a1["id"], q2["id"], a2["id"]]
    assert _contents(got) == ["Hi", "Hello!", "How are you?", "Fine."]
    assert [m["parent_id"] for m in got["messages"]] == [None, q1["id"], a1["id"], q2["id"]]
    assert a1["model"] == "m0" and a1["settings"] == {"sampling": {"temperature": 0.0}} and a1["created"]
    [row] = store.list_conversations(ws)
    assert (row["id"], row["title"], row["messages"]) == (c["id"], "Greetings", 4)


def test_editing_and_regenerating_make_branches_and_switching_follows_them(ws):
    c = store.create(ws)
    assert c["title"] == "New conversation"
    q1, (a1,) = _turn(ws, c["id"], None, "Hi", "Hello!")
    q2, (a2,) = _turn(ws, c["id"], a1["id"], "Tell a joke", "No.")
    # regenerate: a second answer to the same question
    a2b = store.add_message(ws, c["id"], parent_id=q2["id"], role="assistant", content="Knock knock.")
    # edit the first question: a sibling root, with its own answer
    e1, _ = _turn(ws, c["id"], None, "Hello there", "General Kenobi.")
    assert _contents(store.get(ws, c["id"])) == ["Hello there", "General Kenobi."]
    b = store.branches(ws, c["id"], e1["id"])
    assert (b["index"], [s["id"] for s in b["siblings"]], b["parent_id"]) == (1, [q1["id"], e1["id"]], None)
    assert store.branches(ws, c["id"], a2["id"])["index"] == 0

    # switching to the first question lands on its newest leaf: the regenerated answer
    switched = store.switch(ws, c["id"], q1["id"])
    assert switched["active_leaf"] == a2b["id"]
    assert _contents(switched) == ["Hi", "Hello!", "Tell a joke", "Knock knock."]
    assert _contents(store.switch(ws, c["id"], a2["id"])) == ["Hi", "Hello!", "Tell a joke", "No."]
    assert len(store.get(ws, c["id"])["messages"]) == 7  # nothing was overwritten


def test_compare_answers_are_siblings_and_the_first_stays_active(ws):
    c = store.create(ws)
    _, answers = _turn(ws, c["id"], None, "2+2?", "4", "four", "5")
    got = store.get(ws, c["id"])
    assert got["active_leaf"] == answers[0]["id"] and answers[2]["active_leaf"] == answers[0]["id"]
    b = store.branches(ws, c["id"], answers[1]["id"])
    assert [s["model"] for s in b["siblings"]] == ["m0", "m1", "m2"] and b["index"] == 1


def test_rename_settings_delete_and_the_list_order(ws):
    a, b = store.create(ws, "first"), store.create(ws, "second")
    assert [r["title"] for r in store.list_conversations(ws)] == ["second", "first"]
    store.rename(ws, a["id"], "  renamed  ")
    assert [r["title"] for r in store.list_conversations(ws)] == ["renamed", "second"]  # most recently changed
    assert store.update(ws, b["id"], settings={"model": "x"})["settings"] == {"model": "x"}
    _turn(ws, a["id"], None, "Hi", "Hello!")
    assert store.delete(ws, a["id"]) == {"id": a["id"], "deleted": True}
    assert [r["id"] for r in store.list_conversations(ws)] == [b["id"]]
    with sqlite3.connect(store.db_path(ws)) as con:  # its messages went with it
        assert con.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 0
    with pytest.raises(UserError, match=r"^conversation_id: no conversation"):
        store.get(ws, a["id"])


def test_export_is_the_active_path_as_json_and_markdown(ws):
    c = store.create(ws, "Jokes")
    _, (_, b) = _turn(ws, c["id"], None, "Tell a joke", "No.", "Knock knock.")
    store.switch(ws, c["id"], b["id"])
    data = store.export_json(ws, c["id"])
    assert data["title"] == "Jokes" and [m["content"] for m in data["messages"]] == ["Tell a joke", "Knock knock."]
    assert data["messages"][1]["model"] == "m1" and set(data["messages"][0]) == {
        "role", "content", "model", "settings", "created"}
    md = store.export_markdown(ws, c["id"])
    assert md.startswith("# Jokes\n") and "## User\n\nTell a joke" in md and "## Assistant (m1)\n\nKnock knock." in md
    assert "No." not in md


@pytest.mark.parametrize(("call", "field"), [
    (lambda ws, cid: store.add_message(ws, cid, parent_id=None, role="robot", content="x"), "role"),
    (lambda ws, cid: store.add_message(ws, cid, parent_id=None, role="user", content="  "), "content"),
    (lambda ws, cid: store.add_message(ws, cid, parent_id=None, role="user", content=3), "content"),
    (lambda ws, cid: store.add_message(ws, cid, parent_id=None, role="user", content="x", settings=[1]), "settings"),
    (lambda ws, cid: store.add_message(ws, cid, parent_id="nope", role="user", content="x"), "parent_id"),
    (lambda ws, cid: store.update(ws, cid, title=""), "title"),
    (lambda ws, cid: store.update(ws, cid, title="x" * 201), "title"),
    (lambda ws, cid: store.update(ws, cid, active_leaf="nope"), "active_leaf"),
    (lambda ws, cid: store.update(ws, cid), "body"),
    (lambda ws, cid: store.branches(ws, cid, "nope"), "message_id"),
])
def test_mistakes_name_their_field(ws, call, field):
    cid = store.create(ws)["id"]
    with pytest.raises(UserError, match=rf"^{field}: "):
        call(ws, cid)


def test_a_message_from_another_conversation_is_not_a_parent(ws):
    a, b = store.create(ws), store.create(ws)
    q = store.add_message(ws, a["id"], parent_id=None, role="user", content="Hi")
    with pytest.raises(UserError, match="^parent_id: no message"):
        store.add_message(ws, b["id"], parent_id=q["id"], role="assistant", content="Hello")


def test_a_write_that_fails_half_way_stores_nothing(ws, monkeypatch):
    c = store.create(ws, "kept")
    _, (a,) = _turn(ws, c["id"], None, "Hi", "Hello!")
    before = store.get(ws, c["id"])

    def broken(*args, **kwargs):
        raise OSError("disk full")

    # The message row is inserted, then setting the active leaf fails: the insert is rolled back.
    monkeypatch.setattr(store, "_touch", broken)
    with pytest.raises(OSError):
        store.add_message(ws, c["id"], parent_id=a["id"], role="user", content="lost")
    with pytest.raises(OSError):
        store.update(ws, c["id"], title="not this")
    monkeypatch.undo()
    assert store.get(ws, c["id"]) == before

    # A deletion is one transaction too: the conversation and its messages go together, or neither.
    def fail_on_conversations(con, sql, params=()):
        if sql.startswith("DELETE FROM conversations"):
            raise sqlite3.OperationalError("database is locked")
        return real_execute(con, sql, params)

    real_execute = sqlite3.Connection.execute

    class Flaky(sqlite3.Connection):
        execute = fail_on_conversations

    real_connect = sqlite3.connect
    monkeypatch.setattr(sqlite3, "connect", lambda *a, **k: real_connect(*a, factory=Flaky, **k))
    with pytest.raises(sqlite3.OperationalError):
        store.delete(ws, c["id"])
    monkeypatch.undo()
    assert store.get(ws, c["id"]) == before


# ---------------------------------------------------------------------------- the routes


@pytest.fixture
def api(ws):
    app = FastAPI()
    app.include_router(router, prefix="/api")
    harden(app, set(), None)  # as services/api.py does: validation errors become 400s naming the field
    app.state.workspace = ws
    return TestClient(app)


def _error(r, status: int, param: str) -> str:
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["param"] == param, err
    return err["message"]


def test_routes_create_append_branch_switch_rename_export_delete(api):
    r = api.post("/api/conversations", json={"title": "Hi there", "settings": {"model": "m"}})
    assert r.status_code == 201
    cid = r.json()["id"]
    r = api.post(f"/api/conversations/{cid}/messages", json={"parent_id": None, "role": "user", "content": "Hi"})
    assert r.status_code == 201 and r.json()["active_leaf"] == r.json()["id"]
    q = r.json()["id"]
    ids = [api.post(f"/api/conversations/{cid}/messages", json={
        "parent_id": q, "role": "assistant", "content": text, "model": model, "settings": {"cot": False},
        "activate": model == "a"}).json()["id"] for text, model in (("Hello", "a"), ("Hey", "b"))]
    got = api.get(f"/api/conversations/{cid}").json()
    assert got["active_path"] == [q, ids[0]] and len(got["messages"]) == 3
    branches = api.get(f"/api/conversations/{cid}/messages/{ids[1]}/branches").json()
    assert branches["index"] == 1 and [s["model"] for s in branches["siblings"]] == ["a", "b"]

    r = api.patch(f"/api/conversations/{cid}", json={"active_leaf": ids[1], "title": "Renamed"})
    assert r.status_code == 200 and r.json()["active_path"] == [q, ids[1]] and r.json()["title"] == "Renamed"
    assert [c["title"] for c in api.get("/api/conversations").json()] == ["Renamed"]
    assert [m["content"] for m in api.get(f"/api/conversations/{cid}/export").json()["messages"]] == ["Hi", "Hey"]
    md = api.get(f"/api/conversations/{cid}/export", params={"format": "md"})
    assert md.headers["content-type"].startswith("text/markdown") and "## Assistant (b)\n\nHey" in md.text

    assert api.delete(f"/api/conversations/{cid}").json() == {"id": cid, "deleted": True}
    assert api.get("/api/conversations").json() == []


def test_routes_answer_4xx_naming_the_field(api):
    assert "no conversation 'nope'" in _error(api.get("/api/conversations/nope"), 404, "conversation_id")
    _error(api.delete("/api/conversations/nope"), 404, "conversation_id")
    _error(api.get("/api/conversations/nope/export"), 404, "conversation_id")
    _error(api.get("/api/conversations/nope/export", params={"format": "md"}), 404, "conversation_id")
    _error(api.post("/api/conversations/nope/messages", json={"parent_id": None, "role": "user", "content": "x"}),
           404, "conversation_id")
    cid = api.post("/api/conversations", json={}).json()["id"]
    _error(api.post(f"/api/conversations/{cid}/messages", json={"parent_id": "zz", "role": "user", "content": "x"}),
           404, "parent_id")
    _error(api.patch(f"/api/conversations/{cid}", json={"active_leaf": "zz"}), 404, "active_leaf")
    _error(api.get(f"/api/conversations/{cid}/messages/zz/branches"), 404, "message_id")

    _error(api.post(f"/api/conversations/{cid}/messages", json={"parent_id": None, "role": "bot", "content": "x"}),
           400, "role")
    _error(api.post(f"/api/conversations/{cid}/messages", json={"parent_id": None, "role": "user", "content": ""}),
           400, "content")
    _error(api.post(f"/api/conversations/{cid}/messages", json={"parent_id": None, "role": "user"}), 400, "content")
    _error(api.post(f"/api/conversations/{cid}/messages", json={"parent_id": None, "role": "user", "content": "x",
                                                                 "colour": "red"}), 400, "colour")
    _error(api.post("/api/conversations", json={"title": " "}), 400, "title")
    _error(api.post("/api/conversations", json={"settings": [1, 2]}), 400, "settings")
    _error(api.patch(f"/api/conversations/{cid}", json={}), 400, "body")
    _error(api.get(f"/api/conversations/{cid}/export", params={"format": "pdf"}), 400, "format")
