"""Settings edited at run time, kept in the `settings` table: pool limits, the pin list, auth and audit flags.

A saved value overrides the configured one (command line, environment, TOML) and is re-applied at every start;
saving None removes the override. The server's own secret lives in the same table and is never shown.
"""

from __future__ import annotations

import logging
import secrets
from dataclasses import replace
from typing import Any

from pydantic import BaseModel, Field, ValidationError, field_validator
from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mlx_manager.db.models import Setting
from mlx_manager.engine.engine import EngineConfig
from mlx_manager.engine.pool import PoolConfig
from mlx_manager.manager.errors import InvalidInput

log = logging.getLogger(__name__)

JWT_SECRET_KEY = "jwt_secret"
DEFAULT_AUDIT_RETENTION_DAYS = 30


class ManagedSettings(BaseModel):
    """The effective values: saved overrides on top of the configuration."""

    memory_budget_bytes: int = Field(ge=0, description="Bytes the loaded models may use together.")
    max_models: int = Field(ge=1, description="Models loaded at once.")
    idle_ttl_seconds: float = Field(ge=0, description="Unload a model idle this long; 0 = never.")
    room_wait_seconds: float = Field(ge=0, description="How long a load waits for busy models before a 507.")
    preload: list[str] = Field(description="Models loaded at start and pinned (never evicted).")
    require_api_key: bool = Field(
        default=False, description="Require a valid API key or session on /v1 even without a server --api-key."
    )
    audit_retention_days: int = Field(
        default=DEFAULT_AUDIT_RETENTION_DAYS, ge=0, description="Audit entries older than this are pruned; 0 = keep."
    )
    allow_registration: bool = Field(
        default=True,
        description="Anyone may register an account that then waits for an admin's approval; off: only admins"
        " add users (the first account is always possible, with the setup token where one is needed).",
    )

    chat_timeout_seconds: float = Field(
        default=900, ge=0, description="Chat generations running longer end with finish_reason length; 0 = none."
    )
    completions_timeout_seconds: float = Field(default=600, ge=0, description="The same for text completions.")
    embeddings_timeout_seconds: float = Field(default=120, ge=0, description="Embeddings taking longer are a 504.")
    queue_timeout_seconds: float = Field(
        default=300, ge=0, description="A request queued this long for a batch slot is a 503; 0 = no limit."
    )

    @field_validator("preload")
    @classmethod
    def _unique_names(cls, value: list[str]) -> list[str]:
        if any(not name.strip() for name in value):
            raise ValueError("model names must not be empty")
        return list(dict.fromkeys(name.strip() for name in value))


FIELDS = tuple(ManagedSettings.model_fields)
TIME_LIMITS: tuple[str, ...] = ("chat_timeout_seconds", "completions_timeout_seconds", "embeddings_timeout_seconds")
TIME_LIMITS += ("queue_timeout_seconds",)


def defaults_from(config: EngineConfig) -> ManagedSettings:
    pool = config.pool
    return ManagedSettings(
        memory_budget_bytes=pool.memory_budget_bytes,
        max_models=pool.max_models,
        idle_ttl_seconds=pool.idle_ttl_seconds,
        room_wait_seconds=pool.room_wait_seconds,
        preload=list(config.preload),
    )


def pool_config_with(pool: PoolConfig, values: ManagedSettings) -> PoolConfig:
    return replace(
        pool,
        max_models=values.max_models,
        memory_budget_bytes=values.memory_budget_bytes,
        idle_ttl_seconds=values.idle_ttl_seconds,
        room_wait_seconds=values.room_wait_seconds,
    )


def engine_config_with(config: EngineConfig, values: ManagedSettings) -> EngineConfig:
    return replace(config, pool=pool_config_with(config.pool, values), preload=list(values.preload))


class SettingsStore:
    """Blocking (SQLite) calls: run them off the event loop."""

    def __init__(self, db: Engine, defaults: ManagedSettings) -> None:
        self.db = db
        self.defaults = defaults
        self.overridden: list[str] = []
        self.current = self._load()

    def _saved(self, session: Session) -> dict[str, Any]:
        rows = session.exec(select(Setting).where(col(Setting.key).in_(FIELDS))).all()
        return {row.key: row.value for row in rows if row.value is not None}

    def _load(self) -> ManagedSettings:
        with Session(self.db) as session:
            saved = self._saved(session)
        values = self.defaults.model_dump()
        for key, value in saved.items():
            try:  # one bad row (an older version's format) must not keep the server from starting
                ManagedSettings.model_validate({**values, key: value})
            except ValidationError as exc:
                log.warning("Ignoring the saved setting %s=%r: %s", key, value, exc.errors()[0].get("msg"))
                continue
            values[key] = value
        self.overridden = sorted(k for k in saved if values[k] == saved[k])
        return ManagedSettings.model_validate(values)

    def update(self, changes: dict[str, Any]) -> ManagedSettings:
        """Save the given values (None: back to the configured one) and return the new effective settings."""
        unknown = set(changes) - set(FIELDS)
        if unknown:
            raise InvalidInput(f"Unknown settings: {', '.join(sorted(unknown))}.")
        with Session(self.db) as session:
            saved = {**self._saved(session), **changes}
            saved = {k: v for k, v in saved.items() if v is not None}
            try:
                values = ManagedSettings.model_validate({**self.defaults.model_dump(), **saved})
            except ValidationError as exc:
                first = exc.errors()[0]
                where = ".".join(str(p) for p in first.get("loc", ()))
                raise InvalidInput(f"Invalid value for '{where}': {first.get('msg')}") from exc
            for key, value in changes.items():
                row = session.get(Setting, key)
                if value is None:
                    if row is not None:
                        session.delete(row)
                    continue
                stored = getattr(values, key)
                if row is None:
                    session.add(Setting(key=key, value=stored))
                else:
                    row.value = stored
                    session.add(row)
            session.commit()
        self.current = values
        self.overridden = sorted(saved)
        return values


def server_secret(db: Engine, key: str = JWT_SECRET_KEY) -> str:
    """The secret stored under `key`, generated on first use."""
    with Session(db) as session:
        row = session.get(Setting, key)
        if row is not None and isinstance(row.value, str) and row.value:
            return row.value
        value = secrets.token_urlsafe(64)
        if row is None:
            session.add(Setting(key=key, value=value))
        else:
            row.value = value
            session.add(row)
        try:
            session.commit()
        except IntegrityError:  # another process made it first: use theirs
            session.rollback()
            stored = session.get(Setting, key)
            assert stored is not None
            return str(stored.value)
        return value


def rotate_server_secret(db: Engine, key: str = JWT_SECRET_KEY) -> None:
    """A new secret under `key`: every session signed with the old one stops working (at the next start)."""
    with Session(db) as session:
        session.connection().exec_driver_sql("PRAGMA secure_delete=ON")  # the old value does not linger in the file
        row = session.get(Setting, key) or Setting(key=key, value=None)
        row.value = secrets.token_urlsafe(64)
        session.add(row)
        session.commit()
