"""The Chat page's Streamlit pieces: saved conversations, the message tree, compare columns, streaming.

The page (ui/pages/1_Chat.py) lays these out. The state that survives a rerun:

    chat_conv_id   the open conversation (None: a new one, saved with its first message); also in the
                   URL as ?conversation=ID, so a reload reopens it
    chat_messages  the active path as exported (role, content, model)
    chat_pending   a turn queued by a button: {"parent_id", "text"} (text None: regenerate)
    chat_editing   the id of the user message being edited
    chat_notes     what the last turn has to say, shown after the rerun that displays it

Everything else lives on the server (services/conversations_api.py), so another browser sees it.
The answers of a turn stream in parallel, one worker thread per column (ui/chat_stream.py).
"""

from __future__ import annotations

import streamlit as st

from ui.chat_stream import Reply, stream_replies
from ui.client import ApiError, PlaygroundClient
from ui.format import SAMPLING
from ui.format_chat import (
    MAX_COLUMNS,
    active_messages,
    api_messages,
    branch_position,
    column_params,
    compare_replies,
    left_out_notice,
    path_to,
    picker_labels,
    reply_settings,
    settings_label,
    siblings,
    split_reasoning,
    template_variables,
    title_from,
)
from ui.widgets import call

NEW = ""  # the conversation picker's entry for a new conversation
state = st.session_state


# ---------------------------------------------------------------------------- conversations


def open_conversation(conversation_id: str | None) -> None:
    """Make `conversation_id` the open one (None: a new conversation); widgets follow on the next run."""
    state["chat_conv_id"] = conversation_id or None
    state["chat_restore"] = bool(conversation_id)
    for key in ("chat_editing", "chat_pending"):
        state.pop(key, None)


def _restore(conversation: dict, served: dict) -> None:
    """Put the model, system prompt and chain-of-thought switch of the answer the conversation
    follows back in the sidebar (before those widgets are drawn)."""
    answers = [m for m in active_messages(conversation) if m["role"] == "assistant"]
    if not answers:
        return
    last = answers[-1]
    if last["model"] in served:
        state["chat_model"] = last["model"]
    state["chat_system"] = (last["settings"] or {}).get("system_prompt", "")
    state["chat_cot"] = bool((last["settings"] or {}).get("cot"))


def _rename(client: PlaygroundClient, conversation_id: str) -> None:
    call(client.update_conversation, conversation_id, title=state.get(f"chat_title:{conversation_id}", ""))


def _delete(client: PlaygroundClient, conversation_id: str) -> None:
    if call(client.delete_conversation, conversation_id) is not None:
        open_conversation(None)


def conversation_picker(client: PlaygroundClient, served: dict) -> dict | None:
    """The sidebar's saved conversations (open one, start a new one, rename, delete); returns the
    open conversation as the server has it now, or None for a new one."""
    if "chat_conv_id" not in state:  # a new session (a reload): the URL says what was open
        open_conversation(st.query_params.get("conversation"))
    listed = call(client.conversations) or []
    conversation, cid = None, state["chat_conv_id"]
    if cid:
        try:
            conversation = client.conversation(cid)
        except ApiError as e:
            if e.status != 404:
                st.error(str(e))
            open_conversation(None)  # deleted (perhaps in another browser): start a new one
            cid = None
    if conversation and state.pop("chat_restore", False):
        _restore(conversation, served)
    if cid and cid not in {c["id"] for c in listed}:
        listed = [conversation, *listed]
    titles = picker_labels(listed)
    state["chat_open"] = cid or NEW  # follows chat_conv_id, which a turn may have just set
    st.selectbox("Conversation", [NEW, *titles], key="chat_open",
                 format_func=lambda i: titles.get(i, i) if i else "➕ New conversation",
                 on_change=lambda: open_conversation(state["chat_open"]),
                 help="Saved on the server after each answer: a reload or another browser loses nothing.")
    if conversation:
        st.text_input("Title", value=conversation["title"], key=f"chat_title:{cid}", max_chars=200)
        with st.container(horizontal=True):
            st.button("Rename", key="chat_rename", icon=":material/edit:", on_click=_rename, args=(client, cid))
            st.button("Delete", key="chat_delete", icon=":material/delete:", on_click=_delete, args=(client, cid),
                      help="Deletes this conversation and all its branches from the server.")
        st.query_params["conversation"] = cid
    elif "conversation" in st.query_params:
        del st.query_params["conversation"]
    return conversation


# ---------------------------------------------------------------------------- sidebar settings


def sampling_widgets(context: int | None) -> dict:
    """One widget per sampling parameter (ui/format.py SAMPLING); returns their values."""
    values = {}
    for p in SAMPLING:
        key = f"sampling_{p.name}"
        if p.kind == "seed":
            values[p.name] = st.number_input(p.label, min_value=0, value=None, step=1, key=key,
                                             help=p.help, placeholder="random")
        elif p.kind == "stop":
            values[p.name] = st.text_input(p.label, value=p.default, key=key, help=p.help)
        elif p.name == "max_tokens" and context:
            # vLLM refuses max_tokens above the model's context length (a 400 on the first
            # message with a small model), so the slider stops there.
            top = min(int(p.max), int(context))
            if state.get(key, top + 1) > top:  # first run, or a model with less context
                state[key] = min(int(p.default), top)
            values[p.name] = st.slider(p.label, int(p.min), top, step=int(p.step), key=key,
                                       help=f"{p.help} This model's context: {context} tokens.")
        elif p.kind == "int":
            values[p.name] = st.slider(p.label, int(p.min), int(p.max), int(p.default), int(p.step),
                                       key=key, help=p.help)
        else:
            values[p.name] = st.slider(p.label, float(p.min), float(p.max), float(p.default), float(p.step),
                                       key=key, help=p.help)
    return values


def _use_template(client: PlaygroundClient, name: str, variables: list[str]) -> None:
    filled = {v: state.get(f"chat_tpl_var:{name}:{v}", "") for v in variables}
    out = call(client.prompt_render, name, filled)
    if out is None:
        return
    system, text = (out.get("system") or "").strip(), (out.get("text") or "").strip()
    if state.get("chat_tpl_target") == "Message":
        state["chat_input"] = text  # fills the message box; the user sends it
        if system:
            state["chat_system"] = system
    else:
        state["chat_system"] = "\n\n".join(p for p in (system, text) if p)


def template_picker(client: PlaygroundClient) -> None:
    """Templates from the prompt library (GET /api/prompts) as the system prompt or the message;
    nothing at all when the server has none to offer (or cannot list them now: the chat still works)."""
    try:
        templates = client.prompt_templates()
    except ApiError:
        templates = None
    if not templates:
        return
    by_name = {t["name"]: t for t in templates}
    with st.expander("Templates"):
        name = st.selectbox("Template", list(by_name), key="chat_tpl",
                            format_func=lambda n: f"{by_name[n].get('title') or n} ({by_name[n].get('category')})")
        variables = template_variables(by_name[name])
        for v in variables:
            st.text_input(v, key=f"chat_tpl_var:{name}:{v}")
        st.radio("Use as", ("System prompt", "Message"), key="chat_tpl_target", horizontal=True)
        st.button("Use template", key="chat_tpl_use", on_click=_use_template, args=(client, name, variables))


def compare_columns(served: dict, first: dict, n: int) -> list[dict]:
    """Compare mode's columns: the first uses the sidebar's settings, each other one its own model,
    temperature, top-p, max new tokens and system prompt (the rest of the sampling is shared)."""
    models, columns = list(served), [first]
    with st.expander(f"Compare: {n} columns, one message to all", expanded=True):
        boxes = st.columns(n)
        boxes[0].markdown(f"**1** · the sidebar's settings  \n{settings_label(first['model'], first['settings'])}")
        sampling = first["params"]
        for i in range(1, n):
            with boxes[i]:
                model = st.selectbox(f"Model {i + 1}", models, index=i % len(models), key=f"cmp_model_{i}")
                temperature = st.slider("Temperature", 0.0, 2.0, float(sampling["temperature"]), 0.05,
                                        key=f"cmp_temperature_{i}")
                top_p = st.slider("Top-p", 0.0, 1.0, float(sampling["top_p"]), 0.01, key=f"cmp_top_p_{i}")
                max_tokens = st.number_input("Max new tokens", 1, 8192, int(sampling["max_tokens"]),
                                             key=f"cmp_max_tokens_{i}",
                                             help="Kept within the model's context when sent.")
                system = st.text_area("System prompt", value=first["system"], key=f"cmp_system_{i}", height=68)
            params = column_params(sampling, temperature=temperature, top_p=top_p, max_tokens=max_tokens,
                                   context=served[model])
            columns.append(column(model, served[model], system, first["cot"], params))
    return columns


def column(model: str, context: int | None, system: str, cot: bool, params: dict) -> dict:
    """One answering column: who answers, with what (the page's single mode is one column)."""
    return {"model": model, "context": context, "system": system, "cot": cot, "params": params,
            "settings": reply_settings(system, cot, params)}


# ---------------------------------------------------------------------------- the conversation


def _switch(client: PlaygroundClient, conversation_id: str, message_id: str) -> None:
    call(client.update_conversation, conversation_id, active_leaf=message_id)


def _queue(parent_id: str | None, text_key: str | None) -> None:
    """Queue a turn for the next run: an edited message (from `text_key`), or a regeneration."""
    text = state.pop(text_key, "") if text_key else None
    if text_key and not text.strip():
        return
    state["chat_pending"] = {"parent_id": parent_id, "text": text}
    state.pop("chat_editing", None)


def show_text(message: dict) -> None:
    """A message's text; an answer with reasoning before an `Answer:` line shows the reasoning folded."""
    split = split_reasoning(message["content"]) if message["role"] == "assistant" else None
    if split:
        with st.expander("Reasoning"):
            st.markdown(split[0])
        st.markdown(split[1])
    else:
        st.markdown(message["content"])


def _controls(client: PlaygroundClient, conversation: dict, m: dict) -> None:
    """Branch i of n with previous/next, and Edit (a question) or Regenerate (an answer)."""
    cid, sibs = conversation["id"], siblings(conversation["messages"], m)
    i, n = branch_position(conversation["messages"], m)
    with st.container(horizontal=True, vertical_alignment="center"):
        if n > 1:
            st.button("", key=f"chat_prev:{m['id']}", icon=":material/chevron_left:", disabled=i == 1,
                      on_click=_switch, args=(client, cid, sibs[i - 2]["id"] if i > 1 else m["id"]),
                      help="The previous branch")
            st.caption(f"branch {i} of {n}")
            st.button("", key=f"chat_next:{m['id']}", icon=":material/chevron_right:", disabled=i == n,
                      on_click=_switch, args=(client, cid, sibs[i]["id"] if i < n else m["id"]),
                      help="The next branch")
        if m["role"] == "user":
            st.button("Edit", key=f"chat_edit:{m['id']}", icon=":material/edit:", on_click=state.__setitem__,
                      args=("chat_editing", m["id"]), help="Edit and resend: a new branch from here")
        else:
            st.button("Regenerate", key=f"chat_regen:{m['id']}", icon=":material/refresh:", on_click=_queue,
                      args=(m["parent_id"], None), help="A new answer beside this one: a new branch")


def _edit_form(m: dict) -> None:
    key = f"chat_edit_text:{m['id']}"
    st.text_area("Edit the message", value=m["content"], key=key)
    with st.container(horizontal=True):
        st.button("Send", key=f"chat_edit_send:{m['id']}", type="primary", on_click=_queue,
                  args=(m["parent_id"], key))
        st.button("Cancel", key=f"chat_edit_cancel:{m['id']}", on_click=state.pop, args=("chat_editing", None))


def show_conversation(client: PlaygroundClient, conversation: dict | None, compare: bool) -> None:
    """The active path, each message with its branch controls; in compare mode the last question's
    answers side by side, each with a button to continue the conversation from it."""
    path = active_messages(conversation)
    side_by_side = compare_replies(conversation) if compare else []
    for m in path[:-1] if side_by_side else path:
        with st.chat_message(m["role"]):
            if state.get("chat_editing") == m["id"]:
                _edit_form(m)
                continue
            show_text(m)
            if m["role"] == "assistant":
                st.caption(settings_label(m["model"], m["settings"]))
            _controls(client, conversation, m)
    if side_by_side:
        with st.chat_message("assistant"):
            boxes = st.columns(min(len(side_by_side), MAX_COLUMNS))
            for k, m in enumerate(side_by_side):
                with boxes[k % len(boxes)]:
                    st.caption(settings_label(m["model"], m["settings"]))
                    show_text(m)
                    active = m["id"] == path[-1]["id"]
                    st.button("Continuing from this" if active else "Continue from this",
                              key=f"chat_pick:{m['id']}", disabled=active, on_click=_switch,
                              args=(client, conversation["id"], m["id"]))


def show_notes() -> None:
    """What the last turn had to say (a column that failed, exchanges left out), once."""
    for kind, text in state.pop("chat_notes", []):
        (st.warning if kind == "warning" else st.caption)(text)


# ---------------------------------------------------------------------------- a turn


def _save(client: PlaygroundClient, conversation: dict | None, parent_id: str | None, text: str | None,
          done: list[Reply]) -> str:
    """Store the question (if new) and each answer as siblings under it; the first becomes active."""
    if conversation is None:
        first = done[0].column
        conversation = client.create_conversation(title_from(text or ""), {"model": first["model"], **first["settings"]})
    cid = conversation["id"]
    if text is not None:
        parent_id = client.add_message(cid, parent_id=parent_id, role="user", content=text)["id"]
    for k, r in enumerate(done):
        client.add_message(cid, parent_id=parent_id, role="assistant", content=r.text, model=r.column["model"],
                           settings=r.column["settings"], activate=k == 0)
    return cid


def run_turn(client: PlaygroundClient, conversation: dict | None, parent_id: str | None, text: str | None,
             columns: list[dict]) -> None:
    """Ask every column: `text` as a new message under `parent_id` (an edit when that already has a
    reply), or, with no text, a new answer to `parent_id` (regenerate). Then store what came back
    and rerun to show it; nothing is stored when every column failed."""
    history = api_messages(path_to(conversation["messages"] if conversation else [], parent_id))
    if text is not None:
        history.append({"role": "user", "content": text})
        with st.chat_message("user"):
            st.markdown(text)
    with st.chat_message("assistant"):
        if len(columns) == 1:
            slots = [st.empty()]
        else:
            slots = []
            for box, c in zip(st.columns(len(columns)), columns):
                box.caption(settings_label(c["model"], c["settings"]))
                slots.append(box.empty())
        replies = stream_replies(client, history, columns, slots)
    done = [r for r in replies if r.error is None]
    if not done:  # nothing to keep: the question is dropped too, so the next turn starts clean
        return
    try:
        cid = _save(client, conversation, parent_id, text, done)
    except ApiError as e:
        st.error(f"The answer could not be saved: {e}")
        return
    notes = [("warning", f"{r.column['model']} failed: {r.error}") for r in replies if r.error is not None]
    notes += [("caption", left_out_notice(r.column["model"], r.column["context"], r.left_out))
              for r in done if r.left_out]
    state["chat_notes"] = notes
    open_conversation(cid)
    state["chat_restore"] = False
    st.rerun()
