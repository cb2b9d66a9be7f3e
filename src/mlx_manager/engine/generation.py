"""The asyncio side of a request: chunks arrive from the model thread, the caller iterates them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

from mlx_manager.engine.types import GenerationChunk, Usage


class GenerationObserver(Protocol):
    """Sees token timing as chunks reach the event loop (metrics); called on the loop thread."""

    def first_token(self, model: str, seconds: float) -> None: ...

    def next_tokens(self, model: str, seconds_per_token: float, count: int) -> None: ...

    def finished(self, model: str, usage: Usage, reason: str | None) -> None: ...


class Generation:
    """Iterate for chunks; `cancel()` (or leaving the loop early) stops the model work."""

    backend = "local"  # who runs it: a remote generation names its backend (access log, metrics)

    def __init__(self, prompt_tokens: int, n: int, model: str = "", observer: GenerationObserver | None = None) -> None:
        self.model = model
        self.observer = observer
        self.started = time.perf_counter()
        self._last_token_at: dict[int, float] = {}  # per sequence (n > 1 runs several)
        self.usage = Usage(prompt_tokens=prompt_tokens)
        self.remaining = n  # sequences still running; the generation is done at zero
        self.aborted = False
        self.timed_out = False  # ended by its time limit (expire): finishes as "aborted", reported as a time limit
        self.done = False
        self._admitted = asyncio.Event()  # a sequence joined the batch (or output or a failure came)
        self.refused: BaseException | None = None
        self._queue: asyncio.Queue[GenerationChunk | BaseException | None] = asyncio.Queue()
        self._cancel = threading.Event()
        self._loop = asyncio.get_running_loop()
        self._on_done: list[Callable[[], None]] = []

    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def cancel(self) -> None:
        self._cancel.set()

    def abort(self) -> None:
        """Stop the model work but still end each sequence with a final chunk (finish_reason "aborted")."""
        self.aborted = True
        self._cancel.set()

    def expire(self) -> None:
        """The request ran past its time limit: end it like `abort` (a final chunk, "aborted")."""
        self.timed_out = True
        self.abort()

    def admit(self) -> None:
        """Thread-safe: the scheduler took a sequence of this generation into its batch."""
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self._admitted.set)

    @property
    def admitted(self) -> bool:
        return self._admitted.is_set()

    async def wait_admitted(self) -> None:
        """Returns once a sequence joined the batch or output came; raises what refused it while it was queued."""
        await self._admitted.wait()
        if self.refused is not None:
            raise self.refused

    def fail(self, error: BaseException) -> None:
        """On the loop: end the generation now with `error` (a request that waited too long in the queue)."""
        self.refused = error
        self.cancel()
        self._receive([], error)

    def add_done_callback(self, fn: Callable[[], None]) -> None:
        self._on_done.append(fn)

    def deliver(self, chunks: list[GenerationChunk], error: BaseException | None = None) -> None:
        """Thread-safe: hand chunks (and, at the end, a failure) to the event loop in one call."""
        with contextlib.suppress(RuntimeError):  # the loop is gone at shutdown: nobody is listening
            self._loop.call_soon_threadsafe(self._receive, chunks, error)

    def _receive(self, chunks: list[GenerationChunk], error: BaseException | None) -> None:
        if self.done:
            return
        self._admitted.set()
        reason = None
        for chunk in chunks:
            self._queue.put_nowait(chunk)
            self._observe(chunk)
            if chunk.finish_reason is not None:
                self.remaining -= 1
                reason = chunk.finish_reason
        if error is not None:
            self._queue.put_nowait(error)
        if error is not None or self.remaining <= 0:
            self.done = True
            if self.observer is not None:
                ended = "error" if error is not None else "time_limit" if self.timed_out else reason
                self.observer.finished(self.model, self.usage, ended)
            self._queue.put_nowait(None)
            for fn in self._on_done:
                fn()

    def _observe(self, chunk: GenerationChunk) -> None:
        count = len(chunk.token_ids)
        if self.observer is None or not count:
            return
        now = time.perf_counter()
        last = self._last_token_at.get(chunk.index)
        if last is None:
            self.observer.first_token(self.model, now - self.started)
            count, gap = count - 1, 0.0
        else:
            gap = (now - last) / count
        if count:
            self.observer.next_tokens(self.model, gap, count)
        self._last_token_at[chunk.index] = now

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
