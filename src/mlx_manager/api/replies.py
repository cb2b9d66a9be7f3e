"""Engine output gathered into whole replies, shared by every API: one generation path, many wire formats."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from mlx_manager.engine.generation import Generation
from mlx_manager.engine.types import GenerationChunk

Disconnected = Callable[[], Awaitable[bool]]


@dataclass
class CallParts:
    id: str = ""
    name: str = ""
    arguments: str = ""


@dataclass
class Reply:
    """One sequence's output: content without markup, reasoning apart, tool calls assembled from their deltas."""

    content: str = ""
    reasoning: str = ""
    tool_calls: list[CallParts] = field(default_factory=list)
    finish_reason: str | None = None  # in API terms, see api_finish
    stop_sequence: str | None = None


def api_finish(reason: str | None) -> str | None:
    """The engine's reason in OpenAI's terms: a cancelled reply just stopped; an aborted one (server shutdown) was
    cut short, which clients know as "length"."""
    return {"cancelled": "stop", "aborted": "length"}.get(reason or "", reason)


def assemble(chunks: list[GenerationChunk], parallel: bool = True) -> Reply:
    """`parallel=False` keeps only the first call, as a client that asked for one call expects."""
    calls: dict[int, CallParts] = {}
    for c in chunks:
        for d in c.tool_calls:
            if d.index > 0 and not parallel:
                continue
            call = calls.setdefault(d.index, CallParts())
            call.id = d.id or call.id
            call.name = d.name or call.name
            call.arguments += d.arguments
    last = chunks[-1] if chunks else None
    reason = last.finish_reason if last else None
    return Reply(
        content="".join(c.text for c in chunks),
        reasoning="".join(c.reasoning for c in chunks),
        tool_calls=[v for _, v in sorted(calls.items())],
        finish_reason=api_finish(reason),
        stop_sequence=last.stop_sequence if last else None,
    )


async def collect(gen: Generation, is_disconnected: Disconnected) -> dict[int, list[GenerationChunk]]:
    """Gather all chunks of a non-streaming request; a client that leaves cancels the generation."""
    by_index: dict[int, list[GenerationChunk]] = {}

    async def consume() -> None:
        async for chunk in gen:
            by_index.setdefault(chunk.index, []).append(chunk)

    await until_done(consume(), gen.cancel, is_disconnected)
    return by_index


async def until_done(
    work: Coroutine[Any, Any, None], cancel: Callable[[], None], is_disconnected: Disconnected
) -> None:
    """Run `work` (reading a whole reply) to its end; a client that leaves meanwhile calls `cancel`, which ends it."""
    task = asyncio.create_task(work)
    try:
        while not task.done():
            await asyncio.wait({task}, timeout=0.5)
            if not task.done() and await is_disconnected():
                cancel()
        task.result()
    finally:
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
