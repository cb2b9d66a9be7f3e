"""How every generation route answers: start (naming the model and who runs it for the access line), then the
stream as server-sent events or the whole reply."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, Protocol, TypeVar

from sse_starlette import EventSourceResponse
from starlette.requests import Request

from mlx_manager.api.access import record
from mlx_manager.api.replies import Disconnected
from mlx_manager.api.request.limits import admitted
from mlx_manager.api.request.streaming import sse
from mlx_manager.engine.types import Usage


class Running(Protocol):
    """A started generation (or what a serving keeps with it): the usage it fills in, and who runs it."""

    @property
    def usage(self) -> Usage: ...

    @property
    def backend(self) -> str: ...

    def cancel(self) -> None: ...

    async def wait_admitted(self) -> None: ...


R = TypeVar("R", bound=Running)
T = TypeVar("T")


async def started(request: Request, model: str, start: Awaitable[R]) -> R:
    """Awaits a serving's start, naming the model for the access line first (a refused request is logged with
    it), then who runs the generation and the usage it fills in."""
    record(request, model)
    run = await start
    record(request, model, run.usage, run.backend)
    return run


async def answer(
    request: Request,
    model: str,
    start: Awaitable[R],
    stream: bool,
    events: Callable[[R], AsyncIterator[Any]],
    whole: Callable[[R, Disconnected], Awaitable[T]],
) -> T | EventSourceResponse:
    run = await started(request, model, start)
    if stream:
        await admitted(run, request.is_disconnected)  # a request refused in the queue is still a 503
        return sse(events(run))
    return await whole(run, request.is_disconnected)
