"""The tables the models declare are the ones the migrations build: nothing for autogenerate to add or change.
(Profiles derive their table from ProfileBase, shared with the /api bodies: its lengths validate input only.)"""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from mlx_manager.db import models
from mlx_manager.db.migrate import upgrade


@pytest.mark.filterwarnings("ignore:Skipped unsupported reflection")  # 0003's lower(username) index
def test_a_migrated_database_matches_every_model(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    upgrade(url)
    with create_engine(url).connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), SQLModel.metadata) == []
    assert "profiles" in SQLModel.metadata.tables and models.Profile.__table__.c.name.unique  # type: ignore[attr-defined]
