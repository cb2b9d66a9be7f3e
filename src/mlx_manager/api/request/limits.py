"""Time limits per endpoint: a generation running past its endpoint's limit ends with a final chunk (the engine's
"aborted", each API's "length"); a request still queued past the queue limit fails with a 503 and Retry-After."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from mlx_manager.api.errors import APIError
from mlx_manager.config import default
from mlx_manager.engine.errors import QueueTimeoutError
from mlx_manager.engine.generation import Generation

log = logging.getLogger(__name__)
T = TypeVar("T")

Endpoint = Literal["chat", "completions", "embeddings", "audio"]
# Called with the endpoint and what ran out ("generation" or "queue"), for the metrics.
OnLimit = Callable[[str, str], None]


@dataclass(frozen=True)
class TimeLimits:
    """Seconds; 0 = no limit. `chat` covers every chat API (chat completions, Messages, Responses)."""

    chat: float = default("chat_timeout_seconds")
    completions: float = default("completions_timeout_seconds")
    embeddings: float = default("embeddings_timeout_seconds")
    queue: float = default("queue_timeout_seconds")
    audio: float = default("audio_timeout_seconds")  # a transcription, stopped between windows

    def of(self, endpoint: Endpoint) -> float:
        seconds: float = getattr(self, endpoint)
        return seconds


def apply(gen: Generation, endpoint: Endpoint, limits: TimeLimits, on_limit: OnLimit | None = None) -> None:
    """Start the clocks of a generation that was just queued; both stop when it ends."""
    loop = asyncio.get_running_loop()
    timers: list[asyncio.TimerHandle] = []

    def run_out() -> None:
        if gen.done:
            return
        if not gen.admitted:  # still queued: nothing to end with a final chunk, so the queue's refusal
            refuse(limit)
            return
        log.warning("A %s generation on %s ran past its time limit (%.0fs); ending it", endpoint, gen.model, limit)
        if on_limit is not None:
            on_limit(endpoint, "generation")
        gen.expire()

    def refuse(waited: float) -> None:
        if gen.done or gen.admitted:
            return
        log.warning("A %s request for %s waited %.1fs in the queue; refusing it", endpoint, gen.model, waited)
        if on_limit is not None:
            on_limit(endpoint, "queue")
        gen.fail(
            QueueTimeoutError(
                f"The request waited {waited:.1f}s for a free slot on '{gen.model}' (queue_timeout_seconds,"
                f" {endpoint}_timeout_seconds). The server is busy; retry shortly.",
                retry_after=max(1, min(30, int(waited // 10))),
            )
        )

    limit = limits.of(endpoint)
    if limit > 0:
        timers.append(loop.call_later(limit, run_out))
    if limits.queue > 0:
        timers.append(loop.call_later(limits.queue, refuse, limits.queue))

    def stop() -> None:
        for timer in timers:
            timer.cancel()

    gen.add_done_callback(stop)


class Queued(Protocol):
    """A started generation (or what a serving keeps with it) that may still wait in the queue."""

    def cancel(self) -> None: ...

    async def wait_admitted(self) -> None: ...


async def admitted(run: Queued, is_disconnected: Callable[[], Awaitable[bool]]) -> None:
    """Wait until the request left the queue, so a queue timeout is still a 503 before a stream's headers go out;
    raises that 503 (QueueTimeoutError). A client that leaves meanwhile cancels the request."""
    wait = asyncio.ensure_future(run.wait_admitted())
    try:
        while not wait.done():
            await asyncio.wait({wait}, timeout=0.5)
            if not wait.done() and await is_disconnected():
                run.cancel()
                return
        wait.result()
    finally:
        wait.cancel()


async def within(work: Awaitable[T], endpoint: Endpoint, limits: TimeLimits, on_limit: OnLimit | None = None) -> T:
    """Work with no partial answer (embeddings): past the endpoint's limit it is a 504."""
    limit = limits.of(endpoint)
    if limit <= 0:
        return await work
    try:
        return await asyncio.wait_for(work, limit)
    except TimeoutError:
        log.warning("A %s request ran past its time limit (%.0fs)", endpoint, limit)
        if on_limit is not None:
            on_limit(endpoint, "generation")
        raise APIError(
            504,
            f"The request ran past the {endpoint} time limit ({limit:.0f}s, {endpoint}_timeout_seconds).",
            type="server_error",
            code="timeout",
        ) from None
