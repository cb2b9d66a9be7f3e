"""Pool settings applied to the running engine: new limits at once (idle models evicted to fit), pins moved."""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

from mlx_manager.engine.engine import Engine
from mlx_manager.engine.errors import ModelNotFoundError
from mlx_manager.manager.errors import InvalidInput
from mlx_manager.manager.settings_store import ManagedSettings, pool_config_with

log = logging.getLogger(__name__)

Spawn = Callable[[Coroutine[Any, Any, None]], None]


async def check_models(engine: Engine, names: list[str]) -> None:
    """A 400 naming the first model the server cannot find."""
    for name in names:
        try:
            await engine.resolve(name)
        except ModelNotFoundError as exc:
            raise InvalidInput(f"preload: the model '{name}' does not exist.", "model_not_found") from exc


async def apply(engine: Engine, old: ManagedSettings, new: ManagedSettings, spawn: Spawn) -> list[str]:
    """Unpin what left the preload list, use the new limits (returns the models evicted to meet them), and load
    and pin what joined it in the background (a load can take a while; a failure is logged)."""
    pool = engine.pool
    for model_id in set(old.preload) - set(new.preload):
        entry = pool.get(model_id)
        if entry is not None:
            entry.pinned = False
    evicted = await pool.reconfigure(pool_config_with(pool.config, new))
    for model_id in new.preload:
        entry = pool.get(model_id)
        if entry is None or not entry.pinned:
            spawn(pin(engine, model_id))
    return evicted


async def pin(engine: Engine, model_id: str) -> None:
    """Load and pin a model; a failure (a model deleted since it was saved, no room) is logged."""
    try:
        await engine.load(model_id, pin=True)
    except Exception as exc:
        log.warning("Could not preload %s: %s", model_id, exc)
