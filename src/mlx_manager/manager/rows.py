"""One row by id, for the manager's services: a missing row is a NotFound (a 404 problem) that names it."""

from __future__ import annotations

from typing import TypeVar

from sqlmodel import Session, SQLModel

from mlx_manager.manager.errors import NotFound

T = TypeVar("T", bound=SQLModel)


def get_row(session: Session, table: type[T], row_id: int, message: str, code: str | None = None) -> T:
    row = session.get(table, row_id)
    if row is None:
        raise NotFound(message, code)
    return row
