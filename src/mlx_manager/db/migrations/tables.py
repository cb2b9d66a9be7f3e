"""What the migrations repeat, written once: columns of one nullability in table order, a table with its primary
key and its indexes as autogenerate names them (ix_<table>_<column>), and dropping it again.

Migrations are history: a change here must leave every revision's schema exactly as it was."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op


def required(**columns: Any) -> list[sa.Column[Any]]:
    """NOT NULL columns, in the order given: name=SQLAlchemy type class."""
    return [sa.Column(name, kind(), nullable=False) for name, kind in columns.items()]


def optional(**columns: Any) -> list[sa.Column[Any]]:
    """Nullable columns, in the order given."""
    return [sa.Column(name, kind(), nullable=True) for name, kind in columns.items()]


def create(
    table: str,
    *parts: sa.Column[Any] | sa.Constraint,
    key: str = "id",
    indexes: Sequence[str] = (),
    unique: Sequence[str] = (),
    **kwargs: Any,
) -> None:
    """The table (its primary key after the other constraints), then an index on each column of `unique` and of
    `indexes`, in that order."""
    op.create_table(table, *parts, sa.PrimaryKeyConstraint(key), **kwargs)
    if unique or indexes:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in (*unique, *indexes):
                batch_op.create_index(batch_op.f(f"ix_{table}_{column}"), [column], unique=column in unique)


def drop(table: str, indexes: Sequence[str] = ()) -> None:
    """Undo `create`: its indexes (all of them, unique first, as created) in the reverse order, then the table."""
    if indexes:
        with op.batch_alter_table(table, schema=None) as batch_op:
            for column in reversed(indexes):
                batch_op.drop_index(batch_op.f(f"ix_{table}_{column}"))
    op.drop_table(table)
