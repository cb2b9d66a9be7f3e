"""One SQLAlchemy engine per database file, in WAL mode so readers never wait for the writer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, event
from sqlmodel import create_engine

from mlx_manager.db.migrate import upgrade
from mlx_manager.file_modes import database_files, private_file, touch_private


def _pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=5000")
    cursor.close()


def open_database(path: Path) -> Engine:
    """Create the file if needed (0600: SQLite gives its -wal and -shm the same mode), bring its schema to the
    latest migration, and return its engine."""
    touch_private(path)
    for existing in database_files(path):  # an older install's 0644 files
        private_file(existing)
    url = f"sqlite:///{path}"
    upgrade(url)
    engine = create_engine(url, connect_args={"check_same_thread": False})
    event.listen(engine, "connect", _pragmas)
    return engine
