"""Run-time settings: saved values override the configuration and come back at the next start; None removes the
override; a bad saved row is ignored instead of stopping the server."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from sqlmodel import Session

from mlx_manager.db.models import Setting
from mlx_manager.db.session import open_database
from mlx_manager.engine.engine import EngineConfig
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.manager.errors import InvalidInput
from mlx_manager.manager.settings_store import SettingsStore, defaults_from, engine_config_with

CONFIG = EngineConfig(model_dirs=[], hf_cache=None, pool=PoolConfig(max_models=4, memory_budget_bytes=1 << 30))


@pytest.fixture
def db(tmp_path: Path) -> Engine:
    return open_database(tmp_path / "db.sqlite")


def test_defaults_come_from_the_configuration(db: Engine) -> None:
    store = SettingsStore(db, defaults_from(CONFIG))
    current = store.current
    assert (current.max_models, current.memory_budget_bytes, current.preload) == (4, 1 << 30, [])
    assert (current.require_api_key, current.audit_retention_days, store.overridden) == (False, 30, [])


def test_saved_values_override_and_survive_a_restart_until_reset(db: Engine) -> None:
    store = SettingsStore(db, defaults_from(CONFIG))
    store.update({"max_models": 1, "preload": ["a", "a", "b"], "require_api_key": True})
    assert store.current.preload == ["a", "b"] and store.overridden == ["max_models", "preload", "require_api_key"]
    again = SettingsStore(db, defaults_from(CONFIG))
    assert (again.current.max_models, again.current.require_api_key) == (1, True)
    config = engine_config_with(CONFIG, again.current)
    assert config.pool.max_models == 1 and config.preload == ["a", "b"] and config.pool.memory_budget_bytes == 1 << 30
    again.update({"max_models": None})
    assert SettingsStore(db, defaults_from(CONFIG)).current.max_models == 4


def test_invalid_values_are_refused_and_nothing_is_saved(db: Engine) -> None:
    store = SettingsStore(db, defaults_from(CONFIG))
    with pytest.raises(InvalidInput, match="max_models"):
        store.update({"max_models": 0, "idle_ttl_seconds": 5})
    with pytest.raises(InvalidInput, match="Unknown"):
        store.update({"jwt_secret": "x"})
    assert store.current.idle_ttl_seconds == 0 and SettingsStore(db, defaults_from(CONFIG)).overridden == []


def test_a_bad_saved_row_is_ignored(db: Engine) -> None:
    with Session(db) as s:
        s.add(Setting(key="max_models", value="lots"))
        s.add(Setting(key="idle_ttl_seconds", value=9))
        s.commit()
    store = SettingsStore(db, defaults_from(CONFIG))
    assert (store.current.max_models, store.current.idle_ttl_seconds) == (4, 9)
