"""Rows for the manager's services: one by id (a missing row is a NotFound, a 404 problem that names it), and saving
one."""

from __future__ import annotations

from typing import Any, TypeVar

from sqlmodel import Session, SQLModel

from mlx_manager.manager.errors import NotFound

T = TypeVar("T", bound=SQLModel)


def get_row(session: Session, table: type[T], row_id: int, message: str, code: str | None = None) -> T:
    row = session.get(table, row_id)
    if row is None:
        raise NotFound(message, code)
    return row


def save(session: Session, row: T, **changes: Any) -> T:
    """Apply `changes` to `row`, commit it and return it as the database now has it (ids and defaults filled)."""
    for key, value in changes.items():
        setattr(row, key, value)
    session.add(row)
    session.commit()
    session.refresh(row)
    return row
