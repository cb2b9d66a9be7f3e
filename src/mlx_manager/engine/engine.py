"""The engine's front door: find models, hand out generations, manage the pool. No HTTP here."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from mlx_manager.engine.discovery import discover_models
from mlx_manager.engine.errors import ContextLengthError, InvalidRequestError, ModelNotFoundError
from mlx_manager.engine.generate import LoadedModel, run_sequence
from mlx_manager.engine.loader import load_model, release_memory
from mlx_manager.engine.pool import ModelPool, PoolConfig, PoolEntry
from mlx_manager.engine.prompt import tokenize
from mlx_manager.engine.types import GenerationChunk, ModelInfo, Prompt, SamplingParams, Usage

log = logging.getLogger(__name__)

_DONE = object()


@dataclass(frozen=True)
class EngineConfig:
    model_dirs: list[Path]
    hf_cache: Path | None
    pool: PoolConfig
    default_max_tokens: int = 4096
    preload: list[str] = field(default_factory=list)
    rescan_seconds: float = 2.0


class Generation:
    """A running request: iterate it for chunks; `cancel()` (or leaving the loop early) stops the model."""

    def __init__(self, prompt_tokens: int, n: int) -> None:
        self.usage = Usage(prompt_tokens=prompt_tokens)
        self.n = n
        self._queue: asyncio.Queue[object] = asyncio.Queue()
        self._cancel = threading.Event()
        self._loop = asyncio.get_running_loop()

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def push(self, item: object) -> None:
        """Called from the model thread."""
        self._loop.call_soon_threadsafe(self._queue.put_nowait, item)

    async def __aiter__(self) -> AsyncIterator[GenerationChunk]:
        try:
            while True:
                item = await self._queue.get()
                if item is _DONE:
                    return
                if isinstance(item, BaseException):
                    raise item
                assert isinstance(item, GenerationChunk)
                yield item
        finally:
            self.cancel()


class Engine:
    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.pool = ModelPool(config.pool, load_model, release_memory)
        self._models: dict[str, ModelInfo] = {}
        self._scanned_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        await self.refresh_models(force=True)
        for model_id in self.config.preload:
            entry = await self.pool.acquire(await self.resolve(model_id), pin=True)
            self.pool.release(entry)
        if self.config.pool.idle_ttl_seconds > 0:
            interval = min(self.config.pool.idle_ttl_seconds / 2, 10.0)
            self._tasks.append(asyncio.create_task(self.pool.run_idle_reaper(interval)))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self.pool.close()

    async def refresh_models(self, force: bool = False) -> dict[str, ModelInfo]:
        if force or time.monotonic() - self._scanned_at > self.config.rescan_seconds:
            self._models = await asyncio.to_thread(discover_models, self.config.model_dirs, self.config.hf_cache)
            self._scanned_at = time.monotonic()
        return self._models

    async def list_models(self) -> list[ModelInfo]:
        return list((await self.refresh_models()).values())

    async def resolve(self, model_id: str) -> ModelInfo:
        loaded = self.pool.get(model_id)
        if loaded is not None:
            return loaded.info
        models = await self.refresh_models()
        if model_id not in models:
            models = await self.refresh_models(force=True)
        if model_id not in models:
            raise ModelNotFoundError(model_id, sorted(models))
        return models[model_id]

    async def load(self, model_id: str, pin: bool = False) -> PoolEntry:
        entry = await self.pool.acquire(await self.resolve(model_id), pin=pin)
        self.pool.release(entry)
        return entry

    async def generate(self, model_id: str, prompt: Prompt, params: SamplingParams, n: int = 1) -> Generation:
        """Validate and start a generation; errors about the request are raised here, before any output."""
        entry = await self.pool.acquire(await self.resolve(model_id))
        try:
            assert entry.loaded is not None
            lm = entry.loaded
            prompt_ids = await asyncio.to_thread(tokenize, lm.tokenizer, prompt, lm.vocab_size)
            if not prompt_ids:
                raise InvalidRequestError("The prompt is empty.", param="prompt")
            max_tokens = self._max_tokens(lm, len(prompt_ids), params.max_tokens)
            bad = [t for t in params.logit_bias if t < 0 or t >= lm.vocab_size]
            if bad:
                raise InvalidRequestError(f"logit_bias has token ids out of range: {bad[:5]}", param="logit_bias")
        except BaseException:
            self.pool.release(entry)
            raise
        gen = Generation(len(prompt_ids), n)
        job = entry.runner.submit(self._job, entry, lm, gen, prompt_ids, params, max_tokens, n)
        job.add_done_callback(lambda _f: self.pool.release(entry))
        return gen

    def _max_tokens(self, lm: LoadedModel, prompt_len: int, requested: int | None) -> int:
        limit = lm.context_length
        if requested is None:
            room = (limit - prompt_len) if limit else self.config.default_max_tokens
            if room <= 0:
                raise ContextLengthError(prompt_len, 1, limit or 0)
            return min(self.config.default_max_tokens, room)
        if limit and prompt_len + requested > limit:
            raise ContextLengthError(prompt_len, requested, limit)
        return requested

    @staticmethod
    def _job(
        entry: PoolEntry,
        lm: LoadedModel,
        gen: Generation,
        prompt_ids: list[int],
        params: SamplingParams,
        max_tokens: int,
        n: int,
    ) -> None:
        try:
            for index in range(n):
                if gen.cancelled():
                    break
                gen.usage.completion_tokens += run_sequence(
                    lm,
                    prompt_ids,
                    params,
                    max_tokens,
                    index=index,
                    seed_offset=index,
                    cancelled=gen.cancelled,
                    emit=gen.push,
                )
        except Exception as exc:
            log.exception("Generation failed on %s", lm.info.id)
            gen.push(exc)
        entry.tokens_generated += gen.usage.completion_tokens
        entry.requests_done += 1
        entry.requests_cancelled += gen.cancelled()
        gen.push(_DONE)
