"""/api/chats: the web UI's conversations, each its owner's alone (another user's chat is a 404). Signed in, the
owner is the user; in open mode (no account exists, no server key required) an anonymous caller owns the chats it
makes, and the first account registered takes them over."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from mlx_manager.api.manager.chat_schemas import (
    ChatCreate,
    ChatDetail,
    ChatPage,
    ChatPublic,
    ChatSummary,
    ChatUpdate,
    MessageCreate,
    MessagePublic,
    MessageUpdate,
)
from mlx_manager.api.manager.deps import ManagerDep, SessionDep, current_user
from mlx_manager.api.manager.fields import Count, RowId
from mlx_manager.api.manager.schemas import download, problems
from mlx_manager.db.models import Chat, ChatMessage
from mlx_manager.manager import chat_export, chats
from mlx_manager.manager.auth import presented_credential

router = APIRouter(prefix="/chats", tags=["chats"], responses=problems(401, 404))
# As the other /api routes declare them (for the OpenAPI); optional here, for open mode.
_bearer = HTTPBearer(auto_error=False, description="A session token from POST /api/auth/login, or an API key.")
_x_api_key = APIKeyHeader(name="x-api-key", auto_error=False, description="An API key.")


class Owner:
    """Whose chats a request sees: a user's uid, or None for the anonymous owner of open mode."""

    def __init__(self, uid: str | None) -> None:
        self.uid = uid


def chat_owner(
    request: Request,
    manager: ManagerDep,
    session: SessionDep,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    api_key: Annotated[str | None, Depends(_x_api_key)],
) -> Owner:
    token = presented_credential(request.headers.get("authorization"), request.headers.get("x-api-key"))
    required = manager.auth.server_key is not None or manager.settings.current.require_api_key
    if token is None and not required and not manager.auth.has_users():
        return Owner(None)
    return Owner(current_user(request, manager, session, bearer, api_key).uid)


OwnerDep = Annotated[Owner, Depends(chat_owner)]


def _public(row: Chat, count: int) -> ChatPublic:
    return ChatPublic.model_validate({**row.model_dump(), "message_count": count})


def _message(row: ChatMessage) -> MessagePublic:
    return MessagePublic.model_validate(row.model_dump())


@router.get("", responses=problems(400))
def list_chats(
    owner: OwnerDep,
    session: SessionDep,
    q: Annotated[str | None, Query(max_length=200, description="Words in a title or a message.")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    offset: Annotated[Count, Query()] = 0,
) -> ChatPage:
    """The caller's chats, most recently changed first."""
    listings, total = chats.list_chats(session, owner.uid, q.strip() if q else None, limit, offset)
    items = [
        ChatSummary(**_public(item.chat, item.message_count).model_dump(), snippet=item.snippet) for item in listings
    ]
    return ChatPage(items=items, total=total, limit=limit, offset=offset)


@router.post("", status_code=201, responses=problems(400))
def create_chat(body: ChatCreate, owner: OwnerDep, session: SessionDep) -> ChatPublic:
    fields = {**body.model_dump(exclude={"options"}), "options": body.options.model_dump(exclude_none=True)}
    return _public(chats.create(session, owner.uid, fields), 0)


@router.get("/{chat_id}")
def get_chat(chat_id: RowId, owner: OwnerDep, session: SessionDep) -> ChatDetail:
    """The chat with its messages, oldest first."""
    row = chats.get_chat(session, owner.uid, chat_id)
    rows = chats.messages(session, chat_id)
    return ChatDetail(**_public(row, len(rows)).model_dump(), messages=[_message(m) for m in rows])


@router.patch("/{chat_id}", responses=problems(400))
def update_chat(chat_id: RowId, body: ChatUpdate, owner: OwnerDep, session: SessionDep) -> ChatPublic:
    """Rename it, or change the model or options it chats with."""
    changes = body.model_dump(exclude_unset=True, exclude={"options"})
    if body.options is not None:
        changes["options"] = body.options.model_dump(exclude_none=True)
    row = chats.update_chat(session, owner.uid, chat_id, changes)
    return _public(row, len(chats.messages(session, chat_id)))


@router.delete("/{chat_id}", status_code=204)
def delete_chat(chat_id: RowId, owner: OwnerDep, session: SessionDep) -> Response:
    chats.delete_chat(session, owner.uid, chat_id)
    return Response(status_code=204)


@router.post("/{chat_id}/messages", status_code=201, responses=problems(400))
def add_message(chat_id: RowId, body: MessageCreate, owner: OwnerDep, session: SessionDep) -> MessagePublic:
    """Append a message (a reply being streamed: status `streaming`, then PATCHed as it grows)."""
    return _message(chats.add_message(session, owner.uid, chat_id, body.model_dump(mode="json")))


@router.patch("/{chat_id}/messages/{message_id}", responses=problems(400))
def update_message(
    chat_id: RowId, message_id: RowId, body: MessageUpdate, owner: OwnerDep, session: SessionDep
) -> MessagePublic:
    """Change the fields sent: a streamed reply saved as it grows, an edited message before it is sent again."""
    changes = body.model_dump(mode="json", exclude_unset=True)
    return _message(chats.update_message(session, owner.uid, chat_id, message_id, changes))


@router.delete("/{chat_id}/messages/{message_id}", status_code=204)
def delete_message(
    chat_id: RowId,
    message_id: RowId,
    owner: OwnerDep,
    session: SessionDep,
    and_later: Annotated[bool, Query(description="Every later message of the chat too (to regenerate).")] = False,
) -> Response:
    """Remove a message (one whose send failed), or with `and_later` it and the rest of the chat."""
    chats.delete_messages(session, owner.uid, chat_id, message_id, and_later)
    return Response(status_code=204)


def _filename(title: str, ext: str) -> str:
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", title).strip("-.")[:60] or "chat"
    return f"{stem}.{ext}"


@router.get(
    "/{chat_id}/export",
    response_model=None,
    responses=download("The chat as a download.", "text/markdown", {"$ref": "#/components/schemas/ChatDetail"}),
)
def export_chat(
    chat_id: RowId, owner: OwnerDep, session: SessionDep, format: Literal["markdown", "json"] = "markdown"
) -> Response:
    """The chat as Markdown (images inline as data: URLs) or as JSON (what GET /api/chats/{id} answers)."""
    row = chats.get_chat(session, owner.uid, chat_id)
    rows = chats.messages(session, chat_id)
    if format == "json":
        body = ChatDetail(**_public(row, len(rows)).model_dump(), messages=[_message(m) for m in rows])
        content, media, ext = body.model_dump_json(indent=2), "application/json", "json"
    else:
        content, media, ext = chat_export.markdown(row, rows), "text/markdown; charset=utf-8", "md"
    disposition = f'attachment; filename="{_filename(row.title, ext)}"'
    return Response(content, media_type=media, headers={"Content-Disposition": disposition})
