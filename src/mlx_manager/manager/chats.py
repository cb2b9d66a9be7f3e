"""Web UI chats, kept per owner: a user's uid, or None for the anonymous owner of open mode (no accounts yet).

Someone else's chat is "not found", never "forbidden": its existence is not told. Messages are in id order;
regenerating or editing an earlier message removes the later ones first.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_
from sqlmodel import Session, col, delete, select, update

from mlx_manager.db.models import Chat, ChatMessage
from mlx_manager.manager.errors import NotFound

# Characters of context on each side of a search hit, in a listing's snippet.
SNIPPET_CONTEXT = 40


@dataclass(frozen=True)
class ChatListing:
    chat: Chat
    message_count: int
    snippet: str | None = None  # where a search matched inside a message


def _escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _owned(owner: str | None) -> Any:
    # `== None` is how SQLAlchemy writes IS NULL: the anonymous owner.
    return col(Chat.owner) == owner


def _snippet(text: str, needle: str) -> str:
    at = text.lower().find(needle.lower())
    if at < 0:
        return text[: SNIPPET_CONTEXT * 2]
    start, end = max(0, at - SNIPPET_CONTEXT), min(len(text), at + len(needle) + SNIPPET_CONTEXT)
    return ("…" if start else "") + " ".join(text[start:end].split()) + ("…" if end < len(text) else "")


def list_chats(
    session: Session, owner: str | None, query: str | None, limit: int, offset: int
) -> tuple[list[ChatListing], int]:
    """The owner's chats, most recently changed first, with the total; `query` matches titles and message text
    (case-insensitive for ASCII letters, as SQLite's LIKE)."""
    where = [_owned(owner)]
    pattern = f"%{_escape_like(query)}%" if query else None
    if pattern is not None:
        in_messages = select(ChatMessage.chat_id).where(col(ChatMessage.content).like(pattern, escape="\\"))
        where.append(or_(col(Chat.title).like(pattern, escape="\\"), col(Chat.id).in_(in_messages)))
    total = session.exec(select(func.count()).select_from(Chat).where(*where)).one()
    rows = session.exec(
        select(Chat)
        .where(*where)
        .order_by(col(Chat.updated_at).desc(), col(Chat.id).desc())
        .limit(limit)
        .offset(offset)
    ).all()
    ids = [row.id for row in rows]
    counts = dict(
        session.exec(
            select(ChatMessage.chat_id, func.count())
            .where(col(ChatMessage.chat_id).in_(ids))
            .group_by(col(ChatMessage.chat_id))
        ).all()
    )
    listings = []
    for row in rows:
        snippet = None
        if query and pattern is not None and query.lower() not in row.title.lower():
            hit = session.exec(
                select(ChatMessage.content)
                .where(ChatMessage.chat_id == row.id, col(ChatMessage.content).like(pattern, escape="\\"))
                .order_by(col(ChatMessage.id))
            ).first()
            snippet = _snippet(hit, query) if hit else None
        listings.append(ChatListing(row, counts.get(row.id or 0, 0), snippet))
    return listings, total


def get_chat(session: Session, owner: str | None, chat_id: int) -> Chat:
    row = session.get(Chat, chat_id)
    if row is None or row.owner != owner:
        raise NotFound(f"Chat {chat_id} not found.", "chat_not_found")
    return row


def messages(session: Session, chat_id: int) -> list[ChatMessage]:
    query = select(ChatMessage).where(ChatMessage.chat_id == chat_id).order_by(col(ChatMessage.id))
    return list(session.exec(query).all())


def create(session: Session, owner: str | None, fields: dict[str, Any]) -> Chat:
    row = Chat(owner=owner, **fields)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def update_chat(session: Session, owner: str | None, chat_id: int, changes: dict[str, Any]) -> Chat:
    row = get_chat(session, owner, chat_id)
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at = time.time()
    session.add(row)
    session.commit()
    session.refresh(row)
    return row


def delete_chat(session: Session, owner: str | None, chat_id: int) -> None:
    row = get_chat(session, owner, chat_id)
    session.exec(delete(ChatMessage).where(col(ChatMessage.chat_id) == chat_id))
    session.delete(row)
    session.commit()


def _touch(session: Session, chat: Chat) -> None:
    chat.updated_at = time.time()
    session.add(chat)


def add_message(session: Session, owner: str | None, chat_id: int, fields: dict[str, Any]) -> ChatMessage:
    chat = get_chat(session, owner, chat_id)
    row = ChatMessage(chat_id=chat_id, **fields)
    session.add(row)
    _touch(session, chat)
    session.commit()
    session.refresh(row)
    return row


def _message(session: Session, chat_id: int, message_id: int) -> ChatMessage:
    row = session.get(ChatMessage, message_id)
    if row is None or row.chat_id != chat_id:
        raise NotFound(f"Message {message_id} not found in chat {chat_id}.", "message_not_found")
    return row


def update_message(
    session: Session, owner: str | None, chat_id: int, message_id: int, changes: dict[str, Any]
) -> ChatMessage:
    chat = get_chat(session, owner, chat_id)
    row = _message(session, chat_id, message_id)
    for name, value in changes.items():
        setattr(row, name, value)
    row.updated_at = time.time()
    session.add(row)
    _touch(session, chat)
    session.commit()
    session.refresh(row)
    return row


def delete_messages(session: Session, owner: str | None, chat_id: int, message_id: int, and_later: bool) -> None:
    """Remove the message, and with `and_later` every later one of the chat too."""
    chat = get_chat(session, owner, chat_id)
    _message(session, chat_id, message_id)
    later = col(ChatMessage.id) >= message_id if and_later else col(ChatMessage.id) == message_id
    session.exec(delete(ChatMessage).where(col(ChatMessage.chat_id) == chat_id, later))
    _touch(session, chat)
    session.commit()


def adopt_anonymous(session: Session, uid: str) -> None:
    """The first account takes over the chats of open mode (no commit: the caller's transaction)."""
    session.exec(update(Chat).where(col(Chat.owner).is_(None)).values(owner=uid))


def delete_owned(session: Session, uid: str) -> None:
    """A deleted user's chats go with it (no commit: the caller's transaction)."""
    owned = select(Chat.id).where(Chat.owner == uid)
    session.exec(delete(ChatMessage).where(col(ChatMessage.chat_id).in_(owned)))
    session.exec(delete(Chat).where(col(Chat.owner) == uid))
