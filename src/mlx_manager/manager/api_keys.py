"""Per-user API keys: created with the full key shown once, listed by prefix, revoked (never reused)."""

from __future__ import annotations

import time

from sqlmodel import Session, col, select

from mlx_manager.db.models import ApiKey, User
from mlx_manager.manager import auth
from mlx_manager.manager.errors import NotFound


def create(session: Session, user: User, name: str) -> tuple[ApiKey, str]:
    """The stored row and the key itself, which is not kept anywhere."""
    assert user.id is not None
    key, prefix, digest = auth.new_api_key()
    row = ApiKey(user_id=user.id, name=name, prefix=prefix, key_hash=digest)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row, key


def list_keys(session: Session, user_id: int | None) -> list[ApiKey]:
    """One user's keys, or everyone's (user_id None), newest first, revoked ones included."""
    query = select(ApiKey).order_by(col(ApiKey.id).desc())
    if user_id is not None:
        query = query.where(ApiKey.user_id == user_id)
    return list(session.exec(query).all())


def revoke(session: Session, key_id: int, by: User) -> ApiKey:
    """Revoke a key of one's own (an admin: anyone's). Someone else's key is 'not found', not 'forbidden'."""
    row = session.get(ApiKey, key_id)
    if row is None or (row.user_id != by.id and not by.is_admin):
        raise NotFound(f"API key {key_id} not found.", "api_key_not_found")
    if row.revoked_at is None:
        row.revoked_at = time.time()
        session.add(row)
        session.commit()
        session.refresh(row)
    return row


def mark_used(session: Session, key_ids: dict[int, float]) -> None:
    """Set last_used_at (no commit: the audit writer batches it with its entries)."""
    for key_id, when in key_ids.items():
        row = session.get(ApiKey, key_id)
        if row is not None and (row.last_used_at or 0) < when:
            row.last_used_at = when
            session.add(row)
