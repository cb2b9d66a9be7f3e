"""The manager's state for one server (database, live settings, auth, audit log, profiles), started and stopped
with the app. The engine never sees any of it: it gets a config, a model id and a request."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy import Engine as Database

from mlx_manager import paths
from mlx_manager.engine.engine import Engine, EngineConfig
from mlx_manager.manager import audit, credential_keys, pool_settings
from mlx_manager.manager.auth import Authenticator
from mlx_manager.manager.profiles import ProfileIndex
from mlx_manager.manager.rate_limits import AuthLimits
from mlx_manager.manager.routing_store import RoutingStore
from mlx_manager.manager.settings_store import (
    ManagedSettings,
    SettingsStore,
    defaults_from,
    engine_config_with,
    server_secret,
)
from mlx_manager.manager.signup import AccountConfig, SetupGate


class Manager:
    def __init__(
        self,
        db: Database,
        config: EngineConfig,
        server_key: str | None,
        credential_key: Path | None = None,
        accounts: AccountConfig | None = None,
        time_limits: dict[str, float] | None = None,
    ) -> None:
        """`config`: the engine config from the configuration; saved settings go on top (`engine_config`).
        `credential_key`: the key file for routing credentials (the data dir's by default). `time_limits`: the
        configured *_timeout_seconds settings (settings_store.TIME_LIMITS)."""
        self.db = db
        # `accounts`: who may make accounts, and the rate limits on signing in (mlx_manager.manager.signup).
        accounts = accounts or AccountConfig(guarded=server_key is not None)
        configured = {"allow_registration": accounts.allow_registration, **(time_limits or {})}
        defaults = defaults_from(config).model_copy(update=configured)
        self.settings = SettingsStore(db, defaults)
        self.auth = Authenticator(db, server_secret(db), server_key)
        self.limits = AuthLimits(accounts.login_rate_limit, accounts.register_rate_limit, accounts.key_rate_limit)
        self.setup = SetupGate(accounts.guarded, server_key, self.auth.has_users())
        self.audit = audit.AuditWriter(db)
        self.profiles = ProfileIndex(db)
        key_file = credential_key or paths.credential_key_file()
        self.routing = RoutingStore(db, credential_keys.open_box(db, key_file))
        self._config = config
        self._engine: Engine | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._settings_lock = asyncio.Lock()

    def engine_config(self) -> EngineConfig:
        """The configured engine config with the saved settings applied (so they hold from the start). A saved
        preload list is loaded once the server runs instead: a model deleted since must not stop the start."""
        config = engine_config_with(self._config, self.settings.current)
        return replace(config, preload=[]) if self._saved_preload() else config

    def _saved_preload(self) -> bool:
        return "preload" in self.settings.overridden

    async def start(self, engine: Engine) -> None:
        self._engine = engine
        self.setup.announce()
        self.audit.start()
        if self._saved_preload():
            for model_id in self.settings.current.preload:
                self._spawn(pool_settings.pin(engine, model_id))
        retention = self._retention_days
        self._spawn(audit.run_retention(self.db, retention, audit.RETENTION_INTERVAL_SECONDS))

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.audit.stop()

    def _retention_days(self) -> int:
        return self.settings.current.audit_retention_days

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def update_settings(self, changes: dict[str, Any]) -> ManagedSettings:
        """Save, then apply to the running server: pool limits and pins, and the audit retention."""
        assert self._engine is not None, "the manager is not started"
        async with self._settings_lock:
            if changes.get("preload"):
                await pool_settings.check_models(self._engine, list(changes["preload"]))
            old = self.settings.current
            new = await asyncio.to_thread(self.settings.update, changes)
            await pool_settings.apply(self._engine, old, new, self._spawn)
            if new.audit_retention_days != old.audit_retention_days:
                await asyncio.to_thread(audit.prune, self.db, new.audit_retention_days)
            return new
