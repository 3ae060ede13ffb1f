"""Saved chat conversations over HTTP: what the Chat page keeps, so a reload or another browser loses nothing.

    GET    /api/conversations                               every conversation, most recently changed first: id,
                                                            title, created, updated, messages (a count)
    POST   /api/conversations                               {"title", "settings"} (both optional) -> 201 a new,
                                                            empty one
    GET    /api/conversations/{id}                          the conversation: its message tree (`messages`),
                                                            `active_leaf` and `active_path` (the ids from the first
                                                            message to it)
    PATCH  /api/conversations/{id}                          {"title", "active_leaf", "settings"} (any of them):
                                                            rename, switch branch (a message with replies stands for
                                                            its newest leaf), replace the settings
    DELETE /api/conversations/{id}                          delete it and all its messages
    POST   /api/conversations/{id}/messages                 {"parent_id", "role", "content", "model", "settings",
                                                            "activate"} -> 201 the message, under parent_id (null: a
                                                            first message); beside an existing reply, a new branch
    GET    /api/conversations/{id}/messages/{mid}/branches  the message and its siblings, with its `index` among
                                                            them
    GET    /api/conversations/{id}/export                   ?format=json|md: the active path

({id} is the conversation_id, {mid} a message_id.)

The models' answers are not generated here: the Chat page streams them from `/v1/chat/completions`
and stores each one with POST .../messages, with the model and settings that produced it. An
unknown conversation or message is a 404 naming `conversation_id` (or the field that held the
message id: `parent_id`, `active_leaf`, `message_id`); bad input a 400 naming its field. Storage:
services/conversations.py (SQLite in `workspace/chat/`).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse
from pydantic import BaseModel, ConfigDict, Field

from services import conversations as store
from services.data_api import error_response
from services.jobs import workspace
from services.llm import openai_error
from training.errors import UserError

router = APIRouter()


class ConversationCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, description='what the list shows; default "New conversation"')
    settings: dict | None = Field(None, description="the settings it was started with (model, system prompt, ...)")


class ConversationUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    title: str | None = Field(None, description="a new title")
    active_leaf: str | None = Field(None, description="a message to follow: switches to its branch")
    settings: dict | None = Field(None, description="replaces the conversation's settings")


class MessageCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    parent_id: str | None = Field(description="the message this one answers or follows; null: a first message")
    role: str = Field(description='"user", "assistant" or "system"')
    content: str = Field(description="the text (a user message may not be blank)")
    model: str | None = Field(None, description="for an answer: the model that wrote it")
    settings: dict | None = Field(None, description="for an answer: the settings used (sampling, system prompt)")
    activate: bool = Field(True, description="make it the active leaf (false: store a branch beside it)")


async def _call(fn, *args, status: int = 200, **kwargs):
    """Run a store call off the event loop, with a UserError as its 4xx (404 for `field: no ...`)."""
    try:
        result = await asyncio.to_thread(fn, *args, **kwargs)
    except UserError as e:
        return error_response(e)
    return JSONResponse(result, status_code=status) if status != 200 else result


@router.get("/conversations")
async def list_conversations(request: Request):
    """Every conversation, most recently changed first: id, title, created, updated, messages (a count)."""
    return await _call(store.list_conversations, workspace(request))


@router.post("/conversations", status_code=201)
async def create_conversation(req: ConversationCreate, request: Request):
    """A new, empty conversation (201), as GET returns it."""
    return await _call(store.create, workspace(request), req.title, req.settings, status=201)


@router.get("/conversations/{conversation_id}")
async def get_conversation(conversation_id: str, request: Request):
    """One conversation: its message tree (`messages`, oldest first), `active_leaf` and `active_path`."""
    return await _call(store.get, workspace(request), conversation_id)


@router.patch("/conversations/{conversation_id}")
async def update_conversation(conversation_id: str, req: ConversationUpdate, request: Request):
    """Rename, switch branch (`active_leaf`: a message with replies stands for its newest leaf), or replace
    the settings; any of the three, in one transaction."""
    return await _call(store.update, workspace(request), conversation_id, title=req.title,
                       active_leaf=req.active_leaf, settings=req.settings)


@router.delete("/conversations/{conversation_id}")
async def delete_conversation(conversation_id: str, request: Request):
    """Delete a conversation and all its messages."""
    return await _call(store.delete, workspace(request), conversation_id)


@router.post("/conversations/{conversation_id}/messages", status_code=201)
async def add_message(conversation_id: str, req: MessageCreate, request: Request):
    """Append a message under `parent_id` (201); under a parent that already has a reply, a new branch."""
    return await _call(store.add_message, workspace(request), conversation_id, parent_id=req.parent_id,
                       role=req.role, content=req.content, model=req.model, settings=req.settings,
                       activate=req.activate, status=201)


@router.get("/conversations/{conversation_id}/messages/{message_id}/branches")
async def branches(conversation_id: str, message_id: str, request: Request):
    """The branches at a message: it and its siblings, oldest first, with its `index` among them."""
    return await _call(store.branches, workspace(request), conversation_id, message_id)


@router.get("/conversations/{conversation_id}/export")
async def export(conversation_id: str, request: Request, format: str = Query("json")):
    """The active path as JSON (`format=json`) or as a Markdown document (`format=md`)."""
    if format not in ("json", "md"):
        return openai_error(400, f"format: 'json' or 'md', got {format!r}", "format")
    if format == "json":
        return await _call(store.export_json, workspace(request), conversation_id)
    text = await _call(store.export_markdown, workspace(request), conversation_id)
    if not isinstance(text, str):  # the 404 of an unknown conversation
        return text
    return PlainTextResponse(text, media_type="text/markdown",
                             headers={"Content-Disposition": f'attachment; filename="chat-{conversation_id}.md"'})
