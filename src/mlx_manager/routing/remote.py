"""A generation served by another server: the same chunks, usage and cancel as a local one, so every API's
serving code answers from it unchanged (and translates protocols both ways through the engine's own request)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

from mlx_manager.engine.types import GenerationChunk, Usage


class RemoteError(Exception):
    """The backend failed before any output: `status` None means no answer at all (refused, reset, timed out)."""

    def __init__(self, backend: str, status: int | None, message: str) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.status = status
        self.message = message


class RemoteGeneration:
    """Iterate for chunks; `cancel()` closes the upstream stream. Usage fills in as the upstream reports it."""

    def __init__(self, backend: str, model: str) -> None:
        self.backend = backend
        self.model = model
        self.usage = Usage()
        self._queue: asyncio.Queue[GenerationChunk | BaseException | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._done_callbacks: list[Callable[[], None]] = []

    def start(self, source: AsyncIterator[GenerationChunk]) -> None:
        self._task = asyncio.create_task(self._pump(source))

    async def _pump(self, source: AsyncIterator[GenerationChunk]) -> None:
        try:
            async for chunk in source:
                self._queue.put_nowait(chunk)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # delivered to whoever iterates, as a local failure would be
            self._queue.put_nowait(exc)
        finally:
            self._queue.put_nowait(None)
            for fn in self._done_callbacks:
                fn()

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        self._done_callbacks.append(fn)

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()

    def abort(self) -> None:
        self.cancel()

    async def __aiter__(self) -> AsyncIterator[GenerationChunk]:
        try:
            while True:
                item = await self._queue.get()
                if item is None:
                    return
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            self.cancel()
