"""Server-sent events, as every API streams them, and the one path for a failure after the stream began."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

from sse_starlette import EventSourceResponse

from mlx_manager.api.errors import APIError, from_engine_error
from mlx_manager.engine.errors import EngineError

log = logging.getLogger(__name__)
# What a client is told when the failure is not the request's own (the details are in the server log).
MODEL_FAILED = "The model failed while generating; see the server log."


def sse(
    events: AsyncIterator[Any], response_class: type[EventSourceResponse] = EventSourceResponse
) -> EventSourceResponse:
    """No caching, and no buffering by a proxy (nginx) in front: each event goes out as it is made."""
    return response_class(events, sep="\n", headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


def stream_failure(exc: Exception) -> APIError | None:
    """Logs a failure after streaming began; returns what the engine said about it, or None (say MODEL_FAILED)."""
    log.error("Generation failed mid-stream: %s", exc)
    return from_engine_error(exc) if isinstance(exc, EngineError) else None
