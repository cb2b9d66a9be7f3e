"""Migration 0004 on a database of the previous version: the chats tables arrive empty beside what was there, match
the models (nothing for autogenerate to add), never reuse ids, and go away on the way back down to 0003."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text
from sqlmodel import Session, SQLModel

from mlx_manager.db import models
from mlx_manager.db.migrate import downgrade, upgrade
from mlx_manager.manager import chats


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")  # 0003's lower(username) index
def test_upgrading_from_0003_adds_chats_that_match_the_models(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0003")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO users (username, uid, password_hash, is_admin, is_approved, created_at)"
                " VALUES ('ann', 'u-ann', 'h', 1, 1, 0)"
            )
        )
    upgrade(url)
    assert {"chats", "chat_messages"} <= set(inspect(engine).get_table_names())
    with engine.connect() as conn:
        drift = compare_metadata(MigrationContext.configure(conn), SQLModel.metadata)
        assert not [d for d in drift if "chat" in str(d)], drift
        assert conn.execute(text("SELECT username FROM users")).scalar() == "ann"

    with Session(engine) as session:
        first = chats.create(session, "u-ann", {"title": "one"})
        chats.add_message(session, "u-ann", first.id or 0, {"role": "user", "content": "hi"})
        chats.delete_chat(session, "u-ann", first.id or 0)
        second = chats.create(session, "u-ann", {"title": "two"})
        assert second.id == (first.id or 0) + 1  # AUTOINCREMENT: a stale link never opens a newer chat
        assert session.get(models.Chat, second.id) is not None

    downgrade(url, "0003")
    tables = set(inspect(create_engine(url)).get_table_names())
    assert "chats" not in tables and "chat_messages" not in tables and "users" in tables
