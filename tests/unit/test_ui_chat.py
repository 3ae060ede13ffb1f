"""The Chat page grown up (Streamlit AppTest): conversations saved on the server and reopened, two models
side by side, branches from an edit or a regeneration, chain of thought, templates. The page talks to the
UI stub, whose /api/conversations are the real routes (services/conversations_api.py) on a temporary
workspace; the stub's model answers "Hello! You said: <the last message>"."""

from __future__ import annotations

import threading

import pytest
from ui_stub import KEY, MODEL, make_app, start_stub

from services import conversations as store
from tests.ui_checks import assistant_texts, open_page
from training.workspace import Workspace
from ui.format_chat import COT_INSTRUCTION

PAGE = "pages/1_Chat.py"
OTHER = "tiny-shakespeare/step-100"


@pytest.fixture
def server(tmp_path, monkeypatch):
    app = make_app()
    app.state.served = {MODEL: 2048, OTHER: 512}
    app.state.workspace = Workspace(tmp_path / "ws")
    app.state.templates = []  # GET /api/prompts (the prompt library); a test fills it

    @app.get("/api/prompts")
    def prompts():
        return app.state.templates

    @app.post("/api/prompts/render")
    def render(body: dict):
        return {"name": body["name"], "system": "You explain things.",
                "text": f"Explain {body['variables'].get('topic', '?')} simply."}

    server = start_stub(app)
    monkeypatch.setenv("PLAYGROUND_URL", server.url)
    monkeypatch.setenv("PLAYGROUND_API_KEY", KEY)
    yield server
    server.stop()


def _clean(at):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def _saved(server, at) -> dict:
    """The open conversation as the server stores it."""
    return store.get(server.app.state.workspace, at.session_state["chat_conv_id"])


def _chats(server) -> list[dict]:
    return [b for _, p, _, b in server.app.state.requests if p == "/v1/chat/completions"]


def _send(at, text):
    at.chat_input[0].set_value(text).run()
    _clean(at)


def test_a_conversation_is_saved_and_reopened_in_a_fresh_session(server):
    at = open_page(PAGE)
    _clean(at)
    assert not at.expander  # no prompt templates on this server: no picker
    at.text_area(key="chat_system").set_value("Be brief.")
    _send(at, "one")
    _send(at, "two")
    cid = at.session_state["chat_conv_id"]
    assert [c["title"] for c in store.list_conversations(server.app.state.workspace)] == ["one"]
    assert at.selectbox(key="chat_open").value == cid

    # A reload is a new session: the conversation is on the server, and the list reopens it.
    fresh = open_page(PAGE)
    _clean(fresh)
    assert not fresh.chat_message and fresh.session_state["chat_conv_id"] is None
    picker = fresh.selectbox(key="chat_open")
    assert picker.options[1].startswith("one · ")
    picker.set_value(cid).run()
    _clean(fresh)
    assert assistant_texts(fresh) == ["Hello! You said: one", "Hello! You said: two"]
    assert fresh.text_area(key="chat_system").value == "Be brief."  # its settings come back too
    _send(fresh, "three")  # and it goes on where it was
    assert [m["content"] for m in _chats(server)[-1]["messages"]] == [
        "Be brief.", "one", "Hello! You said: one", "two", "Hello! You said: two", "three"]
    assert len(_saved(server, fresh)["messages"]) == 6

    # rename, then delete
    fresh.text_input(key=f"chat_title:{cid}").set_value("Counting")
    fresh.button(key="chat_rename").click().run()
    _clean(fresh)
    assert store.get(server.app.state.workspace, cid)["title"] == "Counting"
    assert fresh.selectbox(key="chat_open").options[1].startswith("Counting · ")
    fresh.button(key="chat_delete").click().run()
    _clean(fresh)
    assert store.list_conversations(server.app.state.workspace) == [] and not fresh.chat_message


def test_the_url_reopens_the_open_conversation(server):
    ws = server.app.state.workspace
    c = store.create(ws, "From the URL")
    q = store.add_message(ws, c["id"], parent_id=None, role="user", content="saved")
    store.add_message(ws, c["id"], parent_id=q["id"], role="assistant", content="long ago", model=OTHER,
                      settings={"system_prompt": "", "cot": True, "sampling": {}})
    at = open_page(None)
    at.query_params["conversation"] = c["id"]
    at.switch_page(PAGE).run()
    _clean(at)
    assert at.session_state["chat_conv_id"] == c["id"] and assistant_texts(at) == ["long ago"]
    assert at.selectbox(key="chat_model").value == OTHER and at.toggle(key="chat_cot").value is True


def test_two_models_answer_side_by_side_and_the_conversation_follows_the_one_picked(server):
    at = open_page(PAGE)
    at.toggle(key="chat_compare").set_value(True).run()
    _clean(at)
    assert at.radio(key="chat_columns").value == 2
    assert at.selectbox(key="cmp_model_1").value == OTHER  # the second column starts on another model
    at.slider(key="cmp_temperature_1").set_value(0.0)
    at.text_area(key="cmp_system_1").set_value("Answer in French.")
    _send(at, "hi")

    first, second = _chats(server)[-2:]
    assert {first["model"], second["model"]} == {MODEL, OTHER}
    by_model = {b["model"]: b for b in (first, second)}
    assert by_model[OTHER]["temperature"] == 0.0 and by_model[OTHER]["messages"][0] == {
        "role": "system", "content": "Answer in French."}
    assert by_model[MODEL]["messages"] == [{"role": "user", "content": "hi"}]

    saved = _saved(server, at)
    question, *answers = saved["messages"]
    assert [a["parent_id"] for a in answers] == [question["id"]] * 2  # siblings: compare is branches
    assert [a["model"] for a in answers] == [MODEL, OTHER]
    assert answers[1]["settings"]["sampling"]["temperature"] == 0.0
    assert answers[1]["settings"]["system_prompt"] == "Answer in French."
    assert saved["active_path"] == [question["id"], answers[0]["id"]]

    # on the page: one assistant message holding both answers in columns
    side = [m for m in at.chat_message if m.name == "assistant"]
    assert len(side) == 1 and len(side[0].columns) == 2
    assert [c.markdown[0].value for c in side[0].columns] == ["Hello! You said: hi"] * 2
    assert OTHER in side[0].columns[1].caption[0].value
    assert at.button(key=f"chat_pick:{answers[0]['id']}").disabled

    at.button(key=f"chat_pick:{answers[1]['id']}").click().run()  # continue from the second column's answer
    _clean(at)
    assert _saved(server, at)["active_path"] == [question["id"], answers[1]["id"]]
    _send(at, "more")
    assert all(b["messages"][-3:] == [{"role": "user", "content": "hi"},
                                      {"role": "assistant", "content": "Hello! You said: hi"},
                                      {"role": "user", "content": "more"}] for b in _chats(server)[-2:])
    assert _saved(server, at)["active_path"][:2] == [question["id"], answers[1]["id"]]

    # three columns: three answers
    at.radio(key="chat_columns").set_value(3).run()
    _send(at, "again")
    assert len(_chats(server)) == 7 and len(_saved(server, at)["messages"]) == 3 + 3 + 4


def test_edit_and_regenerate_make_branches_and_the_page_switches_between_them(server):
    at = open_page(PAGE)
    _send(at, "one")
    _send(at, "two")
    one, _, two, a2 = _saved(server, at)["messages"]

    at.button(key=f"chat_edit:{one['id']}").click().run()
    at.text_area(key=f"chat_edit_text:{one['id']}").set_value("uno")
    at.button(key=f"chat_edit_send:{one['id']}").click().run()
    _clean(at)
    assert assistant_texts(at) == ["Hello! You said: uno"]
    assert _chats(server)[-1]["messages"] == [{"role": "user", "content": "uno"}]  # the branch's own history
    assert "branch 2 of 2" in [c.value for c in at.caption]
    saved = _saved(server, at)
    assert len(saved["messages"]) == 6 and saved["messages"][4]["parent_id"] is None

    uno = saved["messages"][4]
    at.button(key=f"chat_prev:{uno['id']}").click().run()  # back to the first branch, where it was
    _clean(at)
    assert assistant_texts(at) == ["Hello! You said: one", "Hello! You said: two"]
    assert "branch 1 of 2" in [c.value for c in at.caption]
    assert at.button(key=f"chat_prev:{one['id']}").disabled and not at.button(key=f"chat_next:{one['id']}").disabled
    at.button(key=f"chat_next:{one['id']}").click().run()
    assert assistant_texts(at) == ["Hello! You said: uno"]
    at.button(key=f"chat_prev:{uno['id']}").click().run()

    at.button(key=f"chat_regen:{a2['id']}").click().run()  # a second answer to "two"
    _clean(at)
    assert [m["content"] for m in _chats(server)[-1]["messages"]] == ["one", "Hello! You said: one", "two"]
    saved = _saved(server, at)
    regenerated = saved["messages"][-1]
    assert regenerated["parent_id"] == two["id"] and saved["active_leaf"] == regenerated["id"]
    assert "branch 2 of 2" in [c.value for c in at.caption]
    assert len(at.session_state["chat_messages"]) == 4


def test_chain_of_thought_asks_for_reasoning_and_folds_it(server):
    at = open_page(PAGE)
    at.toggle(key="chat_cot").set_value(True)
    _send(at, "Let me think.\nAnswer: 42")  # the stub echoes it: reasoning, then an Answer: line
    assert _chats(server)[-1]["messages"][0] == {"role": "system", "content": COT_INSTRUCTION}
    [reasoning] = at.expander
    assert reasoning.label == "Reasoning" and reasoning.markdown[0].value == "Hello! You said: Let me think."
    [answer] = [m for m in at.chat_message if m.name == "assistant"]
    assert answer.markdown[-1].value == "42"
    assert _saved(server, at)["messages"][1]["settings"]["cot"] is True


def test_a_template_fills_the_system_prompt_or_the_message_box(server):
    server.app.state.templates = [{"name": "explain", "title": "Explain simply", "category": "qa",
                                   "template": "Explain {topic} simply.", "variables": ["topic"]}]
    at = open_page(PAGE)
    _clean(at)
    at.text_input(key="chat_tpl_var:explain:topic").set_value("gravity")
    at.button(key="chat_tpl_use").click().run()
    _clean(at)
    assert at.text_area(key="chat_system").value == "You explain things.\n\nExplain gravity simply."
    requests = server.app.state.requests
    sent = next(b for _, p, _, b in reversed(requests) if p == "/api/prompts/render")
    assert (sent["name"], sent["variables"]) == ("explain", {"topic": "gravity"})

    at.radio(key="chat_tpl_target").set_value("Message")
    at.button(key="chat_tpl_use").click().run()
    _clean(at)
    assert at.chat_input[0].value == "Explain gravity simply."


class _Slot:
    def __init__(self):
        self.shown = []

    def markdown(self, text):
        self.shown.append(text)

    def error(self, text):
        self.shown.append(f"error: {text}")


class _BlockingClient:
    """Each stream waits, mid-answer, until every other stream has started: only parallel streams finish."""

    def __init__(self, n):
        self.barrier = threading.Barrier(n, timeout=5)

    def chat_stream(self, model, messages, **params):
        yield f"{model} starts"
        self.barrier.wait()  # a BrokenBarrierError (a bug, re-raised on the page) if streamed one by one
        yield f", {model} ends"


def test_columns_stream_in_parallel_each_into_its_own_placeholder():
    from ui.chat_stream import stream_replies
    from ui.chat_view import column

    columns = [column(m, None, "", False, {}) for m in ("a", "b", "c")]
    slots = [_Slot() for _ in columns]
    replies = stream_replies(_BlockingClient(3), [{"role": "user", "content": "hi"}], columns, slots)
    assert [r.text for r in replies] == ["a starts, a ends", "b starts, b ends", "c starts, c ends"]
    assert [s.shown[-1] for s in slots] == [r.text for r in replies]  # the last draw: no cursor
