"""The database: migrations from empty and back, WAL mode, and the response store."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlalchemy import create_engine, inspect

from mlx_manager.db.migrate import downgrade, upgrade
from mlx_manager.db.models import StoredResponse
from mlx_manager.db.session import open_database
from mlx_manager.manager.responses_store import ResponseStore


def test_migrations_build_the_schema_from_empty_and_tear_it_down(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    tables = set(inspect(create_engine(url)).get_table_names())
    assert {"responses", "alembic_version"} <= tables
    downgrade(url, "base")
    assert "responses" not in inspect(create_engine(url)).get_table_names()
    upgrade(url)  # and forward again
    assert "responses" in inspect(create_engine(url)).get_table_names()


def test_open_database_uses_wal_and_is_idempotent(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "db.sqlite"
    engine = open_database(path)
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    open_database(path)  # a second start finds the schema current


def test_the_response_store_saves_fetches_and_deletes(tmp_path: Path) -> None:
    store = ResponseStore(open_database(tmp_path / "db.sqlite"))
    item = StoredResponse(id="resp_1", created_at=1, model="m", input_items=[{"type": "message"}], response={"a": 1})

    async def run() -> None:
        await store.save(item)
        got = await store.get("resp_1")
        assert got is not None and got.input_items == [{"type": "message"}] and got.response == {"a": 1}
        assert await store.delete("resp_1") and not await store.delete("resp_1")
        assert await store.get("resp_1") is None

    asyncio.run(run())


def test_upgrading_from_the_previous_revision_keeps_existing_rows(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url, "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO responses (id, created_at, model, input_items, response) VALUES ('r1', 1, 'm', '[]', '{}')"
        )
    upgrade(url)
    tables = set(inspect(create_engine(url)).get_table_names())
    expected = {"users", "api_keys", "audit_log", "downloads", "profiles", "settings", "credentials", "backends"}
    assert expected | {"routing_rules"} <= tables
    with create_engine(url).connect() as conn:
        assert conn.exec_driver_sql("SELECT id FROM responses").scalar() == "r1"
