"""The engine's adapters: the ones found on disk plus the ones added by path (admin), and attaching them to the
pooled base when a request or a load names `BASE@ADAPTER`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from pathlib import Path

from mlx_manager.engine.adapters.discovery import adapter_info, base_of, discover_adapters
from mlx_manager.engine.adapters.formats import read_config, read_weights
from mlx_manager.engine.adapters.lora import AdapterSet, LiveAdapter
from mlx_manager.engine.discovery import NotLoadableError
from mlx_manager.engine.errors import InvalidRequestError
from mlx_manager.engine.loader import LoadedModel
from mlx_manager.engine.pool import PoolEntry
from mlx_manager.engine.types import AdapterRef, ModelInfo

log = logging.getLogger(__name__)


class Adapters:
    def __init__(self) -> None:
        self.added: dict[str, ModelInfo] = {}  # by POST /admin/models/{base}/adapters, until the server stops
        self._lock = asyncio.Lock()

    def scan(
        self, model_dirs: Iterable[Path], hf_cache: Path | None, models: dict[str, ModelInfo]
    ) -> dict[str, ModelInfo]:
        """Adapters found on disk, then those added by path whose base is still there."""
        found = discover_adapters(model_dirs, hf_cache, models)
        for adapter_id, info in self.added.items():
            if info.adapter is not None and info.adapter.base in models:
                found.setdefault(adapter_id, info)
        return found

    def describe(self, base: ModelInfo, path: str, name: str | None, models: dict[str, ModelInfo]) -> ModelInfo:
        """The adapter at `path` as `BASE@NAME` (its folder's name by default); a 400 when it is not an adapter,
        or its config names another model found here."""
        try:
            folder = Path(path).expanduser()
        except RuntimeError:  # ~user of no such user
            folder = Path(path)
        if not folder.is_dir():
            raise InvalidRequestError(f"No folder at {path!r} on the server.", param="path")
        try:
            config = read_config(folder)
        except (NotLoadableError, OSError) as exc:
            raise InvalidRequestError(
                f"{path!r} is not a LoRA adapter this server can serve: {exc}", param="path"
            ) from exc
        named = base_of(config.base_ref, models)
        if named is not None and named != base.id:
            raise InvalidRequestError(
                f"The adapter at {path!r} was trained for '{named}', not '{base.id}'.", param="model"
            )
        label = name or folder.name
        if not label or "@" in label or "/" in label:
            raise InvalidRequestError(f"Adapter name {label!r} must be non-empty, without '@' or '/'.", param="name")
        return adapter_info(base, label, folder, config)

    async def attach(self, entry: PoolEntry, ref: AdapterRef) -> LiveAdapter:
        """The adapter live on the loaded base (loaded now if it is not); concurrent callers share one load."""
        lm = entry.loaded
        if not isinstance(lm, LoadedModel) or lm.vision is not None:
            raise InvalidRequestError(f"'{ref.base}' cannot take LoRA adapters.", param="model")
        async with self._lock:
            if lm.adapters is None:
                lm.adapters = AdapterSet(lm.model)
            adapters = lm.adapters
            live = adapters.live.get(ref.id)
            if live is None:
                weights = await asyncio.to_thread(read_weights, ref, adapters.linear_modules())
                live = adapters.install(ref, weights)
                log.info(
                    "Attached adapter %s (%s, %d layers, %.2f MB) to %s",
                    ref.id,
                    ref.format,
                    live.modules,
                    live.memory_bytes / 1e6,
                    ref.base,
                )
            return live

    @staticmethod
    def live_on(entry: PoolEntry) -> list[LiveAdapter]:
        lm = entry.loaded
        if not isinstance(lm, LoadedModel) or lm.adapters is None:
            return []
        return list(lm.adapters.live.values())

    @staticmethod
    def detach(entry: PoolEntry, adapter_id: str) -> bool:
        """Take an adapter off its base; a 400 while requests run on it."""
        lm = entry.loaded
        if not isinstance(lm, LoadedModel) or lm.adapters is None or adapter_id not in lm.adapters.live:
            return False
        live = lm.adapters.live[adapter_id]
        if live.active:
            raise InvalidRequestError(
                f"'{adapter_id}' has {live.active} requests running; unload it when they are done.", param="model"
            )
        lm.adapters.remove(adapter_id)
        return True
