"""Pure helpers of the Chat page (no network, no Streamlit): the conversation tree as the API
returns it, the chain-of-thought instruction and its answer, compare columns, labels and export.

A conversation from GET /api/conversations/{id} is `{"messages": [...], "active_path": [ids],
"active_leaf", ...}`, each message `{"id", "parent_id", "role", "content", "model", "settings"}`.
Editing or regenerating a turn adds a sibling under the same parent, so "the conversation" on
screen is one path through that tree (services/conversations.py explains the store).
"""

from __future__ import annotations

import re
from typing import Any

COT_INSTRUCTION = ("Think step by step, writing out your reasoning. Then give the final answer on a "
                   "line of its own that starts with 'Answer:'.")
# The last line that starts with "Answer:" (also **Answer:** or "answer:"), as the instruction asks.
_ANSWER = re.compile(r"^[ \t]*(?:\*\*)?answer:(?:\*\*)?[ \t]*", re.IGNORECASE | re.MULTILINE)
MAX_COLUMNS = 4


# ---------------------------------------------------------------------------- the tree


def active_messages(conversation: dict | None) -> list[dict]:
    """The messages on the conversation's active path, first to last ([] for none)."""
    if not conversation:
        return []
    by_id = {m["id"]: m for m in conversation["messages"]}
    return [by_id[i] for i in conversation["active_path"] if i in by_id]


def path_to(messages: list[dict], message_id: str | None) -> list[dict]:
    """The messages from a first message down to `message_id`, in order ([] for None).

    >>> ms = [{"id": "a", "parent_id": None}, {"id": "b", "parent_id": "a"}, {"id": "c", "parent_id": "a"}]
    >>> [m["id"] for m in path_to(ms, "c")], path_to(ms, None)
    (['a', 'c'], [])
    """
    by_id = {m["id"]: m for m in messages}
    path = []
    while message_id is not None and message_id in by_id:
        path.append(by_id[message_id])
        message_id = by_id[message_id]["parent_id"]
    return path[::-1]


def siblings(messages: list[dict], message: dict) -> list[dict]:
    """`message` and the other messages under the same parent (its branches), oldest first."""
    return [m for m in messages if m["parent_id"] == message["parent_id"]]


def branch_position(messages: list[dict], message: dict) -> tuple[int, int]:
    """(1-based place, count) of `message` among its siblings: "branch 2 of 3".

    >>> ms = [{"id": "a", "parent_id": None}, {"id": "b", "parent_id": "a"}, {"id": "c", "parent_id": "a"}]
    >>> branch_position(ms, ms[2]), branch_position(ms, ms[0])
    ((2, 2), (1, 1))
    """
    ids = [m["id"] for m in siblings(messages, message)]
    return ids.index(message["id"]) + 1, len(ids)


def compare_replies(conversation: dict | None) -> list[dict]:
    """The answers to the last message on the active path's question, when there are several
    (a compare turn, or regenerated answers): what compare mode shows side by side; else []."""
    path = active_messages(conversation)
    if not path or path[-1]["role"] != "assistant":
        return []
    answers = [m for m in siblings(conversation["messages"], path[-1]) if m["role"] == "assistant"]
    return answers if len(answers) > 1 else []


def api_messages(path: list[dict]) -> list[dict]:
    """The user and assistant turns of a path as the chat API takes them (role and content only)."""
    return [{"role": m["role"], "content": m["content"]} for m in path if m["role"] in ("user", "assistant")]


def export_rows(path: list[dict]) -> list[dict]:
    """The path as exported (and kept in `chat_messages`): role and content, and each answer's model."""
    return [{"role": m["role"], "content": m["content"]} | ({"model": m["model"]} if m.get("model") else {})
            for m in path]


def picker_labels(conversations: list[dict]) -> dict[str, str]:
    """id -> what the conversation list shows: the title and when it last changed, plus the start of
    the id where that is not unique (Streamlit tells options apart by their label).

    >>> picker_labels([{"id": "abc123", "title": "Hi", "updated": "2026-01-02T03:04:05.678+00:00"},
    ...                {"id": "def456", "title": "Hi", "updated": "2026-01-02T03:04:09.000+00:00"}])
    {'abc123': 'Hi · 2026-01-02 03:04 · abc123', 'def456': 'Hi · 2026-01-02 03:04 · def456'}
    """
    labels = {c["id"]: f"{c['title']} · {c['updated'][:16].replace('T', ' ')}" for c in conversations}
    seen: dict[str, int] = {}
    for label in labels.values():
        seen[label] = seen.get(label, 0) + 1
    return {i: f"{label} · {i[:6]}" if seen[label] > 1 else label for i, label in labels.items()}


def title_from(text: str, limit: int = 60) -> str:
    """A conversation's title from its first message: the first line, cut at a word near `limit`.

    >>> title_from("Tell me a story about a dragon who learns to bake bread in a small village", 40)
    'Tell me a story about a dragon who…'
    """
    line = next((s.strip() for s in text.splitlines() if s.strip()), "") or "New conversation"
    if len(line) <= limit:
        return line
    cut = line[:limit].rsplit(" ", 1)[0] if " " in line[:limit] else line[:limit]
    return cut.rstrip(" ,.;:") + "…"


# ---------------------------------------------------------------------------- chain of thought


def system_prompt(system: str, cot: bool) -> str:
    """The system prompt sent: the user's, plus the chain-of-thought instruction when it is on.

    >>> system_prompt("Be brief.", True).endswith("starts with 'Answer:'.")
    True
    >>> system_prompt("  ", False)
    ''
    """
    parts = [p for p in (system.strip(), COT_INSTRUCTION if cot else "") if p]
    return "\n\n".join(parts)


def split_reasoning(text: str) -> tuple[str, str] | None:
    """(reasoning, answer) of a reply with an `Answer:` line and some reasoning before it; None otherwise.

    >>> split_reasoning("2 apples plus 3 apples.\\nThat makes 5.\\nAnswer: 5")
    ('2 apples plus 3 apples.\\nThat makes 5.', '5')
    >>> split_reasoning("Answer: 5") is None, split_reasoning("just text") is None
    (True, True)
    """
    found = list(_ANSWER.finditer(text))
    if not found:
        return None
    reasoning, answer = text[:found[-1].start()].strip(), text[found[-1].end():].strip()
    return (reasoning, answer) if reasoning else None


# ---------------------------------------------------------------------------- columns


def column_params(params: dict[str, Any], *, temperature: float, top_p: float, max_tokens: int,
                  context: int | None) -> dict[str, Any]:
    """A compare column's request fields: the shared sampling fields with its own temperature,
    top-p and max new tokens, the last kept within its model's context (vLLM refuses more).

    >>> column_params({"top_k": -1, "temperature": 0.7}, temperature=0.0, top_p=0.9, max_tokens=500, context=64)
    {'top_k': -1, 'temperature': 0.0, 'top_p': 0.9, 'max_tokens': 64}
    """
    limit = int(context) if context else max_tokens
    return params | {"temperature": float(temperature), "top_p": float(top_p), "max_tokens": min(int(max_tokens), limit)}


def reply_settings(system: str, cot: bool, params: dict[str, Any]) -> dict[str, Any]:
    """What is stored with an answer besides its model: the settings that produced it."""
    return {"system_prompt": system, "cot": bool(cot), "sampling": dict(params)}


def settings_label(model: str | None, settings: dict | None) -> str:
    """One line naming a model and its settings, above a compare column or under an answer.

    >>> settings_label("m", {"system_prompt": "Be brief.", "cot": True,
    ...                      "sampling": {"temperature": 0.2, "top_p": 1.0, "max_tokens": 64}})
    'm · temperature 0.2 · top-p 1 · 64 tokens · chain of thought · system: “Be brief.”'
    """
    settings = settings or {}
    sampling = settings.get("sampling") or {}
    parts = [model or "?"]
    if "temperature" in sampling:
        parts.append(f"temperature {sampling['temperature']:g}")
    if "top_p" in sampling:
        parts.append(f"top-p {sampling['top_p']:g}")
    if "max_tokens" in sampling:
        parts.append(f"{sampling['max_tokens']} tokens")
    if settings.get("cot"):
        parts.append("chain of thought")
    system = (settings.get("system_prompt") or "").strip()
    if system:
        parts.append(f"system: “{system if len(system) <= 40 else system[:39] + '…'}”")
    return " · ".join(parts)


def request_messages(system: str, history: list[dict]) -> list[dict]:
    """The messages of one request: the system prompt (when there is one), then the turns."""
    return ([{"role": "system", "content": system}] if system.strip() else []) + history


def left_out_notice(model: str, context: int | None, left_out: int) -> str:
    """What the page says when the oldest exchanges had to be left out of a request."""
    oldest = "the oldest exchange was" if left_out == 1 else f"the oldest {left_out} exchanges were"
    return (f"The whole conversation no longer fits {model}'s context ({context or '?'} tokens): "
            f"{oldest} left out of this request.")


def template_variables(template: dict) -> list[str]:
    """A template's variable names, whether the list holds names or {"name": ...} rows."""
    out = []
    for v in template.get("variables") or []:
        name = v if isinstance(v, str) else (v or {}).get("name")
        if name:
            out.append(str(name))
    return out
