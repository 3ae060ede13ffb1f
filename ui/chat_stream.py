"""Compare mode's parallel streaming: every column's answer streams at once, each into its own placeholder.

Each column's stream is consumed by a worker thread of its own, into a plain `Reply` object; only
the script's thread draws, redrawing every column's placeholder (an `st.empty()`) about 20 times a
second until all the threads are done. Streamlit does not support calling `st.*` from any thread
but the script's (its docs on multithreading: a thread can be handed the script's context, but
that is unsupported), and this way needs none of it. `httpx.Client`, inside PlaygroundClient, may
be shared between threads. No Streamlit import here: a placeholder is anything with `markdown`
and `error`, so the tests can check that the streams really run at the same time.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from ui.client import ApiError, PlaygroundClient
from ui.format import without_oldest_exchange
from ui.format_chat import request_messages, system_prompt


@dataclass
class Reply:
    """One column's answer as its worker thread fills it in (the script's thread only reads it)."""

    column: dict
    text: str = ""
    error: str | None = None
    left_out: int = 0
    crash: BaseException | None = None


def _consume(client: PlaygroundClient, messages: list[dict], reply: Reply) -> None:
    """A worker thread: stream one column's answer into `reply`, leaving out the oldest exchanges
    while the conversation is too long for the model. No Streamlit calls here."""
    c = reply.column
    try:
        while True:
            try:
                text = ""
                for piece in client.chat_stream(c["model"], messages, **c["params"]):
                    text += piece
                    reply.text = text
                return
            except ApiError as e:
                shorter = without_oldest_exchange(messages) if e.context_overflow else None
                if shorter is None:
                    reply.error = str(e)
                    return
                messages, reply.left_out = shorter, reply.left_out + 1
    except Exception as e:  # noqa: BLE001 - a bug: re-raised on the script's thread, where Streamlit shows it
        reply.crash = e


def stream_replies(client: PlaygroundClient, history: list[dict], columns: list[dict], slots: list) -> list[Reply]:
    """Stream every column's answer at once, each into its own placeholder; returns them when all are done."""
    replies = [Reply(c) for c in columns]
    threads = [threading.Thread(target=_consume, daemon=True, name=f"chat-column-{i}", args=(
        client, request_messages(system_prompt(c["system"], c["cot"]), history), r))
        for i, (c, r) in enumerate(zip(columns, replies))]
    for t in threads:
        t.start()
    drawn = [None] * len(replies)
    while any(t.is_alive() for t in threads):
        for i, (slot, r) in enumerate(zip(slots, replies)):
            if r.text != drawn[i]:
                slot.markdown(r.text + "▌")
                drawn[i] = r.text
        time.sleep(0.05)
    for slot, r in zip(slots, replies):
        if r.crash is not None:
            raise r.crash
        if r.error is not None:
            slot.error(r.error)
        else:
            slot.markdown(r.text)
    return replies
