"""The Chat page's part of PlaygroundClient: saved conversations and the prompt templates it can use.

A mixin, so ui/client.py stays one readable file: `PlaygroundClient` lists it among its bases and
supplies `_request` (which raises `ApiError` for any failure). The model's answers themselves
stream through `PlaygroundClient.chat_stream` (/v1/chat/completions); these routes only store
them (services/conversations_api.py) and fill templates (services/prompts_api.py).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

if TYPE_CHECKING:
    from collections.abc import Callable


def _id(value: str) -> str:
    return quote(str(value), safe="")


class ChatClientMixin:
    """/api/conversations (a tree of messages per conversation) and the templates of /api/prompts."""

    if TYPE_CHECKING:
        _request: Callable[..., Any]

    # ---- conversations ---------------------------------------------------------------

    def conversations(self) -> list[dict]:
        """Every saved conversation, most recently changed first: id, title, created, updated, messages."""
        return self._request("GET", "/api/conversations")

    def conversation(self, conversation_id: str) -> dict:
        """One conversation: `messages` (the whole tree, oldest first), `active_leaf`, `active_path` (ids)."""
        return self._request("GET", f"/api/conversations/{_id(conversation_id)}")

    def create_conversation(self, title: str | None = None, settings: dict | None = None) -> dict:
        """A new, empty conversation, as `conversation` returns it."""
        return self._request("POST", "/api/conversations", json={"title": title, "settings": settings})

    def update_conversation(self, conversation_id: str, *, title: str | None = None,
                            active_leaf: str | None = None, settings: dict | None = None) -> dict:
        """Rename, switch branch (any message of it: one with replies stands for its newest leaf), or
        replace the settings. Returns the conversation."""
        body = {k: v for k, v in (("title", title), ("active_leaf", active_leaf), ("settings", settings))
                if v is not None}
        return self._request("PATCH", f"/api/conversations/{_id(conversation_id)}", json=body)

    def delete_conversation(self, conversation_id: str) -> dict:
        return self._request("DELETE", f"/api/conversations/{_id(conversation_id)}")

    def add_message(self, conversation_id: str, *, parent_id: str | None, role: str, content: str,
                    model: str | None = None, settings: dict | None = None, activate: bool = True) -> dict:
        """Store a message under `parent_id` (None: a first message); beside an existing reply it is a
        new branch. Returns the message and the conversation's `active_leaf`."""
        body = {"parent_id": parent_id, "role": role, "content": content, "model": model,
                "settings": settings, "activate": activate}
        return self._request("POST", f"/api/conversations/{_id(conversation_id)}/messages", json=body)
